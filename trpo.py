"""TRPO: Trust Region Policy Optimization (Schulman et al., 2015, arXiv:1502.05477).

    maximise  L(theta) = E[pi_theta(a|s) / pi_old(a|s) * A]   subject to   E_s[KL(pi_old(.|s) || pi_theta(.|s))] <= delta

Each iteration:
  1) collect num_steps x num_envs transitions with the current policy pi_old
  2) GAE(gamma, lambda) advantages A_t and lambda-returns R_t = A_t + V(s_t), bootstrapping from
     V(true final observation) at a time-limit truncation; only a termination cuts the return
  3) policy, one step on the whole batch: g = grad L; s = H^-1 g by conjugate gradient, where H (the Hessian of
     the KL at theta_old, equal to the Fisher matrix) is only ever applied to vectors, by double backprop;
     full step sqrt(2 delta / s^T H s) s; backtracking line search that keeps the first step whose measured KL
     is <= delta and whose surrogate improves, and the old policy if none does
  4) critic: update_epochs passes of minibatch Adam on 1/2 E[(V(s) - R)^2], on the critic's parameters only
  5) log, checkpoint; after the last iteration, evaluate the mean action with frozen normalisation

The KL is always KL(pi_old || pi_theta), in closed form (categorical or diagonal Gaussian). Defaults are
sb3-contrib's TRPO (delta 0.01, 15 CG iterations, damping 0.1, line search 0.8 x 10, critic lr 1e-3 for 10
epochs of minibatch 128, 2048 steps, lambda 0.95) with ppo.py's 64-64 tanh networks and normalisation.
Departures from sb3-contrib, each for the paper or for determinism: the line search measures KL(pi_old || pi)
(sb3-contrib measures KL(pi || pi_old); the Fisher at theta_old is the same, the accepted steps are not) and
accepts KL <= delta (sb3-contrib: <); conjugate gradient starts from 0 (sb3-contrib: 1e-4 * N(0, I), which
draws from the RNG); --fvp-subsample thins only the Fisher products (sb3-contrib's sub-sampling thins the whole
policy step).

Reading order: Args -> environment -> normalisation -> networks (Agent for the update, HostPolicy for
acting) -> TRPO math (pure functions that the tests import) -> main() -> plumbing (command line, errors,
checkpoints, logging, evaluation: nothing TRPO-specific). Blocks marked `# === shared: NAME ===` are
byte-identical in every script that carries them (tests/test_drift.py checks); the algorithm lives between.

Run:  python trpo.py --env-id Hopper-v5          (continuous, MuJoCo)
      python trpo.py --env-id CartPole-v1 --total-timesteps 100000 --num-envs 4 --num-steps 512
      python trpo.py --eval-checkpoint runs/<run>/trpo.pt --capture-video
"""

# === shared: imports ===
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, fields, replace

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from gymnasium.vector import AutoresetMode, SyncVectorEnv

# === end shared: imports ===


@dataclass
class Args:
    # === shared: args-head ===
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment; part of the run name runs/<env>__<exp_name>__<seed>__<time>"""
    seed: int = 1
    """seeds Python, NumPy, torch, the env resets and the action space"""
    torch_deterministic: bool = True
    """set torch.backends.cudnn.deterministic and use deterministic algorithms"""
    cuda: bool = False
    """put networks and storage on the GPU when one is present (falls back to the CPU). Off by default:
    networks this small with few envs run faster on the CPU"""
    torch_threads: int = 1
    """torch CPU threads; 1 is fastest for small networks, and two contending threads on 2 cores are
    many times slower"""
    track: bool = False
    """log to Weights & Biases (WANDB_MODE=offline works without an account; `wandb sync` later)"""
    wandb_project_name: str = "policy-gradients"
    """the W&B project"""
    wandb_entity: str | None = None
    """the W&B entity (team or user); None uses your default"""
    capture_video: bool = False
    """record mp4s of env 0's episodes to videos/<run> (and of evaluation episodes); logged to W&B"""
    save_model: bool = False
    """write runs/<run>/<script>.pt at the end of training"""
    save_every: int = 0
    """also write that checkpoint every this many environment steps (0: never)"""
    resume: str | None = None
    """continue training from this checkpoint (its args are the defaults; flags given override them)"""
    eval_checkpoint: str | None = None
    """evaluate this checkpoint (no training), with its normalisation statistics frozen"""
    eval_episodes: int = 10
    """episodes of the deterministic (mean-action) evaluation after training; 0 skips it"""
    progress_every: float = 10.0
    """seconds between two progress lines on stdout"""
    env_id: str = "Hopper-v5"
    """gymnasium id, or `module:EnvName-v0` to import a module that registers it"""
    env_kwargs: str = "{}"
    """keyword arguments for gym.make, as JSON, e.g. '{"max_episode_steps": 500}'"""
    total_timesteps: int = 1_000_000
    """budget in environment transitions, summed over the sub-envs"""
    num_envs: int = 1
    """parallel sub-environments (gymnasium SyncVectorEnv)"""
    # === end shared: args-head ===
    # TRPO's on-policy fields: ppo.py's args-on-policy less the Adam step on the policy (its step is set by
    # max_kl) and gradient clipping (sb3-contrib clips nothing), with sb3-contrib TRPO's defaults.
    num_steps: int = 2048
    """T: steps per sub-env per rollout; the batch is num_envs * num_steps (sb3-contrib TRPO: n_steps 2048)"""
    learning_rate: float = 1e-3
    """the critic's Adam step size (sb3-contrib TRPO: 1e-3); the policy's step is set by max_kl, not by this"""
    anneal_lr: bool = False
    """decay the critic's learning rate linearly to 0 over the run (sb3-contrib TRPO: constant)"""
    gamma: float = 0.99
    """gamma: discount factor, in (0, 1]"""
    gae_lambda: float = 0.95
    """lambda of GAE, in [0, 1]: 0 is the one-step TD advantage, 1 the Monte-Carlo return (sb3-contrib: 0.95)"""
    # Networks as sb3-contrib's MlpPolicy builds them: 64-64 tanh, orthogonal init (sqrt 2, 0.01, 1), log-std 0
    # === shared: args-network ===
    hidden_sizes: tuple[int, ...] = (64, 64)
    """widths of the hidden layers of the policy and of the value network (separate networks)"""
    activation: str = "tanh"
    """hidden activation: tanh (the PPO paper's MuJoCo choice) or relu"""
    hidden_init_gain: float = 2**0.5
    """orthogonal-init gain of the hidden layers (sqrt 2; Implementation Matters)"""
    policy_init_gain: float = 0.01
    """orthogonal-init gain of the policy head: a near-uniform initial policy"""
    value_init_gain: float = 1.0
    """orthogonal-init gain of the value head"""
    init_logstd: float = 0.0
    """initial log-std of the Gaussian policy (state-independent), i.e. std 1"""
    # === end shared: args-network ===
    adam_eps: float = 1e-5
    """the critic's Adam epsilon (SB3 policies: 1e-5)"""
    # Normalisation as ppo.py's (sb3-contrib has none unless wrapped in VecNormalize, as the RL Zoo does for MuJoCo)
    # === shared: args-normalisation ===
    norm_obs: bool | None = None
    """normalise observations with a running mean/std; None: on for Box actions, off for Discrete"""
    norm_reward: bool | None = None
    """scale rewards by the std of the discounted return; None: on for Box actions, off for Discrete"""
    clip_obs: float = 10.0
    """clip normalised observations to [-clip_obs, clip_obs]"""
    clip_reward: float = 10.0
    """clip scaled rewards to [-clip_reward, clip_reward]"""
    # === end shared: args-normalisation ===
    compile: bool = False
    """torch.compile the critic's loss (the policy step's double backward stays eager); compile time is
    excluded from charts/SPS"""
    num_minibatches: int = 16
    """critic minibatches per epoch; must divide num_envs * num_steps (2048 / 16 = 128, sb3-contrib's batch_size)"""
    update_epochs: int = 10
    """passes of the critic's regression over the batch per iteration (sb3-contrib: n_critic_updates 10)"""
    norm_adv: bool = True
    """normalise advantages over the whole batch to mean 0, std 1 (sb3-contrib: normalize_advantage)"""
    max_kl: float = 0.01
    """delta: the trust region's radius, E_s[KL(pi_old || pi_theta)] <= delta, the KL of the whole action
    distribution (typically 0.001-0.05). sb3-contrib's target_kl (0.01) bounds the KL averaged over action
    dimensions, so its 0.01 is 0.01 * dim(A) here, with damping 0.1 * dim(A)"""
    damping: float = 0.1
    """lambda: CG solves (H + lambda I) s = g, which keeps it stable where H is near singular (sb3-contrib,
    Spinning Up: 0.1; OpenAI baselines: 0.01)"""
    cg_iters: int = 15
    """conjugate-gradient iterations for s = H^-1 g (sb3-contrib: 15; Spinning Up, baselines: 10)"""
    backtrack_coef: float = 0.8
    """line search: the step shrinks by this factor after each rejected try, in (0, 1) (sb3-contrib: 0.8)"""
    backtrack_iters: int = 10
    """line search: tries before the old policy is kept (sb3-contrib: 10)"""
    fvp_subsample: int = 1
    """compute the Fisher-vector products on every k-th sample of the batch only, k times cheaper (Schulman's
    thesis, p. 40: the KL's curvature needs fewer samples than the gradient; sb3-contrib: 1; baselines: 5)"""


