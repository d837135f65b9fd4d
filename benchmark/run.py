"""Benchmark runner: a grid of scripts x env ids x seeds, each run a separate process, one results file per run.

  python benchmark/run.py --suite quick --workers 2          # a named grid (SUITES below)
  python benchmark/run.py --campaign try --scripts ppo.py --envs CartPole-v1 --seeds 1 2 --flags "--total-timesteps 50000"
  python benchmark/run.py --suite quick --status             # done / running / failed / pending, without running
  python benchmark/plot.py benchmark/results/quick           # curves.png and table.md from the results

What it does:
  1) expands the grid into runs: ours (`python <script> <flags> --env-id E --seed S --torch-threads 1`) and, with
     --impl both|peers, the script's peer (SB3 PPO / A2C / SAC, sb3-contrib TRPO) with the same hyper-parameters,
     mapped one to one by the tables of this file (`python benchmark/run.py peer <script> <flags>`)
  2) runs them as processes, at most --workers at a time, each with one thread (OMP_NUM_THREADS=1, --torch-threads 1)
  3) as they go, reads each run's runs/<run>/metrics.jsonl into benchmark/results/<campaign>/<env>__<impl>__<seed>.json:
     episodic return against global step, SPS, wall time, the exact command, the versions, the definitions below
  4) run again, it skips finished runs, and continues an interrupted one from its last periodic checkpoint
     (--save-every N: the scripts' own --save-every / --resume; the peer adapter saves the SB3 model, its
     VecNormalize statistics and SAC's replay buffer). --time-limit stops a campaign cleanly before a session ends.

Work files (runs/, logs/) go to benchmark/work/<campaign>/ (not committed); results to benchmark/results/<campaign>/.
"""

import argparse
import dataclasses
import fnmatch
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

DEFINITIONS = {
    "return": "mean episodic return of the last 100 training episodes of each run (CleanRL's metric), averaged over seeds",
    "eval": "the final deterministic evaluation of each run: mean action (argmax for Discrete), normalisation statistics "
    "frozen, 10 episodes on an env seeded apart from training",
    "SPS": "environment transitions per wall second of training, updates included, torch.compile time and SAC's random "
    "warm-up (learning_starts) excluded; one process, one torch thread",
    "no worse": "the 95% bootstrap confidence interval (10,000 resamples of the seeds) of mean(ours) - mean(peer) "
    "includes zero or lies above it",
}

# Our script -> its peer: (library, algorithm). REINFORCE and PPO-KL have none; they are compared with the
# published anchors and with ppo.py.
PEERS = {
    "ppo.py": ("stable_baselines3", "PPO"),
    "a2c.py": ("stable_baselines3", "A2C"),
    "trpo.py": ("sb3_contrib", "TRPO"),
    "sac.py": ("stable_baselines3", "SAC"),
}
ON_POLICY = ["reinforce.py", "a2c.py", "trpo.py", "ppo.py", "ppo_kl.py"]

# Named grids. "grid": entries of scripts x envs with their flags; then every "flags" entry whose
# "<script glob>@<env glob>" matches adds its flags (a later flag wins). Anything not set here is the script's
# default: the owner of a script adds its per-env settings.
CARTPOLE_PPO = "--num-steps 128 --num-minibatches 4 --update-epochs 4 --learning-rate 2.5e-4 --ent-coef 0.01"  # CleanRL's
PENDULUM_PPO = "--num-steps 1024 --num-minibatches 64 --learning-rate 1e-3"  # RL Zoo's, without gSDE
SUITES = {
    "speed": {
        "about": "steps per second of each script beside its peer on Hopper-v5, one run at a time",
        "grid": [
            {"scripts": ON_POLICY, "envs": ["Hopper-v5"], "flags": "--total-timesteps 102400 --eval-episodes 0"},
            {
                "scripts": ["sac.py"],
                "envs": ["Hopper-v5"],
                "flags": "--total-timesteps 15000 --learning-starts 5000 --eval-episodes 0",
            },
        ],
        "seeds": [1],
        "impl": "both",
        "workers": 1,
    },
    "quick": {
        "about": "5 seeds: CartPole-v1 for the on-policy scripts, Pendulum-v1 and InvertedPendulum-v5 for all six, peers beside",
        "grid": [
            {"scripts": ON_POLICY, "envs": ["CartPole-v1"], "flags": "--total-timesteps 200000 --num-envs 4"},
            {"scripts": ON_POLICY, "envs": ["Pendulum-v1"], "flags": "--total-timesteps 200000 --num-envs 4 --gamma 0.9"},
            {"scripts": ["sac.py"], "envs": ["Pendulum-v1"], "flags": "--total-timesteps 20000"},
            {"scripts": ON_POLICY, "envs": ["InvertedPendulum-v5"], "flags": "--total-timesteps 200000"},
            {"scripts": ["sac.py"], "envs": ["InvertedPendulum-v5"], "flags": "--total-timesteps 50000"},
        ],
        "flags": {"ppo*.py@CartPole-v1": CARTPOLE_PPO, "ppo*.py@Pendulum-v1": PENDULUM_PPO},
        "seeds": [1, 2, 3, 4, 5],
        "impl": "both",
    },
    "hopper": {
        "about": "Hopper-v5, 3 seeds: the on-policy scripts at 1M steps, sac.py at 200k; peers at the same budgets",
        "grid": [
            {"scripts": ON_POLICY, "envs": ["Hopper-v5"], "flags": "--total-timesteps 1000000"},
            {"scripts": ["sac.py"], "envs": ["Hopper-v5"], "flags": "--total-timesteps 200000"},
        ],
        "seeds": [1, 2, 3],
        "impl": "both",
    },
    "halfcheetah": {
        "about": "HalfCheetah-v5, 3 seeds, the on-policy scripts at 1M steps (add the peers with --impl both)",
        "grid": [{"scripts": ON_POLICY, "envs": ["HalfCheetah-v5"], "flags": "--total-timesteps 1000000"}],
        "seeds": [1, 2, 3],
        "impl": "ours",
    },
}


# ---------------------------------------------------------------------------------------------------
# Peer hyper-parameters: every field of the script's Args is mapped to the peer's argument, or shown as having
# no equivalent, or is plumbing. A field no table names stops the peer run (--allow-unmapped: run anyway and
# record it): whoever adds a hyper-parameter to a script says here what the peer does with it.
# ---------------------------------------------------------------------------------------------------
PLUMBING = {
    "exp_name", "seed", "torch_deterministic", "cuda", "torch_threads", "track", "wandb_project_name", "wandb_entity",
    "capture_video", "save_model", "save_every", "resume", "eval_checkpoint", "eval_episodes", "eval_every", "progress_every",
    "env_id", "env_kwargs", "total_timesteps", "compile", "log_every",
}  # fmt: skip
NOTES = {
    "PPO": [
        "SB3 clips the value prediction and takes its error alone; ours takes the max of the clipped and unclipped errors (baselines)."
    ],
    "A2C": [
        "SB3's default RMSprop is PyTorch's (eps outside the root, v from 0); with a2c.py's --optimizer rmsprop the peer gets RMSpropTFLike."
    ],
    "TRPO": [
        "sb3-contrib's TRPO does not clip the critic's gradient norm.",
        "sb3-contrib averages a Gaussian policy's KL over the action dimensions: target_kl and cg_damping are ours / A.",
    ],
    "SAC": ["SB3 clamps the policy's log-std to [-20, 2]; sac.py squashes it into [log_std_min, log_std_max] = [-5, 2] (CleanRL's)."],
}


