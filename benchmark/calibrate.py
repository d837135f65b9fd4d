"""Calibrate a learning check: run a script and its Stable-Baselines3 peer over many seeds at one budget.

Each run is a separate process with one torch thread. Results are appended as JSON lines as they finish,
and a finished (impl, seed) pair is skipped when the command is run again.

  python benchmark/calibrate.py ppo-cartpole --seeds 10
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Each case: our command-line flags, and the SB3 peer with the same hyper-parameters mapped one to one:
# "mapped" derives it from the flags through benchmark/run.py's mapping tables (one source of truth).
OWN_DEFAULTS_BUDGET = 48 * 2048  # the own-defaults cases below: whole rollouts of both libraries' 2048 steps
CASES = {
    "ppo-cartpole": {
        "script": "ppo.py",
        "flags": "--env-id CartPole-v1 --total-timesteps 50000 --num-envs 4 --num-steps 128 --num-minibatches 4 "
        "--update-epochs 4 --learning-rate 2.5e-4 --ent-coef 0.01 --eval-episodes 10",
        "sb3": "mapped",
    },
    "trpo-cartpole": {
        "script": "trpo.py",
        "flags": "--env-id CartPole-v1 --total-timesteps 65536 --num-envs 4 --num-steps 512 --eval-episodes 10",
        "sb3": {
            "algo": "TRPO",
            "env_id": "CartPole-v1",
            "n_envs": 4,
            "total": 65536,
            "norm": False,
            "kwargs": dict(
                n_steps=512,
                batch_size=128,
                learning_rate=1e-3,
                gamma=0.99,
                gae_lambda=0.95,
                cg_max_steps=15,
                cg_damping=0.1,
                line_search_shrinking_factor=0.8,
                line_search_max_iter=10,
                n_critic_updates=10,
                normalize_advantage=True,
                target_kl=0.01,
                sub_sampling_factor=1,
            ),
        },
    },
    # PPO-KL has no SB3 peer: its reference is ppo.py on the ppo-cartpole case, the same flags and seeds.
    "ppo-kl-cartpole": {
        "script": "ppo_kl.py",
        "flags": "--env-id CartPole-v1 --total-timesteps 50000 --num-envs 4 --num-steps 128 --num-minibatches 4 "
        "--update-epochs 4 --learning-rate 2.5e-4 --ent-coef 0.01 --eval-episodes 10",
        "sb3": None,
    },
    # A2C: SB3's A2C with the hyper-parameters mapped one to one, RMSprop TF-style on both sides.
    "a2c-cartpole": {
        "script": "a2c.py",
        "flags": "--env-id CartPole-v1 --total-timesteps 100000 --num-envs 8 --num-steps 5 --gae-lambda 1.0 --ent-coef 0.0 "
        "--no-anneal-lr --optimizer rmsprop --eval-episodes 10",
        "sb3": {
            "algo": "A2C",
            "env_id": "CartPole-v1",
            "n_envs": 8,
            "total": 100000,
            "norm": False,
            "kwargs": dict(
                n_steps=5,
                learning_rate=7e-4,
                gamma=0.99,
                gae_lambda=1.0,
                ent_coef=0.0,
                vf_coef=0.5,
                max_grad_norm=0.5,
                normalize_advantage=False,
            ),
            "policy_kwargs": dict(
                net_arch=dict(pi=[64, 64], vf=[64, 64]),
                activation_fn="tanh",
                ortho_init=True,
                optimizer_class="RMSpropTFLike",
                optimizer_kwargs=dict(alpha=0.99, eps=1e-5, weight_decay=0),
            ),
        },
    },
    # a2c.py's own defaults (since issue 16: PyTorch's RMSprop), and SB3's A2C with them mapped one to one.
    "a2c-cartpole-defaults": {
        "script": "a2c.py",
        "flags": "--env-id CartPole-v1 --total-timesteps 100000 --eval-episodes 10",
        "sb3": "mapped",
    },
    # Issue 16's classic-control check: each script at its own defaults (tuned for MuJoCo) against its peer at the
    # peer's library defaults (`PPO("MlpPolicy", env)`, `TRPO("MlpPolicy", env)`: one env, 2048-step rollouts),
    # the same budget: 48 rollouts of 2048 steps. PPO-KL's reference is SB3's PPO (the PPO-penalty has no peer).
    **{
        f"{script[:-3].replace('_', '-')}-cartpole-own-defaults": {
            "script": script,
            "flags": f"--env-id CartPole-v1 --total-timesteps {OWN_DEFAULTS_BUDGET} --eval-episodes 10",
            "sb3": {"algo": algo, "env_id": "CartPole-v1", "n_envs": 1, "total": OWN_DEFAULTS_BUDGET, "norm": False, "kwargs": {}},
        }
        for script, algo in (("ppo.py", "PPO"), ("ppo_kl.py", "PPO"), ("trpo.py", "TRPO"))
    },
    # REINFORCE has no SB3 peer: its reference is its own seeds and the anchors.
    "reinforce-cartpole": {
        "script": "reinforce.py",
        "flags": "--env-id CartPole-v1 --total-timesteps 100000 --num-envs 4 --num-steps 1000 --learning-rate 3e-3 "
        "--vf-learning-rate 3e-3 --eval-episodes 10",
        "sb3": None,
    },
    # SAC: SB3's SAC mapped one to one by run.py (log-std bound aside: SB3 clamps to [-20, 2], ours squashes into [-5, 2]).
    "sac-pendulum": {
        "script": "sac.py",
        "flags": "--env-id Pendulum-v1 --total-timesteps 6000 --learning-starts 1000 --learning-rate 1e-3 --hidden-sizes 64 64 "
        "--eval-episodes 10",
        "sb3": "mapped",
    },
}


def run_ours(case: dict, seed: int) -> dict:
    cmd = [
        sys.executable,
        os.path.join(ROOT, case["script"]),
        *case["flags"].split(),
        "--seed",
        str(seed),
        "--progress-every",
        "1e9",
        "--exp-name",
        f"calibration-{case['script'][:-3]}",
    ]
    workdir = os.path.join(HERE, "results", "calibration_runs")
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    run_dir = [line.split()[-1] for line in out.stdout.splitlines() if line.startswith("run dir:")]
    evals = [float(line.split("mean return ")[1].split()[0]) for line in out.stdout.splitlines() if line.startswith("evaluation:")]
    returns = []
    with open(os.path.join(workdir, run_dir[0], "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "charts/episodic_return" in rec:
                returns.append(rec["charts/episodic_return"])
    return {"last100": sum(returns[-100:]) / len(returns[-100:]), "eval": evals[0], "wall": time.time() - start}


def run_sb3(case: dict, seed: int) -> dict:
    """The SB3 / sb3-contrib peer through the benchmark runner's adapter (benchmark/run.py: run_peer)."""
    from run import peer_spec, run_peer

    spec = case["sb3"]
    if spec == "mapped":  # derived from our flags by the benchmark's one-to-one mapping
        _, spec, _, unmapped = peer_spec(case["script"], [*case["flags"].split(), "--seed", str(seed)])
        assert not unmapped, unmapped
    run_dir = os.path.join(
        HERE, "results", "calibration_runs", "runs", f"{spec['env_id']}__sb3-{spec['algo'].lower()}__{seed}__{int(time.time())}"
    )
    start = time.time()
    summary = run_peer({"eval_episodes": 10, **spec}, seed, run_dir)
    return {"last100": summary["last100"], "eval": summary["eval_mean"], "wall": time.time() - start}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--impl", choices=["ours", "sb3", "both"], default="both")
    p.add_argument("--one", nargs=2, metavar=("IMPL", "SEED"), help=argparse.SUPPRESS)
    a = p.parse_args()
    case = CASES[a.case]
    if a.one:
        impl, seed = a.one[0], int(a.one[1])
        print(json.dumps({"impl": impl, "seed": seed, **(run_ours if impl == "ours" else run_sb3)(case, seed)}))
        return
    path = os.path.join(HERE, "results", f"calibration_{a.case}.jsonl")
    done = set()
    if os.path.exists(path):
        with open(path) as f:
            done = {(r["impl"], r["seed"]) for r in map(json.loads, f)}
    impls = ["ours", "sb3"] if a.impl == "both" else [a.impl]
    for seed in range(1, a.seeds + 1):
        for impl in impls:
            if (impl, seed) in done:
                continue
            out = subprocess.run([sys.executable, __file__, a.case, "--one", impl, str(seed)], capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            line = out.stdout.strip().splitlines()[-1]
            with open(path, "a") as f:
                f.write(line + "\n")
            print(line, flush=True)


if __name__ == "__main__":
    main()