# === shared: environment ===
def make_env(env_id: str, env_kwargs: dict, idx: int, capture_video: bool, video_dir: str, record_all: bool = False):
    """A thunk building one sub-env; env 0 records video when asked (headless: MUJOCO_GL=egl)."""

    def thunk():
        if capture_video and idx == 0:
            env = gym.make(env_id, render_mode="rgb_array", **env_kwargs)
            trigger = (lambda episode: True) if record_all else None  # None: gymnasium's cubic schedule
            env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=trigger, disable_logger=True)
        else:
            env = gym.make(env_id, **env_kwargs)
        return env

    return thunk


def make_vec_env(args, run_name: str, num_envs: int, record_all: bool = False) -> gym.vector.VectorEnv:
    """num_envs sub-envs in SAME_STEP autoreset mode.

    Gymnasium 1.x's default, NEXT_STEP, spends the step after an episode's end on the reset (action ignored,
    reward 0): not a transition. SAME_STEP resets inside the step that ends the episode instead, returns the
    new episode's first observation and puts the true final one in infos["final_obs"]. So every step this
    env returns is a real transition and global_step counts transitions exactly.
    Episode statistics arrive as infos["episode"] with the mask infos["_episode"].
    """
    env_kwargs = json.loads(args.env_kwargs)
    video_dir = os.path.join("videos", run_name)
    thunks = [make_env(args.env_id, env_kwargs, i, args.capture_video, video_dir, record_all) for i in range(num_envs)]
    envs = SyncVectorEnv(thunks, autoreset_mode=AutoresetMode.SAME_STEP, copy=False)  # we never write to obs
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


# === end shared: environment ===


# === shared: normalisation ===
class RunningMeanStd:
    """Running mean and variance over a stream of batches (Chan et al.'s parallel update), in float64.
    Written with plain sums: np.mean/np.var cost ~10 us each on rows this small, once per env step."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4  # a tiny prior so that the first batch does not divide by zero

    def update(self, x: np.ndarray) -> None:
        n = x.shape[0]
        batch_mean = x.sum(0) / n
        batch_var = ((x - batch_mean) ** 2).sum(0) / n
        delta, total = batch_mean - self.mean, self.count + n
        self.mean = self.mean + delta * (n / total)
        self.var = (self.var * self.count + batch_var * n + delta**2 * (self.count * n / total)) / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": torch.as_tensor(self.mean), "var": torch.as_tensor(self.var), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"].numpy(), state["var"].numpy(), float(state["count"])


class ObsNormalizer:
    """o' = clip((o - mu) / sqrt(var + eps), -clip, clip). Statistics update in training only; evaluation
    and a loaded checkpoint's evaluation use them frozen. Off: a float32 cast and nothing else."""

    def __init__(self, shape: tuple[int, ...], enabled: bool, clip: float, eps: float = 1e-8):
        self.rms, self.enabled, self.clip, self.eps = RunningMeanStd(shape), enabled, clip, eps

    def __call__(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if not self.enabled:
            return obs.astype(np.float32)
        if update:
            self.rms.update(obs)
        normalised = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.eps)
        return np.clip(normalised, -self.clip, self.clip).astype(np.float32)


class RewardScaler:
    """r' = clip(r / sqrt(Var[G] + eps)), with G_t = gamma * G_{t-1} + r_t the running discounted return.

    Written here rather than gymnasium's NormalizeReward, which resets G only on termination
    (Gymnasium#1507): G is reset at every episode end, truncation included, since the next reward belongs
    to a new episode. No mean is subtracted: shifting rewards would change the optimal policy."""

    def __init__(self, num_envs: int, gamma: float, enabled: bool, clip: float, eps: float = 1e-8):
        self.rms, self.enabled, self.clip, self.eps, self.gamma = RunningMeanStd(), enabled, clip, eps, gamma
        self.returns = np.zeros(num_envs, np.float64)

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return rewards.astype(np.float32)
        self.returns = self.returns * self.gamma + rewards
        self.rms.update(self.returns)
        self.returns[dones] = 0.0
        return np.clip(rewards / np.sqrt(self.rms.var + self.eps), -self.clip, self.clip).astype(np.float32)