class Mapping:
    """Builds the peer's keyword arguments and the table that shows them beside our fields."""

    def __init__(self, args: dict, action_dim: int):
        self.args, self.rows, self.named = args, [], set()
        self.action_dim = action_dim  # the env's number of action dimensions (1 for Discrete)

    def get(self, name: str, peer_default=None):
        """Our value of `name`; a field the script lacks gives the peer's default (and says so in the table)."""
        return self.args.get(name, peer_default)

    def row(self, ours: str, peer: str, note: str = "") -> None:
        names = [n.strip() for n in ours.split(",")]
        self.named.update(names)
        shown = ", ".join(f"{n}={self.args[n]!r}" if n in self.args else f"{n} (not in the script: peer default)" for n in names)
        self.rows.append({"ours": shown, "peer": peer, "note": note})

    def require(self, name: str, value, why: str) -> None:
        if name in self.args and self.args[name] != value:
            raise SystemExit(f"peer: --{name.replace('_', '-')} {self.args[name]} cannot be mapped: {why}; pass {value} to compare")

    def unmapped(self) -> list[str]:
        return sorted(set(self.args) - self.named - PLUMBING)


def linear_lr(m: Mapping, batch: int) -> tuple | float:
    """Ours: lr_i = (1 - (i - 1) / n) lr at iteration i of n. SB3 evaluates its schedule after the rollout, at
    progress_remaining = 1 - i / n: adding 1/n gives the same sequence."""
    lr, n = m.get("learning_rate"), m.get("total_timesteps") // batch
    return ("linear", lr, 1 / n) if m.get("anneal_lr", False) else lr


def on_policy_common(m: Mapping, algo: str, discrete: bool) -> tuple[dict, dict]:
    """The rows every on-policy script shares (the args-on-policy block): kwargs and policy_kwargs."""
    batch = m.get("num_envs") * m.get("num_steps")
    kwargs = {
        "n_steps": m.get("num_steps"),
        "learning_rate": linear_lr(m, batch),
        "gamma": m.get("gamma"),
        "gae_lambda": m.get("gae_lambda"),
    }
    hidden = list(m.get("hidden_sizes", (64, 64)))
    policy_kwargs = {
        "net_arch": {"pi": hidden, "vf": hidden},
        "activation_fn": m.get("activation", "tanh"),
        "ortho_init": True,
        "log_std_init": m.get("init_logstd", 0.0),
    }
    m.row("num_steps", f"n_steps={kwargs['n_steps']}")
    lr = kwargs["learning_rate"]
    shown = f"linear({lr[1]} -> 0), shifted by 1/n = {lr[2]:g}" if isinstance(lr, tuple) else f"{lr} (constant)"
    m.row("learning_rate, anneal_lr", f"learning_rate={shown}", "the same rate at every iteration (see linear_lr)")
    m.row("gamma", f"gamma={kwargs['gamma']}", "also VecNormalize(gamma) when rewards are scaled")
    m.row("gae_lambda", f"gae_lambda={kwargs['gae_lambda']}")
    m.row("hidden_sizes", f"policy_kwargs.net_arch=dict(pi={hidden}, vf={hidden})", "separate policy and value networks")
    m.row("activation", f"policy_kwargs.activation_fn={policy_kwargs['activation_fn']}")
    for name, gain in (("hidden_init_gain", 2**0.5), ("policy_init_gain", 0.01), ("value_init_gain", 1.0)):
        m.require(name, gain, "SB3's orthogonal initialisation has the fixed gains sqrt 2, 0.01 and 1")
    m.row("hidden_init_gain, policy_init_gain, value_init_gain", "policy_kwargs.ortho_init=True", "gains sqrt 2, 0.01, 1; biases 0")
    m.row("init_logstd", f"policy_kwargs.log_std_init={policy_kwargs['log_std_init']}", "state-independent log-std in both")
    if algo != "TRPO":  # sb3-contrib's TRPO clips no gradient (nor does trpo.py)
        kwargs["max_grad_norm"] = m.get("max_grad_norm")
        m.row("max_grad_norm", f"max_grad_norm={kwargs['max_grad_norm']}")
    return kwargs, policy_kwargs


def adam(m: Mapping, policy_kwargs: dict, what: str = "") -> None:
    policy_kwargs["optimizer_kwargs"] = {"eps": m.get("adam_eps", 1e-5)}
    m.row("adam_eps", f"policy_kwargs.optimizer_kwargs=dict(eps={policy_kwargs['optimizer_kwargs']['eps']})", f"Adam{what} in both")


def normalisation(m: Mapping, discrete: bool) -> dict | None:
    norm = {
        "norm_obs": (not discrete) if m.get("norm_obs") is None else m.get("norm_obs"),
        "norm_reward": (not discrete) if m.get("norm_reward") is None else m.get("norm_reward"),
        "clip_obs": m.get("clip_obs", 10.0),
        "clip_reward": m.get("clip_reward", 10.0),
        "gamma": m.get("gamma"),
    }
    shown = ", ".join(f"{k}={v}" for k, v in norm.items() if k != "gamma")
    m.row("norm_obs, norm_reward, clip_obs, clip_reward", f"VecNormalize({shown})", "None resolves as ours: on for Box actions")
    return norm if norm["norm_obs"] or norm["norm_reward"] else None


def map_ppo(m: Mapping, discrete: bool):
    kwargs, policy_kwargs = on_policy_common(m, "PPO", discrete)
    adam(m, policy_kwargs)
    batch = m.get("num_envs") * m.get("num_steps")
    target_kl = m.get("target_kl")
    kwargs |= {
        "batch_size": batch // m.get("num_minibatches"),
        "n_epochs": m.get("update_epochs"),
        "normalize_advantage": m.get("norm_adv"),
        "clip_range": m.get("clip_coef"),
        "clip_range_vf": m.get("clip_coef") if m.get("clip_vloss") else None,
        "ent_coef": m.get("ent_coef"),
        "vf_coef": m.get("vf_coef") / 2,
        "target_kl": None if target_kl is None else target_kl / 1.5,
    }
    m.row("num_minibatches", f"batch_size={kwargs['batch_size']}", "batch_size = num_envs * num_steps / num_minibatches")
    m.row("update_epochs", f"n_epochs={kwargs['n_epochs']}")
    m.row("norm_adv", f"normalize_advantage={kwargs['normalize_advantage']}", "per minibatch in both")
    m.row("clip_coef", f"clip_range={kwargs['clip_range']}")
    m.row("clip_vloss", f"clip_range_vf={kwargs['clip_range_vf']}", "clip_coef when on (see the notes)")
    m.row("ent_coef", f"ent_coef={kwargs['ent_coef']}")
    m.row("vf_coef", f"vf_coef={kwargs['vf_coef']}", "halved: ours is c1 * 1/2 E[(V - R)^2], SB3's c1 * E[(V - R)^2]")
    m.row("target_kl", f"target_kl={kwargs['target_kl']}", "divided by 1.5: SB3 stops at 1.5 x target_kl per minibatch, ours per epoch")
    return kwargs, policy_kwargs