# === end shared: normalisation ===


# === shared: mlp ===
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def layer_init(layer: nn.Linear, gain: float, bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights, constant bias (Implementation Matters, Engstrom et al. 2020)."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


class MLP(nn.Module):
    """Linear layers with an activation between them. forward() is a plain loop over F.linear rather than
    nn.Sequential: the same function without nn.Module's per-layer call overhead, a third faster for
    networks this small (the rollout calls it once per environment step)."""

    def __init__(self, in_dim: int, hidden_sizes: tuple[int, ...], out_dim: int, activation: str, hidden_gain: float, out_gain: float):
        super().__init__()
        sizes = (in_dim, *hidden_sizes)
        hidden = [layer_init(nn.Linear(i, o), hidden_gain) for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
        self.layers = nn.ModuleList([*hidden, layer_init(nn.Linear(sizes[-1], out_dim), out_gain)])
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, out = self.layers  # unpacking, not self.layers[:-1], which builds a new ModuleList per call
        for layer in hidden:
            x = self.activation(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, out.weight, out.bias)


# === end shared: mlp ===


# === shared: policy ===
# The log-probabilities and entropies are written out rather than taken from torch.distributions: the same
# numbers (tests/test_ppo.py checks them against torch.distributions) at a fraction of the per-call overhead.
LOG_SQRT_2PI = 0.5 * float(np.log(2 * np.pi))


def gaussian_log_prob(mean: torch.Tensor, logstd: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log N(a | mu, diag(sigma^2)), summed over action dimensions: (B, A) -> (B,)."""
    return (-0.5 * ((action - mean) / logstd.exp()) ** 2 - logstd - LOG_SQRT_2PI).sum(-1)


def gaussian_entropy(logstd: torch.Tensor) -> torch.Tensor:
    """H[N(mu, diag(sigma^2))] = sum_i (1/2 + log sqrt(2 pi) + log sigma_i): (B, A) -> (B,)."""
    return (0.5 + LOG_SQRT_2PI + logstd).sum(-1)


def categorical_log_prob(logits: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[a]: (B, K), (B,) -> (B,)."""
    return torch.log_softmax(logits, -1).gather(-1, action.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H = -sum_k p_k log p_k: (B, K) -> (B,)."""
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


class Agent(nn.Module):
    """Separate policy and value MLPs. Discrete actions: categorical over the policy's logits. Box actions:
    diagonal Gaussian with mean from the policy network and a state-independent, learned log-std."""

    def __init__(self, obs_dim: int, action_dim: int, discrete: bool, args):
        super().__init__()
        self.discrete = discrete
        hidden = (args.hidden_sizes, args.activation, args.hidden_init_gain)
        self.critic = MLP(obs_dim, hidden[0], 1, hidden[1], hidden[2], args.value_init_gain)
        self.actor = MLP(obs_dim, hidden[0], action_dim, hidden[1], hidden[2], args.policy_init_gain)
        if not discrete:
            self.actor_logstd = nn.Parameter(torch.full((1, action_dim), float(args.init_logstd)))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).squeeze(-1)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        """Sample a ~ pi(.|s) (or score the given a): returns a, log pi(a|s), H[pi(.|s)], V(s)."""
        out = self.actor(x)
        if self.discrete:
            if action is None:
                action = torch.multinomial(torch.softmax(out, -1), 1).squeeze(-1)
            return action, categorical_log_prob(out, action), categorical_entropy(out), self.get_value(x)
        logstd = self.actor_logstd.expand_as(out)
        if action is None:
            action = out + logstd.exp() * torch.randn_like(out)
        return action, gaussian_log_prob(out, logstd, action), gaussian_entropy(logstd), self.get_value(x)


class HostPolicy:
    """The policy that acts in the environment: NumPy views of the agent's current weights.

    Acting runs once per environment step on a batch of num_envs observations. At that size torch spends its
    time on per-operation overhead (measured here: ~240 us a step for ~25 small operations, against ~20 us for
    the same arithmetic in NumPy), and a GPU would add a host-device round trip per step. So the rollout acts
    on the host, and its storage stays there until one copy to the device per iteration. Build it after each
    update: on the CPU the arrays share memory with the parameters (nothing is copied); on a GPU they are
    copies. tests/test_ppo.py checks it against Agent.get_action_and_value.
    """

    def __init__(self, agent: Agent):
        def host(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy()

        self.actor = [(host(layer.weight).T, host(layer.bias)) for layer in agent.actor.layers]
        self.critic = [(host(layer.weight).T, host(layer.bias)) for layer in agent.critic.layers]
        self.activation = np.tanh if agent.actor.activation is torch.tanh else (lambda x: np.maximum(x, 0))
        self.discrete = agent.discrete
        if not self.discrete:
            self.logstd = host(agent.actor_logstd)[0]
            self.std = np.exp(self.logstd)

    def mlp(self, layers: list, x: np.ndarray) -> np.ndarray:
        for weight, bias in layers[:-1]:
            x = self.activation(x @ weight + bias)
        return x @ layers[-1][0] + layers[-1][1]

    def value(self, x: np.ndarray) -> np.ndarray:
        """V(s): (N, obs_dim) -> (N,)."""
        return self.mlp(self.critic, x)[:, 0]

    def act(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """a ~ pi(.|s), log pi(a|s), V(s) for a batch (N, obs_dim), with NumPy's global RNG."""
        out = self.mlp(self.actor, x)
        if self.discrete:
            logp = out - out.max(-1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(-1, keepdims=True))  # log softmax
            u = np.random.random_sample((len(x), 1))
            action = np.minimum((np.exp(logp).cumsum(-1) < u).sum(-1), out.shape[-1] - 1)  # inverse-CDF sampling
            return action, np.take_along_axis(logp, action[:, None], -1)[:, 0], self.value(x)
        # a = mu + sigma * eps, eps ~ N(0, I), so log pi(a|s) = sum_i (-eps_i^2 / 2 - log sigma_i - log sqrt(2 pi))
        eps = np.random.standard_normal(out.shape).astype(np.float32)
        action = out + self.std * eps  # unclipped: clipped only at the env
        return action, (-0.5 * eps**2 - self.logstd - LOG_SQRT_2PI).sum(-1), self.value(x)

    def act_deterministic(self, x: np.ndarray) -> np.ndarray:
        """The evaluation action: the mode (argmax) or the mean."""
        out = self.mlp(self.actor, x)
        return out.argmax(-1) if self.discrete else out


# === end shared: policy ===


# ---------------------------------------------------------------------------------------------------
# TRPO math: pure functions of tensors (tests/test_trpo.py checks each against an independent answer)
# ---------------------------------------------------------------------------------------------------
# === shared: gae ===
def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminations: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016, arXiv:1506.02438) over (T, N) tensors.

    next_values[t] is V(s_{t+1}) of the transition's own next state: at a truncation, V of the true final
    observation (bootstrap); at a termination it is ignored. dones = terminations | truncations: the
    recursion never crosses an episode boundary. Returns the advantages A_t and the lambda-returns
    R_t = A_t + V(s_t), the value targets.
    """
    # delta_t = r_t + gamma * V(s_{t+1}) * (1 - term_t) - V(s_t)
    deltas = rewards + gamma * next_values * (1.0 - terminations) - values
    # A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}
    decay = gamma * gae_lambda * (1.0 - dones)
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        last = deltas[t] + decay[t] * last
        advantages[t] = last
    return advantages, advantages + values


# === end shared: gae ===


# === shared: kl ===
# KL(pi_old || pi_theta), always in this direction (the trust region's and the penalty's), in closed form from
# the two distributions' parameters: no sampling noise, and exact second derivatives for TRPO's Fisher product.
def categorical_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_k p_k (log p_k - log q_k): (B, K), (B, K) -> (B,)."""
    logp, logq = torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1)
    return (logp.exp() * (logp - logq)).sum(-1)


def gaussian_kl(mean_p: torch.Tensor, logstd_p: torch.Tensor, mean_q: torch.Tensor, logstd_q: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_p, sigma_p^2) || N(mu_q, sigma_q^2)) for diagonal Gaussians, summed over action dimensions:
    sum_i log(sigma_q / sigma_p) + (sigma_p^2 + (mu_p - mu_q)^2) / (2 sigma_q^2) - 1/2. (B, A) x 4 -> (B,)."""
    var_p, var_q = (2 * logstd_p).exp(), (2 * logstd_q).exp()
    return (logstd_q - logstd_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5).sum(-1)


def dist_params(agent: Agent, x: torch.Tensor) -> torch.Tensor:
    """The parameters of pi(.|s): the logits (B, K), or the mean and the log-std side by side (B, 2A)."""
    out = agent.actor(x)
    return out if agent.discrete else torch.cat([out, agent.actor_logstd.expand_as(out)], -1)


def kl_divergence(old_dist: torch.Tensor, new_dist: torch.Tensor, discrete: bool) -> torch.Tensor:
    """KL(pi_old(.|s) || pi_new(.|s)) per state from dist_params outputs: (B, P), (B, P) -> (B,)."""
    if discrete:
        return categorical_kl(old_dist, new_dist)
    return gaussian_kl(*old_dist.chunk(2, -1), *new_dist.chunk(2, -1))


# === end shared: kl ===


def dist_log_prob(dist: torch.Tensor, actions: torch.Tensor, discrete: bool) -> torch.Tensor:
    """log pi(a|s) from dist_params' output: (B, P), (B[, A]) -> (B,)."""
    return categorical_log_prob(dist, actions) if discrete else gaussian_log_prob(*dist.chunk(2, -1), actions)


def dist_entropy(dist: torch.Tensor, discrete: bool) -> torch.Tensor:
    """H[pi(.|s)] from dist_params' output: (B, P) -> (B,)."""
    return categorical_entropy(dist) if discrete else gaussian_entropy(dist.chunk(2, -1)[1])


def flat_grad(y: torch.Tensor, params: list[torch.Tensor], **kwargs) -> torch.Tensor:
    """d y / d theta for a scalar y, as one flat vector in the order of params."""
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(y, params, **kwargs)])