def map_a2c(m: Mapping, discrete: bool):
    kwargs, policy_kwargs = on_policy_common(m, "A2C", discrete)
    if m.get("optimizer", "rmsprop") == "rmsprop":  # TensorFlow's RMSprop: eps inside the root, v starts at 1
        kwargs["use_rms_prop"] = True
        policy_kwargs["optimizer_class"] = "RMSpropTFLike"
        policy_kwargs["optimizer_kwargs"] = {"alpha": m.get("rmsprop_alpha", 0.99), "eps": m.get("rmsprop_eps", 1e-5), "weight_decay": 0}
        optimizer = f"policy_kwargs.optimizer_class=RMSpropTFLike, optimizer_kwargs={policy_kwargs['optimizer_kwargs']}"
    elif m.get("optimizer") == "torch-rmsprop":  # PyTorch's RMSprop: SB3's own default
        kwargs |= {"use_rms_prop": True, "rms_prop_eps": m.get("rmsprop_eps", 1e-5)}
        m.require("rmsprop_alpha", 0.99, "SB3 fixes PyTorch RMSprop's alpha at 0.99")
        optimizer = f"use_rms_prop=True, rms_prop_eps={kwargs['rms_prop_eps']} (torch.optim.RMSprop, alpha 0.99)"
    else:
        kwargs["use_rms_prop"] = False
        policy_kwargs["optimizer_kwargs"] = {"eps": m.get("adam_eps", 1e-5)}
        optimizer = f"use_rms_prop=False, policy_kwargs.optimizer_kwargs={policy_kwargs['optimizer_kwargs']}"
    m.row("optimizer, rmsprop_alpha, rmsprop_eps, adam_eps", optimizer, "RMSpropTFLike = TensorFlow's, torch.optim.RMSprop = PyTorch's")
    m.require("return_scaling", False, "SB3 has no return scaling of the value targets (VecNormalize scales the rewards)")
    m.row("return_scaling", "-", "off: SB3 cannot express it")
    kwargs |= {"normalize_advantage": m.get("norm_adv", False), "ent_coef": m.get("ent_coef", 0.0), "vf_coef": m.get("vf_coef", 0.5)}
    m.row("norm_adv", f"normalize_advantage={kwargs['normalize_advantage']}")
    m.row("ent_coef", f"ent_coef={kwargs['ent_coef']}")
    m.row("vf_coef", f"vf_coef={kwargs['vf_coef']}", "c_v E[(V - R)^2] in both (a2c.py has no 1/2)")
    return kwargs, policy_kwargs


def map_trpo(m: Mapping, discrete: bool):
    """sb3-contrib measures a Gaussian policy's KL per action dimension: torch's Normal KL is (B, A) and its
    .mean() averages over the dimensions too, so its target_kl bounds KL / A and its Fisher is H / A. trpo.py's KL
    is the policy's, summed over dimensions (a Categorical's is one number per state in both). Solving
    (H / A + lambda' I) s = g with the bound KL / A <= delta' takes the step that trpo.py takes with H + A lambda'
    and KL <= A delta': so target_kl = max_kl / A and cg_damping = damping / A (tests/test_benchmark.py checks
    that one update then moves the parameters the same)."""
    kwargs, policy_kwargs = on_policy_common(m, "TRPO", discrete)
    adam(m, policy_kwargs, " (the critic's)")
    m.require("fvp_subsample", 1, "sb3-contrib's sub_sampling_factor thins the whole policy step, not only the Fisher-vector products")
    batch = m.get("num_envs") * m.get("num_steps")
    per_dim = 1 if discrete else m.action_dim  # the divisor of sb3-contrib's KL
    kwargs |= {
        "target_kl": m.get("max_kl", 0.01) / per_dim,
        "cg_damping": m.get("damping", 0.1) / per_dim,
        "cg_max_steps": m.get("cg_iters", 15),
        "line_search_shrinking_factor": m.get("backtrack_coef", 0.8),
        "line_search_max_iter": m.get("backtrack_iters", 10),
        "n_critic_updates": m.get("update_epochs", 10),
        "batch_size": batch // m.get("num_minibatches", batch // 128),
        "normalize_advantage": m.get("norm_adv", True),
    }
    why = f"/ {per_dim}: sb3-contrib's KL is per action dimension (see map_trpo)" if per_dim > 1 else ""
    m.row("max_kl", f"target_kl={kwargs['target_kl']:g}", f"delta, the KL trust region {why}".strip())
    m.row("damping", f"cg_damping={kwargs['cg_damping']:g}", why)
    m.row("cg_iters", f"cg_max_steps={kwargs['cg_max_steps']}")
    m.row("backtrack_coef", f"line_search_shrinking_factor={kwargs['line_search_shrinking_factor']}")
    m.row("backtrack_iters", f"line_search_max_iter={kwargs['line_search_max_iter']}")
    m.row("update_epochs", f"n_critic_updates={kwargs['n_critic_updates']}", "critic epochs per iteration")
    m.row("num_minibatches", f"batch_size={kwargs['batch_size']}", "critic minibatch = num_envs * num_steps / num_minibatches")
    m.row("norm_adv", f"normalize_advantage={kwargs['normalize_advantage']}", "over the whole batch in both")
    m.row("fvp_subsample", "sub_sampling_factor=1")
    return kwargs, policy_kwargs