@torch.no_grad()
def set_flat_params(params: list[torch.Tensor], theta: torch.Tensor) -> None:
    """Write the flat vector theta into params, in place: each parameter keeps its own memory, which the
    HostPolicy's NumPy views share (nn.utils.vector_to_parameters would instead rebind each parameter to a view
    into theta)."""
    for p, value in zip(params, theta.split([p.numel() for p in params]), strict=True):
        p.copy_(value.view_as(p))


def fisher_vector_product(kl_grad: torch.Tensor, params: list[torch.Tensor], v: torch.Tensor, damping: float) -> torch.Tensor:
    """(H + damping I) v, with H the Hessian of the mean KL(pi_old || pi_theta) at theta = theta_old, which is the
    Fisher information matrix there. Double backprop, H never formed: kl_grad = grad_theta KL came from
    autograd.grad(..., create_graph=True), so
        H v = grad_theta (grad_theta KL . v)
    (forgetting create_graph gives a zero product: sb3-contrib#38)."""
    return flat_grad(kl_grad @ v, params, retain_graph=True) + damping * v


def conjugate_gradient(fvp, b: torch.Tensor, iters: int, residual_tol: float = 1e-10) -> torch.Tensor:
    """x = H^-1 b for a symmetric positive definite H known only through fvp(v) = H v, by `iters` iterations of
    conjugate gradient from x = 0 (Nocedal & Wright, Algorithm 5.2); it stops early once |r|^2 < residual_tol
    (sb3-contrib's and modular_rl's 1e-10), where the next step would divide by ~0."""
    x = torch.zeros_like(b)
    r = b.clone()  # r = b - H x
    p = b.clone()  # the search direction, H-conjugate to the previous ones
    rr = r @ r
    for _ in range(iters):
        if rr < residual_tol:  # a host sync per iteration: cg_iters of them per update
            break
        h_p = fvp(p)  # H p
        alpha = rr / (p @ h_p)  # the exact minimiser of 1/2 x^T H x - b^T x along p
        x += alpha * p
        r -= alpha * h_p
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def max_step(step_dir: torch.Tensor, hs: torch.Tensor, max_kl: float) -> torch.Tensor:
    """The step along s to the edge of the trust region under the quadratic model KL ~ 1/2 x^T H x, hs = H s:
    1/2 (a s)^T H (a s) = delta  gives  a = sqrt(2 delta / s^T H s). A zero s (zero gradient) gives a zero step."""
    # step = sqrt(2 delta / (s^T H s)) * s
    return torch.sqrt(2 * max_kl / (step_dir @ hs).clamp_min(1e-30)) * step_dir