def map_sac(m: Mapping, discrete: bool):
    if discrete:
        raise SystemExit("peer: SB3's SAC needs Box actions")
    m.require("policy_frequency", 1, "SB3's SAC updates the actor at every gradient step")
    gradient_steps = m.get("gradient_steps")
    kwargs = {
        "learning_rate": m.get("learning_rate", 3e-4),
        "buffer_size": m.get("buffer_size", 1_000_000),
        "learning_starts": m.get("learning_starts", 100),
        "batch_size": m.get("batch_size", 256),
        "tau": m.get("tau", 0.005),
        "gamma": m.get("gamma", 0.99),
        "train_freq": 1,
        "gradient_steps": m.get("num_envs") if gradient_steps is None else gradient_steps,
        "target_update_interval": m.get("target_network_frequency", 1),
        "ent_coef": "auto" if m.get("autotune", True) else m.get("alpha", 0.2),
    }
    hidden = list(m.get("hidden_sizes", (256, 256)))
    policy_kwargs = {
        "net_arch": {"pi": hidden, "qf": hidden},
        "activation_fn": m.get("activation", "relu"),
        "optimizer_kwargs": {"eps": m.get("adam_eps", 1e-8)},
    }
    m.row("learning_rate", f"learning_rate={kwargs['learning_rate']}", "actor, critics and alpha in both")
    for name in ("buffer_size", "learning_starts", "batch_size"):
        m.row(name, f"{name}={kwargs[name]}")
    m.row("gradient_steps", f"train_freq=1, gradient_steps={kwargs['gradient_steps']}", "updates per vector step (None: num_envs)")
    m.row("policy_frequency", "(every gradient step)")
    m.row("tau", f"tau={kwargs['tau']}", "Polyak coefficient")
    m.row("gamma", f"gamma={kwargs['gamma']}")
    m.row("target_network_frequency", f"target_update_interval={kwargs['target_update_interval']}", "in gradient steps in both")
    m.row("autotune, alpha", f"ent_coef={kwargs['ent_coef']!r}", "auto: alpha starts at 1, target entropy -dim(A), in both")
    m.row("hidden_sizes", f"policy_kwargs.net_arch=dict(pi={hidden}, qf={hidden})", "twin critics in both")
    m.row("activation", f"policy_kwargs.activation_fn={policy_kwargs['activation_fn']}")
    m.row("adam_eps", f"policy_kwargs.optimizer_kwargs=dict(eps={policy_kwargs['optimizer_kwargs']['eps']})")
    m.row("log_std_min, log_std_max", "(fixed: clamp to [-20, 2])", "no equivalent: SB3 clamps, sac.py squashes with tanh into [min, max]")
    return kwargs, policy_kwargs, None


def map_to_peer(script: str, args: dict, discrete: bool, action_dim: int) -> tuple[dict, list[dict], list[str]]:
    """Our resolved Args (a dict) and the env's action space (Discrete or not; its number of dimensions, 1 for
    Discrete) -> (the peer's spec for run_peer, the mapping table, the unmapped fields)."""
    library, algo = PEERS[script]
    m = Mapping(args, action_dim)
    if algo == "SAC":
        kwargs, policy_kwargs, norm = map_sac(m, discrete)
    else:
        kwargs, policy_kwargs = {"PPO": map_ppo, "A2C": map_a2c, "TRPO": map_trpo}[algo](m, discrete)
        norm = normalisation(m, discrete)
    env_kwargs = json.loads(args["env_kwargs"])
    m.row("env_id, env_kwargs", f"make_vec_env({args['env_id']!r}, env_kwargs={env_kwargs})", "Monitor + DummyVecEnv: same-step autoreset")
    m.row("num_envs", f"n_envs={args['num_envs']}")
    total = args["total_timesteps"]
    if algo != "SAC":  # ours runs whole iterations only
        total -= total % (args["num_envs"] * args["num_steps"])
    m.row("total_timesteps", f"learn(total_timesteps={total})", "whole iterations, as ours" if algo != "SAC" else "")
    m.row("seed", f"seed={args['seed']}", "env i gets seed + i; the evaluation env seed + 10000, as ours")
    m.row("eval_episodes", f"evaluate_policy(n_eval_episodes={args['eval_episodes']}, deterministic=True)", "VecNormalize frozen")
    m.row("torch_threads, cuda", f"torch.set_num_threads({args['torch_threads']}), device={'cuda' if args['cuda'] else 'cpu'}")
    spec = {
        "library": library,
        "algo": algo,
        "env_id": args["env_id"],
        "env_kwargs": env_kwargs,
        "n_envs": args["num_envs"],
        "total": total,
        "norm": norm,
        "kwargs": kwargs,
        "policy_kwargs": policy_kwargs,
        "eval_episodes": args["eval_episodes"],
        "torch_threads": args["torch_threads"],
        "device": "cuda" if args["cuda"] else "cpu",
    }
    return spec, m.rows, m.unmapped()


# ---------------------------------------------------------------------------------------------------
# Peer adapter: runs one SB3 / sb3-contrib job and writes what our scripts write (runs/<run>/metrics.jsonl with
# the same metric names, "run dir:" and "evaluation:" lines), so the runner reads both the same way.
# ---------------------------------------------------------------------------------------------------
class MetricsFile:
    def __init__(self, run_dir: str):
        os.makedirs(run_dir, exist_ok=True)
        self.file = open(os.path.join(run_dir, "metrics.jsonl"), "a")

    def log(self, global_step: int, metrics: dict) -> None:
        self.file.write(json.dumps({"global_step": int(global_step), **{k: float(v) for k, v in metrics.items()}}) + "\n")

    def close(self) -> None:
        self.file.close()


def make_callback(metrics: MetricsFile, run_dir: str, save_every: int, progress_every: float, total: int, sps_every: int):
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.vec_env import VecNormalize

    class PeerCallback(BaseCallback):
        """Episodic returns against the step, SPS (after the updates; SAC's warm-up excluded), checkpoints."""

        def _on_training_start(self) -> None:
            self.returns, self.last_print = [], time.time()
            self.warmup = self.model.learning_starts if isinstance(self.model, OffPolicyAlgorithm) else 0
            self.t0, self.step0 = time.time(), self.num_timesteps  # reset at the end of the warm-up
            self.next_sps = self.num_timesteps + sps_every
            self.next_save = self.num_timesteps + save_every if save_every else None

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:  # Monitor's statistics, raw rewards
                    self.returns.append(info["episode"]["r"])
                    metrics.log(
                        self.num_timesteps, {"charts/episodic_return": info["episode"]["r"], "charts/episodic_length": info["episode"]["l"]}
                    )
            if self.step0 < self.warmup <= self.num_timesteps:
                self.t0, self.step0 = time.time(), self.num_timesteps
            return True

        def sps(self) -> int:
            return int((self.num_timesteps - self.step0) / max(time.time() - self.t0, 1e-9))

        def _on_rollout_start(self) -> None:  # after the previous update: SPS includes it
            if self.num_timesteps >= self.next_sps and self.num_timesteps > max(self.step0, self.warmup):
                metrics.log(self.num_timesteps, {"charts/SPS": self.sps()})
                self.next_sps += sps_every
            if self.next_save is not None and self.num_timesteps >= self.next_save:
                save_peer_checkpoint(self.model, run_dir)
                self.next_save += save_every
            if time.time() - self.last_print >= progress_every:
                self.last_print = time.time()
                recent = f"{sum(self.returns[-100:]) / len(self.returns[-100:]):.1f}" if self.returns else "n/a"
                print(f"step {self.num_timesteps}/{total} | {self.sps()} SPS | return (last 100 episodes) {recent}", flush=True)

        def _on_training_end(self) -> None:
            if self.num_timesteps > max(self.step0, self.warmup):
                metrics.log(self.num_timesteps, {"charts/SPS": self.sps()})

    def save_peer_checkpoint(model, run_dir: str) -> None:
        """runs/<run>/peer_checkpoint/: model.zip, vecnormalize.pkl, replay.pkl (SAC), state.json. Written to a
        temporary folder, then renamed over the old one: an interrupted save leaves the previous checkpoint."""
        final, tmp, old = (os.path.join(run_dir, "peer_checkpoint" + s) for s in ("", ".tmp", ".old"))
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        model.save(os.path.join(tmp, "model.zip"))
        if isinstance(model.get_env(), VecNormalize):
            model.get_env().save(os.path.join(tmp, "vecnormalize.pkl"))
        if isinstance(model, OffPolicyAlgorithm):
            model.save_replay_buffer(os.path.join(tmp, "replay.pkl"))
        with open(os.path.join(tmp, "state.json"), "w") as f:
            json.dump({"global_step": int(model.num_timesteps)}, f)
        metrics.file.flush()
        if os.path.exists(final):
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    return PeerCallback()


def peer_checkpoint_dir(run_dir: str) -> str | None:
    for suffix in ("", ".old"):  # .old: killed between the two renames of a save
        path = os.path.join(run_dir, "peer_checkpoint" + suffix)
        if os.path.isfile(os.path.join(path, "state.json")):
            return path
    return None


def linear_schedule(lr: float, shift: float = 0.0):
    """SB3 schedule: progress_remaining goes 1 -> 0 over the run; see linear_lr for the shift."""
    return lambda progress_remaining: lr * min(1.0, progress_remaining + shift)


def run_peer(spec: dict, seed: int, run_dir: str, resume: str | None = None, save_every: int = 0, progress_every: float = 60.0) -> dict:
    """Train and evaluate one SB3 / sb3-contrib model described by spec (the format of map_to_peer and of
    benchmark/calibrate.py's CASES): {"algo", "env_id", "n_envs", "total", "norm": bool or VecNormalize kwargs,
    "kwargs" (("linear", lr[, shift]) for a decaying rate), "policy_kwargs" (activation_fn as a name)}."""
    import numpy as np
    import torch

    torch.set_num_threads(spec.get("torch_threads", 1))
    from sb3_contrib import TRPO
    from stable_baselines3 import A2C, PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
    from stable_baselines3.common.vec_env import VecNormalize

    algo = {"PPO": PPO, "A2C": A2C, "SAC": SAC, "TRPO": TRPO}[spec["algo"]]
    kwargs = dict(spec["kwargs"])
    for k, v in kwargs.items():
        if isinstance(v, list | tuple) and v and v[0] == "linear":
            kwargs[k] = linear_schedule(*v[1:])
    default_pk = {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": "tanh", "ortho_init": True}
    policy_kwargs = dict(spec.get("policy_kwargs") or default_pk)
    policy_kwargs["activation_fn"] = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[policy_kwargs.get("activation_fn", "tanh")]
    if "optimizer_class" in policy_kwargs:
        policy_kwargs["optimizer_class"] = {"RMSpropTFLike": RMSpropTFLike, "Adam": torch.optim.Adam}[policy_kwargs["optimizer_class"]]
    norm = spec.get("norm")
    if norm is True:
        norm = {"clip_obs": 10.0, "clip_reward": 10.0, "gamma": kwargs.get("gamma", 0.99)}
    env_kwargs = spec.get("env_kwargs") or None
    device = spec.get("device", "cpu") if torch.cuda.is_available() else "cpu"
    env = make_vec_env(spec["env_id"], n_envs=spec["n_envs"], seed=seed, env_kwargs=env_kwargs)
    if resume:
        if norm:
            env = VecNormalize.load(os.path.join(resume, "vecnormalize.pkl"), env)
        model = algo.load(os.path.join(resume, "model.zip"), env=env, device=device)
        if isinstance(model, OffPolicyAlgorithm):
            model.load_replay_buffer(os.path.join(resume, "replay.pkl"))
        print(f"resumed {os.path.basename(run_dir)} at step {model.num_timesteps}", flush=True)
    else:
        if norm:
            env = VecNormalize(env, **norm)
        model = algo("MlpPolicy", env, seed=seed, device=device, policy_kwargs=policy_kwargs, verbose=0, **kwargs)
    metrics = MetricsFile(run_dir)
    n_steps = kwargs.get("n_steps", 1) * spec["n_envs"]
    callback = make_callback(metrics, run_dir, save_every, progress_every, spec["total"], max(n_steps, 2048))
    start = time.time()
    model.learn(spec["total"] - model.num_timesteps, callback=callback, reset_num_timesteps=resume is None)
    wall = time.time() - start
    returns = [float(r) for r in callback.returns]
    summary = {"run_dir": run_dir, "global_step": int(model.num_timesteps), "sps": callback.sps(), "wall_s": wall}
    summary["last100"] = float(np.mean(returns[-100:])) if returns else float("nan")
    episodes = spec.get("eval_episodes", 10)
    if episodes:
        eval_env = make_vec_env(spec["env_id"], n_envs=1, seed=seed + 10_000, env_kwargs=env_kwargs)
        if norm:  # frozen training statistics, raw rewards
            eval_env = VecNormalize(eval_env, training=False, norm_obs=env.norm_obs, norm_reward=False, clip_obs=env.clip_obs)
            eval_env.obs_rms = env.obs_rms
        eval_returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True)
        summary.update(
            eval_returns=[float(r) for r in eval_returns], eval_mean=float(np.mean(eval_returns)), eval_std=float(np.std(eval_returns))
        )
        metrics.log(model.num_timesteps, {"eval/episodic_return": summary["eval_mean"]})
    metrics.close()
    return summary