def line_search(
    params: list[torch.Tensor],
    evaluate,
    full_step: torch.Tensor,
    surrogate_old: float,
    max_kl: float,
    backtrack_coef: float,
    backtrack_iters: int,
):
    """Backtracking from theta_old + full_step: try theta_old + backtrack_coef^i * full_step for i = 0, 1, ...,
    backtrack_iters - 1 and keep the first whose measured KL(pi_old || pi_theta) is <= max_kl AND whose surrogate
    beats L(theta_old), as the TRPO paper's appendix C does (a slide of the lecture notes checks only the
    improvement: the quadratic model can underestimate the KL, so the bound is checked too). If no try passes,
    theta_old is restored exactly. evaluate() scores the parameters in place and returns (L(theta), KL) as floats.
    Returns (accepted, tries, fraction of full_step taken, L and KL where the parameters are left)."""
    theta_old = nn.utils.parameters_to_vector(params).detach()
    for i in range(backtrack_iters):
        set_flat_params(params, theta_old + backtrack_coef**i * full_step)
        surrogate, kl = evaluate()
        if kl <= max_kl and surrogate > surrogate_old:
            return True, i + 1, backtrack_coef**i, surrogate, kl
    set_flat_params(params, theta_old)
    return False, backtrack_iters, 0.0, surrogate_old, 0.0


def trpo_update(agent: Agent, policy_params: list[torch.Tensor], b_obs, b_actions, b_logprobs, b_advantages, hp: dict) -> dict:
    """One TRPO step of the policy on the whole batch, in place; the critic is not touched. Returns diagnostics
    as floats, measured where the parameters are left."""
    discrete = agent.discrete
    with torch.no_grad():
        old_dist = dist_params(agent, b_obs)  # pi_old's parameters, (B, P): fixed for the whole step

    def surrogate(new_dist: torch.Tensor) -> torch.Tensor:
        # L(theta) = E[exp(log pi_theta(a|s) - log pi_old(a|s)) A]
        return ((dist_log_prob(new_dist, b_actions, discrete) - b_logprobs).exp() * b_advantages).mean()

    # g = grad_theta L(theta) at theta_old
    surrogate_at_old = surrogate(dist_params(agent, b_obs))
    g = flat_grad(surrogate_at_old, policy_params)
    # grad_theta KL at theta_old (0 there), kept differentiable so that a second backward gives H v
    sub = slice(None, None, hp["fvp_subsample"])
    kl = kl_divergence(old_dist[sub], dist_params(agent, b_obs[sub]), discrete).mean()
    kl_grad = flat_grad(kl, policy_params, create_graph=True)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        return fisher_vector_product(kl_grad, policy_params, v, hp["damping"])

    # s = H^-1 g: the natural-gradient direction, by conjugate gradient
    step_dir = conjugate_gradient(fvp, g, hp["cg_iters"])
    full_step = max_step(step_dir, fvp(step_dir), hp["max_kl"])

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            new_dist = dist_params(agent, b_obs)
            # .item(): the line search decides on the host, two syncs per try
            return surrogate(new_dist).item(), kl_divergence(old_dist, new_dist, discrete).mean().item()

    surrogate_old = surrogate_at_old.item()
    accepted, tries, fraction, surrogate_new, kl_new = line_search(
        policy_params, evaluate, full_step, surrogate_old, hp["max_kl"], hp["backtrack_coef"], hp["backtrack_iters"]
    )
    with torch.no_grad():
        new_dist = dist_params(agent, b_obs)
        logratio = dist_log_prob(new_dist, b_actions, discrete) - b_logprobs
        # KL(pi_old || pi) estimated by E[(r - 1) - log r] (Schulman's k3), the quantity ppo.py logs
        approx_kl = ((logratio.exp() - 1) - logratio).mean().item()
        entropy = dist_entropy(new_dist, discrete).mean().item()
    return {
        "policy_loss": -surrogate_new,
        "entropy": entropy,
        "approx_kl": approx_kl,
        "kl": kl_new,
        "surrogate_improvement": surrogate_new - surrogate_old,
        # g^T (step taken): the improvement the linear model of L promised for it
        "expected_improvement": fraction * (g @ full_step).item(),
        "line_search_steps": tries,
        "line_search_success": float(accepted),
    }


def value_loss(agent: Agent, mb_obs: torch.Tensor, mb_returns: torch.Tensor) -> torch.Tensor:
    """L^VF = 1/2 E[(V(s) - R)^2], the critic's regression on the lambda-returns (sb3-contrib drops the 1/2:
    the same Adam steps, up to Adam's eps)."""
    return 0.5 * ((agent.get_value(mb_obs) - mb_returns) ** 2).mean()