def script_args(script: str, flags: list[str]) -> dict:
    """The script's Args resolved from these flags by the script's own cli() (defaults, sweep booleans)."""
    path = os.path.join(ROOT, script)
    if not os.path.isfile(path):
        raise SystemExit(f"peer: {script} does not exist (its Args give the peer's hyper-parameters)")
    module_spec = importlib.util.spec_from_file_location(f"_peer_of_{script[:-3]}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    argv = sys.argv
    sys.argv = [script, *flags]
    try:
        args = module.cli(module.Args)
    finally:
        sys.argv = argv
    return json.loads(json.dumps(dataclasses.asdict(args)))  # tuples -> lists, as in args.json


def peer_spec(script: str, flags: list[str]) -> tuple[dict, dict, list[dict], list[str]]:
    """Our Args resolved from the flags, and the peer's spec, mapping table and unmapped fields."""
    if script not in PEERS:
        raise SystemExit(f"peer: {script} has no peer (peers: {', '.join(PEERS)})")
    args = script_args(script, flags)
    import gymnasium as gym

    probe = gym.make(args["env_id"], **json.loads(args["env_kwargs"]))
    discrete = isinstance(probe.action_space, gym.spaces.Discrete)
    action_dim = 1 if discrete else math.prod(probe.action_space.shape)
    probe.close()
    return (args, *map_to_peer(script, args, discrete, action_dim))


def peer_main(argv: list[str]) -> None:
    """python benchmark/run.py peer <script> [the script's flags] [--resume runs/<run>/peer_checkpoint] [--allow-unmapped]"""
    if not argv or argv[0] in ("-h", "--help"):
        print(peer_main.__doc__)
        return
    script, flags = argv[0], list(argv[1:])
    resume, allow_unmapped, rest = None, False, []
    i = 0
    while i < len(flags):  # our own two options; everything else is the script's
        if flags[i] == "--resume":
            resume, i = flags[i + 1], i + 2
        elif flags[i].startswith("--resume="):
            resume, i = flags[i].split("=", 1)[1], i + 1
        elif flags[i] == "--allow-unmapped":
            allow_unmapped, i = True, i + 1
        else:
            rest.append(flags[i])
            i += 1
    args, spec, rows, unmapped = peer_spec(script, rest)
    if unmapped and not allow_unmapped:
        raise SystemExit(
            f"peer: {script} has fields with no row in benchmark/run.py's {spec['algo']} mapping: {', '.join(unmapped)} "
            "(add a row, or pass --allow-unmapped to run anyway and record them)"
        )
    impl = f"sb3-{spec['algo'].lower()}"
    if resume:
        run_dir = os.path.relpath(os.path.dirname(os.path.abspath(resume)))
    else:
        run_dir = os.path.join("runs", f"{args['env_id']}__{impl}__{args['seed']}__{int(time.time())}")
        while os.path.exists(run_dir):
            run_dir += "-2"
    print(f"peer {spec['library']}.{spec['algo']} for {script} on {args['env_id']}")
    print(f"run dir: {run_dir}", flush=True)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "args.json"), "w") as f:
        json.dump({"script_args": args, "peer": spec, "mapping": rows, "notes": NOTES[spec["algo"]], "unmapped": unmapped}, f, indent=2)
    summary = run_peer(spec, args["seed"], run_dir, resume, args["save_every"], args["progress_every"])
    if "eval_mean" in summary:
        n = len(summary["eval_returns"])
        print(f"evaluation: mean return {summary['eval_mean']:.2f} +- {summary['eval_std']:.2f} over {n} episodes")


# ---------------------------------------------------------------------------------------------------
# Reading a run: metrics.jsonl and the stdout log -> the results record
# ---------------------------------------------------------------------------------------------------
def read_metrics(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written as we read
                break
    return records


def sps_after_warmup(records: list[dict], warmup: int, log_text: str) -> float | None:
    """SPS over the logged stretch after a random warm-up, from the cumulative charts/SPS the run logged:
    at a record (step x, sps y) the process had trained (x - x0) / y seconds, x0 its first step (0, or the
    step it resumed at). Two records a < b after the warm-up give (b - a) / (t_b - t_a)."""
    resumed = re.findall(r"^resumed \S+ at step (\d+)", log_text, re.M)
    x0 = int(resumed[-1]) if resumed else 0
    points = [
        (r["global_step"], r["charts/SPS"])
        for r in records
        if "charts/SPS" in r and r["global_step"] > max(x0, warmup) and r["charts/SPS"] > 0
    ]
    if len(points) < 2:
        return None
    (a, sps_a), (b, sps_b) = points[0], points[-1]
    seconds = (b - x0) / sps_b - (a - x0) / sps_a
    return (b - a) / seconds if seconds > 0 else None


def summarise(records: list[dict], log_text: str, warmup: int = 0) -> dict:
    """Curve, last-100 return, evaluation, SPS of one run. With a warm-up (our SAC's learning_starts, whose
    charts/SPS counts it), SPS is taken after it; the peer adapter already starts its clock after it."""
    steps, returns, sps, evaluation, evals = [], [], None, None, {"global_step": [], "return": []}
    for r in records:
        if "charts/episodic_return" in r:
            steps.append(r["global_step"])
            returns.append(round(r["charts/episodic_return"], 3))
        if "charts/SPS" in r:
            sps = r["charts/SPS"]
        if "eval/episodic_return" in r:
            evaluation = {"mean": r["eval/episodic_return"]}
            evals["global_step"].append(r["global_step"])  # --eval-every's curve (its last point: the final evaluation)
            evals["return"].append(round(r["eval/episodic_return"], 3))
    m = list(re.finditer(r"^evaluation: mean return (\S+) \+- (\S+) over (\d+) episodes", log_text, re.M))
    if m:
        evaluation = {"mean": float(m[-1][1]), "std": float(m[-1][2]), "episodes": int(m[-1][3])}
    tail = returns[-100:]
    return {
        "global_step": max((r["global_step"] for r in records), default=0),
        "episodes": {"global_step": steps, "return": returns},
        "n_episodes": len(returns),
        "return_last100": sum(tail) / len(tail) if tail else None,
        "eval": evaluation,
        "eval_curve": evals,
        "sps": (sps_after_warmup(records, warmup, log_text) or sps) if warmup else sps,
    }


def checkpoint_of(job: "Job", run_dir: str) -> tuple[str, int] | None:
    """The run's last periodic checkpoint and its global step, or None."""
    if job.peer:
        path = peer_checkpoint_dir(run_dir)
        if path is None:
            return None
        with open(os.path.join(path, "state.json")) as f:
            return path, json.load(f)["global_step"]
    path = os.path.join(run_dir, job.script[:-3] + ".pt")
    if not os.path.isfile(path):
        return None
    import torch

    return path, int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def truncate_metrics(run_dir: str, global_step: int) -> None:
    """Drop what was logged after the checkpoint: the resumed run logs those steps again."""
    kept = [r for r in read_metrics(run_dir) if r["global_step"] <= global_step]
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "gymnasium", "mujoco", "numpy", "tyro", "stable-baselines3", "sb3-contrib"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}


# ---------------------------------------------------------------------------------------------------
# The campaign
# ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Job:
    script: str
    env_id: str
    seed: int
    flags: list[str]
    peer: bool = False

    @property
    def impl(self) -> str:
        return f"sb3-{PEERS[self.script][1].lower()}" if self.peer else self.script[:-3]

    @property
    def key(self) -> str:
        return f"{self.env_id.replace('/', '-').replace(':', '-')}__{self.impl}__{self.seed}"

    def config(self) -> dict:
        """What identifies the run: a finished result with another config is not this run."""
        return {
            "script": self.script,
            "peer": "/".join(PEERS[self.script]) if self.peer else None,
            "env_id": self.env_id,
            "seed": self.seed,
            "flags": self.flags,
        }

    def argv(self, save_every: int, resume: str | None, allow_unmapped: bool) -> list[str]:
        head = (
            [sys.executable, os.path.join(ROOT, "benchmark", "run.py"), "peer", self.script]
            if self.peer
            else [sys.executable, os.path.join(ROOT, self.script)]
        )
        tail = ["--env-id", self.env_id, "--seed", str(self.seed), "--torch-threads", "1", "--progress-every", "60"]
        tail += ["--save-every", str(save_every)] if save_every else []
        tail += ["--resume", resume] if resume else []
        tail += ["--allow-unmapped"] if allow_unmapped and self.peer else []
        return head + self.flags + tail


CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def shown_command(argv: list[str]) -> str:
    """The command as one would type it from the repository root."""
    shown = ["python"] + [os.path.relpath(a, ROOT) if os.path.isabs(a) and a.startswith(ROOT) else a for a in argv[1:]]
    return " ".join(f"{k}={v}" for k, v in CHILD_ENV.items() if k != "PYTHONUNBUFFERED") + " " + shlex.join(shown)


def die_with_parent() -> None:
    """Linux: the child gets SIGINT if the runner is killed, so no orphan keeps training unseen."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def expand(
    suite: dict, scripts: list[str] | None, envs: list[str] | None, seeds: list[int] | None, extra: list[str], impl: str
) -> list[Job]:
    """The suite's grid (optionally narrowed) as jobs, seed-major so that an interrupted campaign holds whole seeds."""
    jobs = []
    for seed in seeds or suite["seeds"]:
        for entry in suite["grid"]:
            for env_id in entry["envs"]:
                for script in entry["scripts"]:
                    if (envs and env_id not in envs) or (scripts and script not in scripts):
                        continue
                    flags = shlex.split(entry.get("flags", ""))
                    for pattern, value in suite.get("flags", {}).items():
                        script_glob, env_glob = pattern.split("@")
                        if fnmatch.fnmatch(script, script_glob) and fnmatch.fnmatch(env_id, env_glob):
                            flags += shlex.split(value)
                    flags += extra
                    if impl in ("ours", "both"):
                        jobs.append(Job(script, env_id, seed, flags))
                    if impl in ("peers", "both") and script in PEERS:
                        jobs.append(Job(script, env_id, seed, flags, peer=True))
    return jobs


def write_json(path: str, data: dict) -> None:
    """Indented, but a list of plain values on one line (the curves are long); atomic."""
    text = json.dumps(data, indent=1)
    text = re.sub(r"\[\n[^\[\]{}]*?\]", lambda m: re.sub(r"\[\n\s*", "[", re.sub(r"\n\s*\]", "]", re.sub(r",\n\s*", ", ", m[0]))), text)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


class Campaign:
    def __init__(self, name: str, results_dir: str, work_dir: str, save_every: int, allow_unmapped: bool):
        self.name, self.results_dir, self.work_dir = name, results_dir, work_dir
        self.save_every, self.allow_unmapped = save_every, allow_unmapped
        self.versions, self.machine = versions(), machine()

    def result_path(self, job: Job) -> str:
        return os.path.join(self.results_dir, job.key + ".json")

    def log_path(self, job: Job) -> str:
        return os.path.join(self.work_dir, "logs", job.key + ".log")

    def load(self, job: Job) -> dict | None:
        path = self.result_path(job)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def record(self, job: Job, status: str, attempts: list[dict], run_dir: str | None, log_text: str) -> dict:
        """Write the run's results file from its metrics and log."""
        absolute = os.path.join(self.work_dir, run_dir) if run_dir else None
        result = {
            "campaign": self.name,
            "key": job.key,
            "impl": job.impl,
            "kind": "peer" if job.peer else "ours",
            "script": job.script,
            "peer": "/".join(PEERS[job.script]) if job.peer else None,
            "env_id": job.env_id,
            "seed": job.seed,
            "config": job.config(),
            "status": status,
            "command": attempts[0]["command"] if attempts else None,
            "attempts": attempts,
            "run_dir": run_dir,
            "wall_s": sum(a.get("wall_s", 0.0) for a in attempts),
            **summarise(read_metrics(absolute) if absolute else [], log_text, self.warmup(job, absolute)),
            "versions": self.versions,
            "machine": self.machine,
            "definitions": DEFINITIONS,
        }
        if job.peer and absolute and os.path.exists(os.path.join(absolute, "args.json")):
            with open(os.path.join(absolute, "args.json")) as f:
                peer_args = json.load(f)
            result.update(
                mapping=peer_args["mapping"], notes=peer_args["notes"], unmapped=peer_args["unmapped"], peer_spec=peer_args["peer"]
            )
        if status == "failed":
            result["error"] = log_text[-3000:]
        write_json(self.result_path(job), result)
        return result

    def warmup(self, job: Job, run_dir: str | None) -> int:
        """Our run's random warm-up in steps (learning_starts in its args.json), 0 for a peer or none."""
        path = os.path.join(run_dir, "args.json") if run_dir and not job.peer else None
        if path is None or not os.path.exists(path):
            return 0
        with open(path) as f:
            return int(json.load(f).get("learning_starts", 0))

    def run(self, jobs: list[Job], workers: int, redo: bool, time_limit: float | None, refresh: float, poll: float = 0.5) -> int:
        pending, conflicts = [], []
        for job in jobs:
            prev = self.load(job)
            if prev is not None and prev["config"] != job.config():
                if not redo:
                    conflicts.append(job.key)
                    continue
                prev = None
            if prev is not None and prev["status"] == "done":
                print(f"skip (done): {job.key}")
                continue
            pending.append((job, prev))
        os.makedirs(self.results_dir, exist_ok=True)
        os.makedirs(os.path.join(self.work_dir, "logs"), exist_ok=True)
        if conflicts:
            print(
                f"refusing: these results exist with other flags (--redo to replace them, or another --campaign): {', '.join(conflicts)}",
                file=sys.stderr,
            )
            return 2
        stop = []
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda signum, frame: stop.append(signum))
        deadline = time.time() + time_limit if time_limit else None
        running, failed, last_refresh = {}, 0, time.time()
        while pending or running:
            while pending and len(running) < workers and not stop and (deadline is None or time.time() < deadline):
                job, prev = pending.pop(0)
                running[job.key] = self.launch(job, prev)
            time.sleep(poll)
            for key in list(running):
                state = running[key]
                if state["proc"].poll() is not None:
                    failed += self.finish(state, "done" if state["proc"].returncode == 0 else "failed") == "failed"
                    del running[key]
            if stop or (deadline is not None and time.time() >= deadline):
                why = f"signal {stop[0]}" if stop else "--time-limit"
                for state in running.values():  # SIGINT: Python unwinds and flushes metrics.jsonl on the way out
                    os.killpg(state["proc"].pid, signal.SIGINT)
                for state in running.values():
                    try:
                        state["proc"].wait(30)
                    except subprocess.TimeoutExpired:
                        os.killpg(state["proc"].pid, signal.SIGKILL)
                        state["proc"].wait()
                    self.finish(state, "interrupted")
                print(f"stopped ({why}): {len(running)} run(s) interrupted, {len(pending)} not started; run the same command to continue")
                return 130 if stop else 3
            if time.time() - last_refresh >= refresh:
                last_refresh = time.time()
                for state in running.values():
                    self.refresh(state)
        print(f"campaign {self.name}: finished{f' ({failed} failed)' if failed else ''}; results in {os.path.relpath(self.results_dir)}")
        return 1 if failed else 0

    def launch(self, job: Job, prev: dict | None) -> dict:
        attempts, run_dir, resume = [], None, None
        if prev is not None and prev.get("run_dir"):
            found = checkpoint_of(job, os.path.join(self.work_dir, prev["run_dir"]))
            if found is not None:  # continue it; else start afresh (the old run dir stays, unread)
                path, step = found
                truncate_metrics(os.path.join(self.work_dir, prev["run_dir"]), step)
                attempts, run_dir, resume = prev["attempts"], prev["run_dir"], os.path.relpath(path, self.work_dir)
        argv = job.argv(self.save_every, resume, self.allow_unmapped)
        log = open(self.log_path(job), "a")
        offset = log.tell()
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shown_command(argv)}\n")
        log.flush()
        print(f"{'resume' if resume else 'start'}: {job.key}" + (f" from step {step}" if resume else ""), flush=True)
        proc = subprocess.Popen(
            argv,
            cwd=self.work_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CHILD_ENV},
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        attempt = {
            "command": shown_command(argv),
            "cwd": os.path.relpath(self.work_dir, ROOT) if os.path.abspath(self.work_dir).startswith(ROOT + os.sep) else self.work_dir,
            "python": sys.executable,
            "started": time.time(),
        }
        return {"job": job, "proc": proc, "log": log, "offset": offset, "attempts": [*attempts, attempt], "run_dir": run_dir}

    def log_text(self, state: dict) -> str:
        state["log"].flush()
        with open(self.log_path(state["job"])) as f:
            f.seek(state["offset"])
            return f.read()

    def refresh(self, state: dict, status: str = "running") -> dict:
        text = self.log_text(state)
        found = re.search(r"^run dir: (\S+)", text, re.M)
        if found:
            state["run_dir"] = found[1]
        state["attempts"][-1]["wall_s"] = time.time() - state["attempts"][-1]["started"]
        return self.record(state["job"], status, state["attempts"], state["run_dir"], text)

    def finish(self, state: dict, status: str) -> str:
        state["attempts"][-1]["returncode"] = state["proc"].returncode
        result = self.refresh(state, status)
        state["log"].close()
        ret = result["return_last100"]
        shown = f"return (last 100) {ret:.1f}, " if ret is not None else ""
        print(f"{status}: {state['job'].key} ({shown}{result['sps']} SPS, {result['wall_s']:.0f} s)", flush=True)
        return status