# === shared: metrics ===
def explained_variance(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """1 - Var[y - y_hat] / Var[y]: 1 is a perfect value function, 0 no better than a constant."""
    var_y = y_true.var()
    return float("nan") if var_y == 0 else float(1 - (y_true - y_pred).var() / var_y)


# === end shared: metrics ===


def validate_args(args: Args) -> None:
    """Bad input fails here, before any env is built or a step is taken."""
    # === shared: validate-common ===
    for flag in ("total_timesteps", "num_envs", "torch_threads"):
        if getattr(args, flag) < 1:
            fail(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.eval_episodes < 0 or args.save_every < 0:
        fail("--eval-episodes and --save-every must be non-negative")
    if not args.learning_rate > 0:
        fail(f"--learning-rate must be positive, got {args.learning_rate}")
    if not 0 < args.gamma <= 1:
        fail(f"--gamma must be in (0, 1], got {args.gamma}")
    if args.activation not in ACTIVATIONS:
        fail(f"--activation must be one of {sorted(ACTIVATIONS)}, got {args.activation!r}")
    # === end shared: validate-common ===
    # === shared: validate-on-policy ===
    if not 0 <= args.gae_lambda <= 1:
        fail(f"--gae-lambda must be in [0, 1], got {args.gae_lambda}")
    if args.num_steps < 1:
        fail(f"--num-steps must be at least 1, got {args.num_steps}")
    batch_size = args.num_envs * args.num_steps
    if args.total_timesteps < batch_size and not args.eval_checkpoint:
        fail(f"--total-timesteps {args.total_timesteps} is smaller than one batch (num_envs * num_steps = {batch_size})")
    # === end shared: validate-on-policy ===
    # === shared: validate-minibatches ===
    if args.num_minibatches < 1 or batch_size % args.num_minibatches:
        fail(f"--num-minibatches {args.num_minibatches} does not divide the batch (num_envs * num_steps = {batch_size})")
    if args.update_epochs < 1:
        fail(f"--update-epochs must be at least 1, got {args.update_epochs}")
    # === end shared: validate-minibatches ===
    if not args.max_kl > 0:
        fail(f"--max-kl must be positive, got {args.max_kl}")
    if args.damping < 0:
        fail(f"--damping must be non-negative, got {args.damping}")
    if not 0 < args.backtrack_coef < 1:
        fail(f"--backtrack-coef must be in (0, 1), got {args.backtrack_coef}")
    for flag in ("cg_iters", "backtrack_iters", "fvp_subsample"):
        if getattr(args, flag) < 1:
            fail(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")


def main(args: Args) -> dict:
    """Train (or, with --eval-checkpoint, only evaluate). Returns a summary for tests and the benchmark."""
    validate_args(args)
    ckpt_path = args.resume or args.eval_checkpoint
    ckpt = load_checkpoint(ckpt_path) if ckpt_path else None
    if ckpt is not None:
        check_checkpoint_env(ckpt, args, ckpt_path)

    # === shared: setup ===
    torch.set_num_threads(args.torch_threads)
    seed_everything(args.seed, args.torch_deterministic)
    device = select_device(args.cuda)
    run_name = ckpt["run_name"] if ckpt else new_run_name(args)
    run_dir = os.path.join("runs", run_name)
    envs = build_envs(args, run_name, args.num_envs)
    discrete = check_spaces(envs)
    obs_dim = envs.single_observation_space.shape[0]
    action_dim = envs.single_action_space.n if discrete else envs.single_action_space.shape[0]
    norm_obs = (not discrete) if args.norm_obs is None else args.norm_obs
    norm_reward = (not discrete) if args.norm_reward is None else args.norm_reward
    print(f"{SCRIPT} on {args.env_id}: {'Discrete' if discrete else 'Box'} actions, norm_obs={norm_obs}, norm_reward={norm_reward}")
    print(f"run dir: {run_dir}")
    obs_norm = ObsNormalizer((obs_dim,), norm_obs, args.clip_obs)
    reward_scaler = RewardScaler(args.num_envs, args.gamma, norm_reward, args.clip_reward)
    # === end shared: setup ===

    agent = Agent(obs_dim, action_dim, discrete, args).to(device)
    policy_params = [p for name, p in agent.named_parameters() if not name.startswith("critic.")]  # theta
    # The critic's optimiser holds the critic's parameters only: its steps cannot move the policy.
    # fused=True: one kernel for the whole parameter update, about 4x faster than the default for nets this small
    optimizer = torch.optim.Adam(agent.critic.parameters(), lr=args.learning_rate, eps=args.adam_eps, fused=True)
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches
    num_iterations = args.total_timesteps // batch_size
    global_step, start_iteration = 0, 1

    # === shared: restore ===
    if ckpt is not None:
        agent.load_state_dict(ckpt["agent"])
        obs_norm.rms.load_state_dict(ckpt["obs_rms"])
        reward_scaler.rms.load_state_dict(ckpt["return_rms"])
    if args.eval_checkpoint:
        returns = evaluate(agent, args, obs_norm, run_name, args.eval_episodes)
        print(
            f"evaluation of {args.eval_checkpoint}: mean return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {len(returns)} episodes"
        )
        envs.close()
        return {"eval_returns": returns}
    if args.resume:
        optimizer.load_state_dict(ckpt["optimizer"])
        global_step, start_iteration = ckpt["global_step"], ckpt["iteration"] + 1
        set_rng_state(ckpt["rng"])
        print(f"resumed {run_name} at step {global_step}")
    # === end shared: restore ===

    def checkpoint(iteration: int) -> str:
        logger.file.flush()  # the metrics up to the checkpoint survive a hard kill, for --resume
        path = os.path.join(run_dir, f"{SCRIPT[:-3]}.pt")
        state = {
            "script": SCRIPT,
            "run_name": run_name,
            "args": asdict(args),
            "global_step": global_step,
            "iteration": iteration,
            "agent": agent.state_dict(),
            "optimizer": optimizer.state_dict(),
            "obs_rms": obs_norm.rms.state_dict(),
            "return_rms": reward_scaler.rms.state_dict(),
            "rng": rng_state(),
        }
        save_checkpoint(path, state)
        return path

    # === shared: rollout-storage ===
    # Rollout storage, allocated once on the host, where the environment and the HostPolicy act; one copy to
    # the device per iteration, for the update.
    T, N = args.num_steps, args.num_envs
    obs = np.zeros((T, N, obs_dim), np.float32)  # (T, N, obs_dim), normalised
    actions = np.zeros((T, N) + envs.single_action_space.shape, envs.single_action_space.dtype)  # unclipped
    logprobs = np.zeros((T, N), np.float32)  # log pi_old(a_t|s_t)
    values = np.zeros((T, N), np.float32)  # V(s_t)
    final_values = np.zeros((T, N), np.float32)  # V(true final obs) where an episode was truncated
    rewards = np.zeros((T, N), np.float32)  # scaled rewards
    terminations = np.zeros((T, N), np.float32)
    dones = np.zeros((T, N), np.float32)  # terminated or truncated
    # === end shared: rollout-storage ===
    hp = {k: getattr(args, k) for k in ("max_kl", "damping", "cg_iters", "backtrack_coef", "backtrack_iters", "fvp_subsample")}
    logger = Logger(args, run_name, run_dir, global_step)
    loss_fn = maybe_compile(value_loss, args.compile, logger)
    # === shared: rollout ===
    if isinstance(envs.single_action_space, gym.spaces.Box):
        action_low, action_high = envs.single_action_space.low, envs.single_action_space.high

    envs.action_space.seed(args.seed + global_step)
    raw_obs, _ = envs.reset(seed=args.seed + global_step)
    next_obs = obs_norm(raw_obs, update=True)
    save_every_next = global_step + args.save_every if args.save_every else None
    for iteration in range(start_iteration, num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate
        policy = HostPolicy(agent)  # pi_old, acting on the host

        # 1) Rollout: num_steps x num_envs transitions with pi_old
        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            actions[step], logprobs[step], values[step] = policy.act(next_obs)
            env_action = np.clip(actions[step], action_low, action_high) if not discrete else actions[step]
            raw_obs, reward, terminated, truncated, infos = envs.step(env_action)
            done = terminated | truncated
            rewards[step], terminations[step], dones[step] = reward_scaler(reward, done), terminated, done
            next_obs = obs_norm(raw_obs, update=True)
            # Truncation is not termination: bootstrap from V(true final observation). SAME_STEP autoreset has
            # already reset that sub-env; its final observation is in infos["final_obs"].
            final_values[step] = 0.0
            truncated_only = truncated & ~terminated
            if truncated_only.any():
                idx = np.nonzero(truncated_only)[0]
                final_values[step, idx] = policy.value(obs_norm(np.stack(infos["final_obs"][idx])))
            logger.log_episodes(global_step, infos)

        # 2) Advantages: next_values[t] = V(s_{t+1}) of each transition's own next state
        next_values = np.concatenate([values[1:], policy.value(next_obs)[None]])
        next_values = np.where(dones.astype(bool), final_values, next_values)  # V(final obs) at truncations
        b_rewards, b_values, b_next_values, b_terminations, b_dones = (
            torch.as_tensor(x, device=device) for x in (rewards, values, next_values, terminations, dones)
        )
        advantages, returns = compute_gae(b_rewards, b_values, b_next_values, b_terminations, b_dones, args.gamma, args.gae_lambda)
        # === end shared: rollout ===

        # 3) Policy: one trust-region step on the whole flattened batch
        b_obs = torch.as_tensor(obs, device=device).reshape(batch_size, obs_dim)  # (T * N, obs_dim)
        b_actions = torch.as_tensor(actions, device=device).reshape((batch_size,) + envs.single_action_space.shape)
        b_logprobs = torch.as_tensor(logprobs, device=device).reshape(-1)
        b_advantages, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), b_values.reshape(-1)
        if args.norm_adv:  # over the whole batch, which the one policy step uses at once
            b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)
        policy_stats = trpo_update(agent, policy_params, b_obs, b_actions, b_logprobs, b_advantages, hp)

        # 4) Critic: update_epochs passes of minibatch regression of V on the lambda-returns
        v_losses = []
        for _epoch in range(args.update_epochs):
            b_inds = torch.randperm(batch_size, device=device)
            for start in range(0, batch_size, minibatch_size):
                mb = b_inds[start : start + minibatch_size]
                v_loss = loss_fn(agent, b_obs[mb], b_returns[mb])
                optimizer.zero_grad(set_to_none=True)
                v_loss.backward()
                optimizer.step()
                v_losses.append(v_loss.detach())

        # 5) Log, checkpoint
        logger.log(
            global_step,
            {
                "charts/learning_rate": optimizer.param_groups[0]["lr"],
                "losses/value_loss": torch.stack(v_losses).mean().item(),
                **{f"losses/{k}": v for k, v in policy_stats.items()},
                "losses/explained_variance": explained_variance(b_values, b_returns),
                "charts/SPS": logger.sps(global_step),
            },
        )
        logger.progress(global_step, args.total_timesteps, force=iteration == num_iterations)
        if save_every_next is not None and global_step >= save_every_next:
            checkpoint(iteration)
            save_every_next += args.save_every

    # === shared: finish ===
    summary = {"global_step": global_step, "run_dir": run_dir, "episodic_returns": logger.returns, "sps": logger.sps(global_step)}
    if args.save_model:
        summary["checkpoint"] = checkpoint(num_iterations)
        print(f"saved {summary['checkpoint']}")
    envs.close()
    if args.eval_episodes:
        eval_returns = evaluate(agent, args, obs_norm, run_name, args.eval_episodes)
        logger.log(global_step, {"eval/episodic_return": np.mean(eval_returns)})
        print(f"evaluation: mean return {np.mean(eval_returns):.2f} +- {np.std(eval_returns):.2f} over {len(eval_returns)} episodes")
        summary["eval_returns"] = eval_returns
    logger.close()
    return summary
    # === end shared: finish ===


# ---------------------------------------------------------------------------------------------------
# Plumbing: command line, errors, seeding, device, checkpoints, logging, evaluation. The same in every
# script of the collection; nothing here is TRPO.
# ---------------------------------------------------------------------------------------------------
# === shared: plumbing ===
SCRIPT = os.path.basename(__file__)


def fail(message: str):
    """Bad input: one line on stderr naming the flag, exit status 1, no traceback."""
    raise SystemExit(f"{SCRIPT}: error: {message}")


def cli(args_type):
    """Parse the command line. Booleans also take W&B Sweeps' `--flag=True/False` form. With --resume or
    --eval-checkpoint, the checkpoint's own args become the defaults, so `--eval-checkpoint PATH` alone
    evaluates on the env it was trained on; flags given still override them."""
    bools = {f.name.replace("_", "-") for f in fields(args_type) if f.type in (bool, "bool")}
    argv = []
    for token in sys.argv[1:]:
        name, _, value = token.partition("=")
        if name.startswith("--") and name[2:] in bools and value.lower() in ("true", "false"):
            token = name if value.lower() == "true" else f"--no-{name[2:]}"
        argv.append(token)
    args = tyro.cli(args_type, args=argv)
    path = args.resume or args.eval_checkpoint
    if path:
        saved = load_checkpoint(path)["args"]
        defaults = args_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
        args = tyro.cli(args_type, args=argv, default=replace(defaults, resume=None, eval_checkpoint=None))
    return args


def new_run_name(args) -> str:
    """<env>__<exp_name>__<seed>__<unix time>, its folder under runs/ created here: atomically, so that two
    runs started in the same second (by two processes, say) never share one; the second gets a suffix."""
    base = f"{args.env_id.replace(':', '-').replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    name, n = base, 1
    while True:
        try:
            os.makedirs(os.path.join("runs", name))
            return name
        except FileExistsError:
            n += 1
            name = f"{base}-{n}"


def seed_everything(seed: int, torch_deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = torch_deterministic


def select_device(use_cuda: bool) -> torch.device:
    device = torch.device("cuda" if use_cuda and torch.cuda.is_available() else "cpu")
    print(f"device: {device}" + (" (--cuda given, but no GPU is present)" if use_cuda and device.type == "cpu" else ""))
    return device


def check_spaces(envs: gym.vector.VectorEnv) -> bool:
    """Flat Box observations; Discrete or flat Box actions. Returns whether the actions are discrete."""
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1):
        fail(
            f"--env-id: observation space {obs_space} is not supported; wrap the env so that it returns a flat Box (gymnasium.wrappers.FlattenObservation)"
        )
    if isinstance(act_space, gym.spaces.Discrete):
        return True
    if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        return False
    fail(f"--env-id: action space {act_space} is not supported (Discrete or a flat Box)")


def build_envs(args, run_name: str, num_envs: int, record_all: bool = False) -> gym.vector.VectorEnv:
    try:
        json.loads(args.env_kwargs)
    except json.JSONDecodeError as e:
        fail(f"--env-kwargs {args.env_kwargs!r} is not valid JSON ({e})")
    try:
        return make_vec_env(args, run_name, num_envs, record_all)
    except Exception as e:  # an unknown id, a module that does not import, a wrong keyword argument
        fail(f"--env-id {args.env_id!r} could not be made: {type(e).__name__}: {e}".splitlines()[0])


def load_checkpoint(path: str) -> dict:
    """A checkpoint of this script, loaded with weights_only=True (tensors and plain containers only)."""
    if not os.path.isfile(path):
        fail(f"checkpoint {path!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        fail(f"checkpoint {path!r} could not be read ({type(e).__name__}); is it a file this script saved?")
    if not isinstance(ckpt, dict) or ckpt.get("script") != SCRIPT:
        made_by = ckpt.get("script") if isinstance(ckpt, dict) else None
        fail(f"checkpoint {path!r} was made by {made_by or 'something else'}, not {SCRIPT}")
    return ckpt


def check_checkpoint_env(ckpt: dict, args, path: str) -> None:
    for key in ("env_id", "env_kwargs"):
        if ckpt["args"][key] != getattr(args, key):
            fail(f"checkpoint {path!r} was made for --{key.replace('_', '-')} {ckpt['args'][key]}, not {getattr(args, key)}")


def save_checkpoint(path: str, state: dict) -> None:
    """Atomic: write a temporary file, then rename over the old one; an interrupted save leaves the last
    checkpoint intact."""
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"]))
    torch.set_rng_state(state["torch"])


class Logger:
    """Every value goes to runs/<run>/metrics.jsonl ({"global_step": .., name: value} a line) and, with
    --track, to W&B with global_step as the x-axis. A progress line reaches stdout every progress_every s."""

    def __init__(self, args, run_name: str, run_dir: str, start_step: int):
        self.args, self.run_name, self.run_dir = args, run_name, run_dir
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "args.json"), "w") as f:
            json.dump(asdict(args), f, indent=2)
        self.file = open(os.path.join(run_dir, "metrics.jsonl"), "a")
        self.returns: list[float] = []
        self.start_time, self.start_step, self.excluded_time, self.last_print = time.time(), start_step, 0.0, 0.0
        self.videos_logged: set[str] = set()
        self.wandb = None
        if args.track:
            import wandb

            self.wandb = wandb.init(
                project=args.wandb_project_name,
                entity=args.wandb_entity,
                name=run_name,
                config=asdict(args),
                save_code=True,
                dir=run_dir,
            )
            self.wandb.define_metric("global_step")
            self.wandb.define_metric("*", step_metric="global_step")

    def log(self, global_step: int, metrics: dict) -> None:
        record = {"global_step": global_step, **{k: float(v) for k, v in metrics.items()}}
        self.file.write(json.dumps(record) + "\n")
        if self.wandb is not None:  # one call per record: two episodes ending on the same step both stay
            self.wandb.log(record)

    def log_episodes(self, global_step: int, infos: dict) -> None:
        """Episode statistics from gymnasium's vector RecordEpisodeStatistics: infos["episode"] + "_episode"."""
        if "_episode" in infos:
            for i in np.nonzero(infos["_episode"])[0]:
                ret, length = float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])
                self.returns.append(ret)
                self.log(global_step, {"charts/episodic_return": ret, "charts/episodic_length": length})

    def sps(self, global_step: int) -> int:
        """Transitions per wall second in this process, updates included, compile time excluded."""
        return int((global_step - self.start_step) / max(time.time() - self.start_time - self.excluded_time, 1e-9))

    def progress(self, global_step: int, total: int, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last_print < self.args.progress_every:
            return
        self.last_print = now
        sps = self.sps(global_step)
        recent = f"{np.mean(self.returns[-100:]):.1f}" if self.returns else "n/a"
        left = max(total - global_step, 0) / max(sps, 1)
        print(
            f"step {global_step}/{total} ({100 * global_step / total:.0f}%) | {sps} SPS | "
            f"return (last 100 episodes) {recent} | left {int(left // 60)}m{int(left % 60):02d}s",
            flush=True,
        )
        self.file.flush()
        self.upload_videos()

    def upload_videos(self) -> None:
        video_dir = os.path.join("videos", self.run_name)
        if self.wandb is None or not os.path.isdir(video_dir):
            return
        for name in sorted(os.listdir(video_dir)):
            if name.endswith(".mp4") and name not in self.videos_logged:
                self.videos_logged.add(name)
                self.wandb.log({"videos/episode": self.wandb_video(os.path.join(video_dir, name))})

    def wandb_video(self, path: str):
        import wandb

        return wandb.Video(path, format="mp4")  # gymnasium 1.x breaks wandb's monitor_gym (wandb#11193)

    def close(self) -> None:
        self.upload_videos()
        self.file.close()
        if self.wandb is not None:
            import wandb

            self.wandb.finish()
            wandb.teardown()  # stop W&B's service: the run's records are on disk when close() returns


def evaluate(agent, args, obs_norm, run_name: str, episodes: int) -> list[float]:
    """Episodic returns of the deterministic policy (mean action, argmax for Discrete), observation
    statistics frozen, on a fresh env seeded apart from the training envs. Every script defines the
    HostPolicy it acts with (act_deterministic) and an obs_norm callable returning float32 arrays."""
    envs = build_envs(replace(args, num_envs=1), run_name + "-eval", 1, record_all=True)
    policy = HostPolicy(agent)
    obs, _ = envs.reset(seed=args.seed + 10_000)
    returns: list[float] = []
    while len(returns) < episodes:
        action = policy.act_deterministic(obs_norm(obs))
        if isinstance(envs.single_action_space, gym.spaces.Box):
            action = np.clip(action, envs.single_action_space.low, envs.single_action_space.high)
        obs, _, _, _, infos = envs.step(action)
        if "_episode" in infos and infos["_episode"][0]:
            returns.append(float(infos["episode"]["r"][0]))
    envs.close()
    return returns


# === end shared: plumbing ===


# === shared: compile ===
def maybe_compile(fn, enabled: bool, logger: "Logger | None" = None):
    """torch.compile(fn) if enabled; on the first failure, warn and fall back to eager. The first call's
    time (compilation) is excluded from charts/SPS."""
    if not enabled:
        return fn
    compiled, first = torch.compile(fn), [True]

    def call(*a, **kw):
        nonlocal compiled
        start = time.time()
        try:
            return compiled(*a, **kw)
        except Exception as e:
            if compiled is fn:
                raise
            print(f"warning: torch.compile failed ({type(e).__name__}); running eager", file=sys.stderr)
            compiled = fn
            return fn(*a, **kw)
        finally:
            if first[0] and logger is not None:
                logger.excluded_time += time.time() - start
            first[0] = False

    return call


# === end shared: compile ===


if __name__ == "__main__":
    main(cli(Args))