def status_table(campaign: Campaign, jobs: list[Job]) -> None:
    counts = {}
    for job in jobs:
        prev = campaign.load(job)
        status = "pending" if prev is None else prev["status"] if prev["config"] == job.config() else "other flags"
        counts[status] = counts.get(status, 0) + 1
        detail = "" if prev is None else f"step {prev['global_step']}, {prev['wall_s']:.0f} s"
        print(f"{status:12s} {job.key} {detail}")
    print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())))


def parse_duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["peer"]:
        peer_main(argv[1:])
        return 0
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog="suites: " + "; ".join(f"{k}: {v['about']}" for k, v in SUITES.items())
    )
    p.add_argument("--suite", choices=sorted(SUITES), help="a named grid (its flags, seeds, peers); narrowed by --scripts/--envs/--seeds")
    p.add_argument("--campaign", help="results go to <results-dir>/<campaign>/ (default: the suite's name)")
    p.add_argument("--scripts", nargs="+", help="scripts, e.g. ppo.py a2c.py (with --suite: only these of its grid)")
    p.add_argument("--envs", nargs="+", help="gymnasium ids (with --suite: only these of its grid)")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the suite's)")
    p.add_argument("--flags", default="", help='flags for every run, after the suite\'s, e.g. "--total-timesteps 100000"')
    p.add_argument(
        "--impl", choices=["ours", "peers", "both"], help="our scripts, their peers, or both (default: the suite's; ours without a suite)"
    )
    p.add_argument("--workers", type=int, help="runs at a time (default: the suite's, else 1); one core each")
    p.add_argument(
        "--save-every", type=int, default=0, help="checkpoint each run every N steps, so that an interrupted run continues from there"
    )
    p.add_argument(
        "--time-limit", type=parse_duration, help="stop cleanly after this long (e.g. 2.5h): running runs are interrupted, to continue"
    )
    p.add_argument("--refresh", type=float, default=60.0, help="seconds between rewrites of the running runs' results files")
    p.add_argument("--redo", action="store_true", help="replace results whose flags differ instead of refusing")
    p.add_argument("--allow-unmapped", action="store_true", help="run peers even if a script field has no row in the mapping")
    p.add_argument("--status", action="store_true", help="show the campaign's state and exit")
    p.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    p.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    p.add_argument("--work-dir", default=os.path.join(HERE, "work"))
    a = p.parse_args(argv)
    if a.suite:
        suite = SUITES[a.suite]
    elif a.scripts and a.envs and a.seeds:
        suite = {"grid": [{"scripts": a.scripts, "envs": a.envs}], "seeds": a.seeds, "impl": "ours"}
    else:
        p.error("give --suite, or --scripts, --envs and --seeds")
    name = a.campaign or a.suite
    if not name:
        p.error("give --campaign NAME for a grid that is not a suite")
    jobs = expand(suite, a.scripts, a.envs, a.seeds, shlex.split(a.flags), a.impl or suite.get("impl", "ours"))
    missing = sorted({j.script for j in jobs if not os.path.isfile(os.path.join(ROOT, j.script))})
    if missing:
        print(f"skipped, not written yet: {', '.join(missing)}")
        jobs = [j for j in jobs if j.script not in missing]
    campaign = Campaign(name, os.path.join(a.results_dir, name), os.path.join(a.work_dir, name), a.save_every, a.allow_unmapped)
    if a.status:
        status_table(campaign, jobs)
        return 0
    if a.dry_run:
        for job in jobs:
            print(shown_command(job.argv(a.save_every, None, a.allow_unmapped)))
        return 0
    workers = a.workers or suite.get("workers", 1)
    if suite.get("workers") == 1 and workers > 1:
        print(f"warning: suite {a.suite} measures speed: run it with --workers 1", file=sys.stderr)
    return campaign.run(jobs, workers, a.redo, a.time_limit, a.refresh)


if __name__ == "__main__":
    sys.exit(main())
