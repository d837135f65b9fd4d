"""A2C: Advantage Actor-Critic (Mnih et al., 2016, arXiv:1602.01783), A3C's actors made synchronous as in the OpenAI baselines.

Each iteration:
  1) collect num_steps x num_envs transitions with the current policy (short rollouts from many envs)
  2) GAE(gamma, lambda) advantages A_t and returns R_t = A_t + V(s_t), bootstrapping from V(true final observation)
     at a time-limit truncation; only a termination cuts the return. lambda = 1 is the paper's n-step return,
     lambda = 0 the one-step TD advantage; V in the targets is frozen (no gradient)
  3) one gradient step on the whole batch: L = -1/B sum log pi(a|s) A + c_v 1/B sum (V(s) - R)^2 - c_e H,
     global gradient clipping, PyTorch's RMSprop (or TensorFlow's, or Adam)
  4) log, checkpoint; after the last iteration, evaluate the mean action with frozen normalisation

Part one is A2C (the tests check its math against independent answers); below the `# ==== infrastructure` divider
is the machinery every script shares, its `# === shared: NAME ===` blocks byte-identical (tests/test_drift.py).

Run:  python a2c.py --env-id Hopper-v5
"""

# === shared: imports ===
import importlib
import json
import os
import random
import signal
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
    num_envs: int = 16  # N: parallel sub-environments (SyncVectorEnv), the synchronous stand-in for A3C's actor threads (Tianshou's MuJoCo A2C: 16; SB3's default 1 reaches less on Hopper)
    num_steps: int = 5  # T: steps per sub-env per rollout; the batch is num_envs * num_steps (Mnih et al.'s t_max = 5; SB3: 5; Tianshou's MuJoCo A2C: 80 steps over 16 envs, i.e. 5)
    learning_rate: float = 7e-4  # step size (Mnih et al. via the OpenAI baselines, SB3 and Tianshou: 7e-4)
    anneal_lr: bool = True  # decay the learning rate linearly to 0 over the run (baselines' lrschedule "linear"; Tianshou's lr_decay; SB3 keeps it constant)
    gamma: float = 0.99  # gamma: discount factor, in (0, 1]
    gae_lambda: float = 0.95  # lambda of GAE, in [0, 1]: 1 is the paper's n-step return (SB3's default), 0 the one-step TD advantage; 0.95 as Tianshou, which found it better than 1 on MuJoCo
    return_scaling: bool = False  # the critic learns R_t / sigma_R, sigma_R a running std of the lambda-returns, rewards left raw: --norm-reward None is off (Tianshou's MuJoCo A2C: on)
    norm_adv: bool = False  # normalise advantages over the batch to mean 0, std 1 (off in the paper, baselines, SB3 and Tianshou)
    ent_coef: float = 0.003  # c_e: entropy bonus coefficient (Mnih et al., baselines, Tianshou: 0.01; SB3: 0; 0.003: benchmark/README)
    vf_coef: float = 0.5  # c_v: value-loss coefficient (baselines, SB3 and Tianshou: 0.5)
    max_grad_norm: float = 0.5  # global gradient-norm clipping threshold (baselines, SB3 and Tianshou: 0.5)
    optimizer: str = "torch-rmsprop"  # torch-rmsprop (PyTorch's: Tianshou, SB3), rmsprop (TensorFlow's: the baselines) or adam
    rmsprop_alpha: float = 0.99  # alpha: decay of RMSprop's running mean of squared gradients (baselines and SB3: 0.99)
    rmsprop_eps: float = 1e-5  # epsilon of RMSprop (baselines, SB3, Tianshou: 1e-5): outside the root in PyTorch's, inside in TensorFlow's
    adam_eps: float = 1e-5  # Adam epsilon, with --optimizer adam (1e-5 as in the OpenAI baselines, not PyTorch's 1e-8)
    init_logstd: float = -0.5  # initial log-std of the Gaussian policy (state-independent), std 0.61 (Tianshou's MuJoCo A2C)
    # === shared: args-on-policy ===
    hidden_sizes: tuple[int, ...] = (64, 64)  # widths of the hidden layers of the policy and of the value network (separate networks)
    activation: str = "tanh"  # hidden activation: tanh (the PPO paper's MuJoCo choice) or relu
    hidden_init_gain: float = 2**0.5  # orthogonal-init gain of the hidden layers (sqrt 2; Implementation Matters)
    policy_init_gain: float = 0.01  # orthogonal-init gain of the policy head: a near-uniform initial policy
    value_init_gain: float = 1.0  # orthogonal-init gain of the value head
    norm_obs: bool | None = None  # normalise observations by a running mean/std (--[no-]norm-obs); None: on for Box, off for Discrete
    norm_reward: bool | None = None  # scale rewards by the std of the discounted return (--[no-]norm-reward); None: as --norm-obs
    clip_obs: float = 10.0  # clip normalised observations to [-clip_obs, clip_obs]
    clip_reward: float = 10.0  # clip scaled rewards to [-clip_reward, clip_reward]
    # === end shared: args-on-policy ===
    compile: bool = False  # torch.compile the loss (eager if compilation fails); compile time is excluded from charts/SPS
    # === shared: args-common ===
    env_id: str = "Hopper-v5"  # gymnasium id, or `module:EnvName-v0` to import a module that registers it
    env_kwargs: str = "{}"  # keyword arguments for gym.make, as JSON, e.g. '{"max_episode_steps": 500}'
    total_timesteps: int = 1_000_000  # budget in environment transitions, summed over the sub-envs
    seed: int = 1  # seeds Python, NumPy, torch, the env resets and the action space
    torch_deterministic: bool = True  # torch.backends.cudnn.deterministic; on the CPU the same seed gives the same numbers anyway
    cuda: bool = False  # use the GPU if there is one (else the CPU); off by default: small networks run faster on the CPU
    torch_threads: int = 1  # torch CPU threads; 1 is fastest for small networks and for several runs side by side
    exp_name: str = os.path.basename(__file__)[: -len(".py")]  # part of the run name runs/<env>__<exp_name>__<seed>__<time>
    track: bool = False  # log to Weights & Biases (WANDB_MODE=offline needs no account; `wandb sync` later); --resume continues the run
    wandb_project_name: str = "policy-gradients"  # the W&B project
    wandb_entity: str | None = None  # the W&B entity (team or user); None uses your default
    capture_video: bool = False  # mp4s of env 0's episodes in videos/<run>, of each evaluation's in videos/<run>-eval[-N]; logged to W&B
    save_model: bool = False  # write runs/<run>/<script>.pt at the end of training
    save_every: int = 0  # also write that checkpoint every this many environment steps (0: never)
    resume: str | None = None  # resume this checkpoint's run (its args the defaults, flags override; lr annealing: to 0 at a new budget)
    eval_checkpoint: str | None = None  # evaluate this checkpoint (no training), with its normalisation statistics frozen
    eval_episodes: int = 10  # episodes of the deterministic (mean-action) evaluation after training; 0 skips it
    eval_every: int = 0  # also evaluate every this many steps during training (eval/episodic_return; own env and RNG); 0: never
    progress_every: float = 10.0  # seconds between two progress lines on stdout
    # === end shared: args-common ===


# === shared: policy ===
# Written out rather than torch.distributions: the same numbers (the tests check) at a fraction of the overhead.
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
    """Separate policy and value MLPs: a categorical over the logits (Discrete), or a diagonal Gaussian with a learned,
    state-independent log-std (Box). The update uses it; the rollout acts with HostPolicy, its NumPy twin (part two)."""

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


# === end shared: policy ===


# === shared: gae ===
def compute_gae(rewards, values, next_values, terminations, dones, gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016, arXiv:1506.02438) over (T, N) tensors. next_values[t]
    is V(s_{t+1}) of the transition's own next state: at a truncation V(true final observation), the bootstrap; at a
    termination it is ignored. dones = terminations | truncations: the recursion never crosses an episode boundary.
    Returns the advantages A_t and the lambda-returns R_t = A_t + V(s_t), the value targets."""
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


def a2c_loss(agent: Agent, obs, actions, advantages, returns, *, norm_adv: bool, ent_coef: float, vf_coef: float):
    """L = -1/B sum_t log pi(a_t|s_t) A_t + c_v 1/B sum_t (V(s_t) - R_t)^2 - c_e 1/B sum_t H[pi(.|s_t)] on the whole
    batch, A_t and R_t from values taken without gradient (the notes' frozen TD target). Returns it and diagnostics."""
    _, newlogprob, entropy, newvalue = agent.get_action_and_value(obs, actions)
    if norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg_loss = -(advantages * newlogprob).mean()
    v_loss = ((newvalue - returns) ** 2).mean()  # no 1/2: the paper's, baselines' and SB3's form
    entropy_loss = entropy.mean()
    loss = pg_loss - ent_coef * entropy_loss + vf_coef * v_loss
    stats = {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": entropy_loss}
    return loss, {k: v.detach() for k, v in stats.items()}


@torch.no_grad()
def approx_kl(agent: Agent, obs, actions, logprobs) -> torch.Tensor:
    """How far the step moved the policy: KL(pi_old || pi) by E[(r - 1) - log r], r = pi / pi_old (Schulman's k3)."""
    logratio = agent.get_action_and_value(obs, actions)[1] - logprobs
    return ((logratio.exp() - 1) - logratio).mean()


class RMSpropTF(torch.optim.Optimizer):
    """RMSprop as TensorFlow 1 defines it (tf.train.RMSPropOptimizer, which A2C was tuned with):
        v <- alpha v + (1 - alpha) g^2,     v starts at 1
        theta <- theta - lr g / sqrt(v + eps)
    PyTorch's differs twice: v starts at 0, so its first step is lr g / (sqrt(1 - alpha) |g|), 10 lr in every coordinate
    (here about lr g, growing into the adaptive step in about 1 / (1 - alpha) = 100 steps); and eps sits outside the
    root, a step of lr g / eps where v is tiny (SB3 PR #110: unstable). At this script's defaults PyTorch's learns more."""

    def __init__(self, params, lr: float, alpha: float = 0.99, eps: float = 1e-5):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps))

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in [p for p in group["params"] if p.grad is not None]:
                if not self.state[p]:
                    self.state[p]["square_avg"] = torch.ones_like(p)  # TensorFlow's start; PyTorch's is zeros
                v, g = self.state[p]["square_avg"], p.grad
                # v <- alpha v + (1 - alpha) g^2
                v.mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])
                # theta <- theta - lr g / sqrt(v + eps)
                p.addcdiv_(g, (v + group["eps"]).sqrt(), value=-group["lr"])


def validate_args(args: Args) -> None:
    """Bad input fails here, before any env is built or a step is taken (the checks are in part two)."""
    validate_common(args)
    validate_on_policy(args)
    args.norm_reward = False if args.return_scaling and args.norm_reward is None else args.norm_reward  # --return-scaling: raw r
    if args.optimizer not in ("rmsprop", "torch-rmsprop", "adam"):
        fail(f"--optimizer must be one of ['rmsprop', 'torch-rmsprop', 'adam'], got {args.optimizer!r}")
    if not 0 <= args.rmsprop_alpha < 1:
        fail(f"--rmsprop-alpha must be in [0, 1), got {args.rmsprop_alpha}")


# === shared: rollout ===
class Rollout:
    """One rollout's storage, (T, N, ...) arrays allocated once on the host, where the envs and HostPolicy act."""

    def __init__(self, num_steps: int, num_envs: int, obs_dim: int, action_space: gym.Space):
        T, N = num_steps, num_envs
        self.obs = np.zeros((T, N, obs_dim), np.float32)  # (T, N, obs_dim), normalised
        self.actions = np.zeros((T, N) + action_space.shape, action_space.dtype)  # unclipped
        self.logprobs = np.zeros((T, N), np.float32)  # log pi_old(a_t|s_t)
        self.values = np.zeros((T, N), np.float32)  # V(s_t)
        self.final_values = np.zeros((T, N), np.float32)  # V(true final obs) where an episode was truncated
        self.rewards = np.zeros((T, N), np.float32)  # scaled rewards
        self.terminations = np.zeros((T, N), np.float32)
        self.dones = np.zeros((T, N), np.float32)  # terminated or truncated

    def collect(self, envs, policy, next_obs, obs_norm, reward_scaler, run, global_step: int):
        """1) num_steps x num_envs transitions with pi_old (policy); returns the next observation and global_step."""
        space = envs.single_action_space
        for step in range(len(self.obs)):
            global_step += envs.num_envs
            self.obs[step] = next_obs
            self.actions[step], self.logprobs[step], self.values[step] = policy.act(next_obs)
            env_action = self.actions[step] if policy.discrete else np.clip(self.actions[step], space.low, space.high)
            raw_obs, reward, terminated, truncated, infos = envs.step(env_action)
            done = terminated | truncated
            self.rewards[step], self.terminations[step], self.dones[step] = reward_scaler(reward, done), terminated, done
            next_obs = obs_norm(raw_obs, update=True)
            # Truncation is not termination: bootstrap from V(true final observation). SAME_STEP autoreset has
            # already reset that sub-env; its final observation is in infos["final_obs"].
            self.final_values[step] = 0.0
            truncated_only = truncated & ~terminated
            if truncated_only.any():
                idx = np.nonzero(truncated_only)[0]
                self.final_values[step, idx] = policy.value(obs_norm(np.stack(infos["final_obs"][idx])))
            run.log_episodes(global_step, infos)
        return next_obs, global_step

    def advantages(self, policy, next_obs, gamma: float, gae_lambda: float, device: torch.device, value_scale: float = 1.0):
        """2) GAE over the rollout: (T, N) tensors of A_t, R_t and V(s_t); V's values times value_scale (a2c's sigma_R)."""
        # next_values[t] = V(s_{t+1}) of each transition's own next state: V(true final obs) at a truncation
        next_values = np.concatenate([self.values[1:], policy.value(next_obs)[None]])
        next_values = np.where(self.dones.astype(bool), self.final_values, next_values) * value_scale
        b_rewards, b_values, b_next_values, b_terminations, b_dones = (
            torch.as_tensor(x, device=device) for x in (self.rewards, self.values * value_scale, next_values, self.terminations, self.dones)
        )
        advantages, returns = compute_gae(b_rewards, b_values, b_next_values, b_terminations, b_dones, gamma, gae_lambda)
        return advantages, returns, b_values


# === end shared: rollout ===


def main(args: Args) -> dict:
    """Train (or, with --eval-checkpoint, only evaluate). Returns a summary for tests and the benchmark."""
    validate_args(args)
    run = Run(args)  # the checkpoint to resume or evaluate, seeding, device, run folder, envs (part two)
    envs, device = run.envs, run.device
    obs_norm, reward_scaler = make_normalisers(args, run)
    agent = Agent(run.obs_dim, run.action_dim, run.discrete, args).to(device)
    rmsprop = {"torch-rmsprop": torch.optim.RMSprop, "rmsprop": RMSpropTF}.get(args.optimizer)  # PyTorch's or TensorFlow's
    if rmsprop is not None:
        optimizer = rmsprop(agent.parameters(), lr=args.learning_rate, alpha=args.rmsprop_alpha, eps=args.rmsprop_eps)
    else:  # Adam; fused=True: one kernel for the whole parameter update
        optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=args.adam_eps, fused=True)
    state = dict(agent=agent, optimizer=optimizer, obs_rms=obs_norm.rms, return_rms=reward_scaler.rms)  # what checkpoints hold
    if args.return_scaling:  # sigma_R of the value targets
        state["target_rms"] = target_rms = RunningMeanStd()
    global_step, start_iteration = run.restore("iteration", evaluate_with=(agent, obs_norm), **state)  # from --resume or --eval-checkpoint
    if args.eval_checkpoint:
        return run.evaluate_checkpoint(agent, obs_norm)
    batch_size = args.num_envs * args.num_steps
    num_iterations = run.budget(batch_size)
    rollout = Rollout(args.num_steps, args.num_envs, run.obs_dim, envs.single_action_space)
    loss_fn = maybe_compile(a2c_loss, args.compile, run)

    envs.action_space.seed(args.seed + global_step)
    next_obs = obs_norm(envs.reset(seed=args.seed + global_step)[0], update=True)
    for iteration in range(start_iteration + 1, num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = run.lr_fraction(global_step) * args.learning_rate
        policy = HostPolicy(agent)  # pi_old, acting on the host

        # 1) Rollout: num_steps x num_envs transitions with pi_old
        next_obs, global_step = rollout.collect(envs, policy, next_obs, obs_norm, reward_scaler, run, global_step)

        # 2) Advantages and returns: GAE(gamma, lambda)
        sigma = float(np.sqrt(target_rms.var + 1e-8)) if args.return_scaling else 1.0  # sigma_R; 1: the critic learns R_t
        advantages, returns, values = rollout.advantages(policy, next_obs, args.gamma, args.gae_lambda, device, value_scale=sigma)
        if args.return_scaling:  # then sigma_R takes in this batch's R_t
            target_rms.update(returns.reshape(-1).cpu().numpy().astype(np.float64))

        # 3) One gradient step on the whole batch
        b_obs = torch.as_tensor(rollout.obs, device=device).reshape(batch_size, run.obs_dim)  # (T * N, obs_dim)
        b_actions = torch.as_tensor(rollout.actions, device=device).reshape((batch_size,) + envs.single_action_space.shape)
        b_advantages, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)
        loss, stats = loss_fn(
            agent, b_obs, b_actions, b_advantages, b_returns / sigma, norm_adv=args.norm_adv, ent_coef=args.ent_coef, vf_coef=args.vf_coef
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)  # global norm: g <- g min(1, c / ||g||)
        optimizer.step()

        # 4) Log, checkpoint
        stats["approx_kl"] = approx_kl(agent, b_obs, b_actions, torch.as_tensor(rollout.logprobs, device=device).reshape(-1))
        numbers = torch.stack(list(stats.values())).tolist()  # .tolist(): one sync per iteration
        losses = {f"losses/{name}": value for name, value in zip(stats, numbers, strict=True)}
        losses["losses/explained_variance"] = explained_variance(b_values, b_returns)
        run.log(global_step, {"charts/learning_rate": optimizer.param_groups[0]["lr"], **losses, "charts/SPS": run.sps(global_step)})
        run.end_iteration(global_step, last=iteration == num_iterations, iteration=iteration)
    return run.finish(agent, obs_norm, global_step, iteration=num_iterations)


# ==== infrastructure: the same machinery in every script of the collection; a reader of the algorithm can stop here ====


# === shared: on-policy ===
class HostPolicy:
    """The policy that acts in the envs, in NumPy: at num_envs rows torch's per-operation overhead is many times the
    arithmetic. Build it after each update: on the CPU its arrays are views of the parameters; on a GPU, copies."""

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


def load_policy(path: str):
    """A trained policy for your own code: act(raw obs (obs_dim,) or (N, obs_dim)) -> the deterministic action (argmax,
    or the mean clipped to the bounds), the checkpoint's observation statistics frozen."""
    ckpt = load_checkpoint(path)
    args = Args(**ckpt["args"])
    envs = make_vec_env(replace(args, capture_video=False), "", 1)  # for its spaces only
    envs.close()
    obs_dim, space = envs.single_observation_space.shape[0], envs.single_action_space
    discrete = isinstance(space, gym.spaces.Discrete)
    agent = Agent(obs_dim, space.n if discrete else space.shape[0], discrete, args)
    agent.load_state_dict(ckpt["agent"])
    obs_norm = ObsNormalizer((obs_dim,), (not discrete) if args.norm_obs is None else args.norm_obs, args.clip_obs)
    obs_norm.rms.load_state_dict(ckpt["obs_rms"])
    policy = HostPolicy(agent)

    def act(obs: np.ndarray) -> np.ndarray:
        action = policy.act_deterministic(obs_norm(np.asarray(obs).reshape(-1, obs_dim)))
        action = action if discrete else np.clip(action, space.low, space.high)
        return action if np.ndim(obs) > 1 else action[0]

    return act


class RunningMeanStd:
    """Running mean and variance of a stream of batches (Chan et al.'s parallel update), in float64, with plain sums."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean, self.var = np.zeros(shape, np.float64), np.ones(shape, np.float64)
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
    """o' = clip((o - mu) / sqrt(var + eps), -clip, clip), updated in training only; off: a float32 cast."""

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
    """r' = clip(r / sqrt(Var[G] + eps)), with G_t = gamma * G_{t-1} + r_t the running discounted return. Unlike
    gymnasium's NormalizeReward, which resets G on termination only (Gymnasium#1507), G is reset at every episode
    end, truncation included. No mean is subtracted: shifting rewards would change the optimal policy."""

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


def make_normalisers(args, run) -> tuple[ObsNormalizer, RewardScaler]:
    """--norm-obs and --norm-reward; None (the default) is on for Box actions and off for Discrete."""
    norm_obs = (not run.discrete) if args.norm_obs is None else args.norm_obs
    norm_reward = (not run.discrete) if args.norm_reward is None else args.norm_reward
    print(f"{SCRIPT} on {args.env_id}: {'Discrete' if run.discrete else 'Box'} actions, norm_obs={norm_obs}, norm_reward={norm_reward}")
    return ObsNormalizer((run.obs_dim,), norm_obs, args.clip_obs), RewardScaler(args.num_envs, args.gamma, norm_reward, args.clip_reward)


def maybe_compile(fn, enabled: bool, run=None):
    """torch.compile(fn) if enabled; eager, with a warning, if that fails. The compiling call is left out of SPS."""
    if not enabled:
        return fn
    compiled, first = torch.compile(fn), True

    def call(*a, **kw):
        nonlocal compiled, first
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
            if first and run is not None:
                run.excluded_time, first = run.excluded_time + time.time() - start, False

    return call


def check_action_space(space: gym.Space) -> bool:
    """Discrete or flat Box actions; returns whether they are discrete."""
    if not isinstance(space, gym.spaces.Discrete) and not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        fail(f"--env-id: action space {space} is not supported (Discrete or a flat Box)")
    return isinstance(space, gym.spaces.Discrete)


def explained_variance(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """1 - Var[y - y_hat] / Var[y]: 1 is a perfect value function, 0 no better than a constant."""
    var_y = y_true.var()
    return float("nan") if var_y == 0 else float(1 - (y_true - y_pred).var() / var_y)


# === end shared: on-policy ===


# === shared: validate-on-policy ===
def validate_on_policy(args, minibatches: bool = False) -> int:
    """The checks of a rollout's shape (and of its minibatches); returns the batch size num_envs * num_steps."""
    if not 0 <= args.gae_lambda <= 1:
        fail(f"--gae-lambda must be in [0, 1], got {args.gae_lambda}")
    if args.num_steps < 1:
        fail(f"--num-steps must be at least 1, got {args.num_steps}")
    batch_size = args.num_envs * args.num_steps
    if args.total_timesteps < batch_size and not args.eval_checkpoint:
        fail(f"--total-timesteps {args.total_timesteps} is smaller than one batch (num_envs * num_steps = {batch_size})")
    if minibatches and (args.num_minibatches < 1 or batch_size % args.num_minibatches):
        fail(f"--num-minibatches {args.num_minibatches} does not divide the batch (num_envs * num_steps = {batch_size})")
    if minibatches and args.update_epochs < 1:
        fail(f"--update-epochs must be at least 1, got {args.update_epochs}")
    return batch_size


# === end shared: validate-on-policy ===


# === shared: plumbing ===
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


class MLP(nn.Module):
    """Linear layers with an activation between them, orthogonal weights and zero biases (Implementation Matters,
    Engstrom et al. 2020). forward() loops over F.linear: nn.Sequential's per-layer call overhead would dominate."""

    def __init__(self, in_dim: int, hidden_sizes: tuple[int, ...], out_dim: int, activation: str, hidden_gain: float, out_gain: float):
        super().__init__()
        sizes, self.layers, self.activation = (in_dim, *hidden_sizes, out_dim), nn.ModuleList(), ACTIVATIONS[activation]
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            self.layers.append(nn.Linear(n_in, n_out))
            nn.init.orthogonal_(self.layers[-1].weight, out_gain if i == len(hidden_sizes) else hidden_gain)
            nn.init.constant_(self.layers[-1].bias, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, out = self.layers  # unpacking, not self.layers[:-1], which builds a new ModuleList per call
        for layer in hidden:
            x = self.activation(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, out.weight, out.bias)


SCRIPT = os.path.basename(__file__)


def make_vec_env(args, video_dir: str, num_envs: int, episodes: int | None = None) -> gym.vector.VectorEnv:
    """num_envs sub-envs in SAME_STEP autoreset mode (gymnasium's default, NEXT_STEP, spends a step on each reset,
    which is not a transition): a step that ends an episode returns the next one's first observation and the true
    final one in infos["final_obs"]. Episode statistics: infos["episode"], masked by infos["_episode"]. Env 0 records
    video to video_dir with --capture-video (the first `episodes`, else gymnasium's cubic schedule). Flat Box
    observations; actions as the script's check_action_space takes them."""
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as e:
        fail(f"--env-kwargs {args.env_kwargs!r} is not valid JSON ({e})")

    def make_env(record: bool) -> gym.Env:
        if not record:
            return gym.make(args.env_id, **env_kwargs)
        trigger = None if episodes is None else (lambda episode: episode < episodes)
        env = gym.make(args.env_id, render_mode="rgb_array", **env_kwargs)
        return gym.wrappers.RecordVideo(env, video_dir, episode_trigger=trigger, disable_logger=True)

    try:
        thunks = [lambda i=i: make_env(args.capture_video and i == 0) for i in range(num_envs)]
        envs = SyncVectorEnv(thunks, autoreset_mode=AutoresetMode.SAME_STEP, copy=False)
    except gym.error.NamespaceNotFound:
        namespace = args.env_id.split("/")[0]
        package = {"ALE": "ale-py (but Atari's observations are images, and these scripts take flat vectors)"}.get(namespace)
        fail(
            f"--env-id {args.env_id!r}: no env namespace {namespace!r} is registered; install {package or 'the package that registers it'}"
        )
    except Exception as e:  # an unknown id, a module that does not import, a wrong keyword argument
        fail(f"--env-id {args.env_id!r} could not be made: {type(e).__name__}: {e}".splitlines()[0])
    if args.capture_video and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        headless_rendering(mujoco="mujoco" in type(envs.envs[0].unwrapped).__module__)
    if not (isinstance(obs_space := envs.single_observation_space, gym.spaces.Box) and len(obs_space.shape) == 1):
        fail(f"--env-id: observation space {obs_space} is not supported: these scripts take flat vector observations (a 1-D Box)")
    check_action_space(envs.single_action_space)
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def headless_rendering(mujoco: bool) -> None:
    """Video without a display: pygame draws off-screen (no XDG_RUNTIME_DIR complaint); MuJoCo's first choice, GLFW,
    needs a display, so MUJOCO_GL (unless you set it) becomes EGL if it works, else OSMesa."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    for backend in ("egl", "osmesa") if mujoco and "MUJOCO_GL" not in os.environ else ():
        try:
            importlib.import_module(f"mujoco.{backend}").GLContext(8, 8).free()
            os.environ["MUJOCO_GL"] = backend
            return
        except Exception:
            os.environ.pop("PYOPENGL_PLATFORM", None)
    if mujoco and "MUJOCO_GL" not in os.environ:
        fail("--capture-video: no display, and neither EGL nor OSMesa works here; set MUJOCO_GL to a backend that does")


def validate_common(args) -> None:
    """The checks every script makes."""
    for flag in ("total_timesteps", "num_envs", "torch_threads"):
        if getattr(args, flag) < 1:
            fail(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if min(args.eval_episodes, args.save_every, args.eval_every) < 0:
        fail("--eval-episodes, --save-every and --eval-every must be non-negative")
    if not args.learning_rate > 0:
        fail(f"--learning-rate must be positive, got {args.learning_rate}")
    if not 0 < args.gamma <= 1:
        fail(f"--gamma must be in (0, 1], got {args.gamma}")
    if args.activation not in ACTIVATIONS:
        fail(f"--activation must be one of {sorted(ACTIVATIONS)}, got {args.activation!r}")


def pipe_safe(write):
    """sys.stdout's write or flush, sending the output to /dev/null once the reader has gone (`| head`)."""

    def call(*a):
        try:
            return write(*a)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    return call


def fail(message: str):
    """Bad input: one line on stderr naming the flag, exit status 1, no traceback."""
    raise SystemExit(f"{SCRIPT}: error: {message}")


def cli(args_type):
    """The command line; booleans take --flag, --no-flag and W&B Sweeps' --flag=True/False (also those whose default
    None is automatic). With --resume or --eval-checkpoint the checkpoint's args are the defaults (`--eval-checkpoint
    PATH` alone evaluates on its env); flags override them. A closed stdout (`| head`) is not an error."""
    if sys.stdout is sys.__stdout__:
        sys.stdout.write, sys.stdout.flush = pipe_safe(sys.stdout.write), pipe_safe(sys.stdout.flush)
    kinds = {f.name.replace("_", "-"): f.type for f in fields(args_type) if f.type in (bool, bool | None)}
    argv, tokens = [], sys.argv[1:]
    for i, token in enumerate(tokens):
        name, eq, value = token.partition("=")
        flag, negated = (name[5:], True) if name.startswith("--no-") else (name[2:], False)
        if not name.startswith("--") or flag not in kinds or (eq and value.lower() not in ("true", "false")):
            argv.append(token)
        elif kinds[flag] is bool:
            argv.append(f"--{flag}" if (value.lower() != "false") != negated else f"--no-{flag}")
        elif not eq and not negated and i + 1 < len(tokens) and tokens[i + 1] in ("True", "False", "None"):
            argv.append(token)  # --norm-obs True: tyro's own form
        else:
            argv += [f"--{flag}", str((value.lower() != "false") != negated)]
    args = tyro.cli(args_type, args=argv)
    if args.resume or args.eval_checkpoint:
        defaults = args_type(**load_checkpoint(args.resume or args.eval_checkpoint)["args"])
        args = tyro.cli(args_type, args=argv, default=replace(defaults, resume=None, eval_checkpoint=None))
    return args


class Run:
    """One run's machinery in main()'s order: the checkpoint given, threads, seeds, device, the run folder runs/<run> and
    the envs; restore() (checkpointed state, metrics file, W&B); log() (a {"global_step": .., name: value} line of
    runs/<run>/metrics.jsonl, and W&B); end_iteration() (progress line, --save-every); finish() (save, evaluate, summary)."""

    def __init__(self, args):
        self.args, path = args, args.resume or args.eval_checkpoint
        self.ckpt = load_checkpoint(path) if path else None
        for key in ("env_id", "env_kwargs") if self.ckpt else ():
            if self.ckpt["args"][key] != getattr(args, key):
                fail(f"checkpoint {path!r} was made for --{key.replace('_', '-')} {self.ckpt['args'][key]}, not {getattr(args, key)}")
        torch.set_num_threads(args.torch_threads)
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        torch.backends.cudnn.deterministic = args.torch_deterministic
        self.device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
        print(f"device: {self.device}" + (" (--cuda given, but no GPU is present)" if args.cuda and self.device.type == "cpu" else ""))
        base = f"{args.env_id.replace(':', '-').replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
        self.name, n = self.ckpt["run_name"] if self.ckpt else base, 1
        while not self.ckpt:  # made atomically: a second run started in the same second gets a suffix
            try:
                os.makedirs(os.path.join("runs", self.name))
                break
            except FileExistsError:
                n, self.name = n + 1, f"{base}-{n + 1}"
        self.dir, self.video_dir = os.path.join("runs", self.name), os.path.join("videos", self.name)
        print(f"run dir: {self.dir}")
        self.envs = make_vec_env(
            replace(args, capture_video=args.capture_video and not args.eval_checkpoint), self.video_dir, args.num_envs
        )
        self.discrete = isinstance(self.envs.single_action_space, gym.spaces.Discrete)
        self.obs_dim = self.envs.single_observation_space.shape[0]
        self.action_dim = self.envs.single_action_space.n if self.discrete else self.envs.single_action_space.shape[0]
        self.returns, self.state, self.save_next, self.wandb, self.videos_logged = [], {}, None, None, set()
        self.total, self.training, self.stop = args.total_timesteps, False, 0
        self.handlers = {sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(self, signum: int, frame) -> None:
        """Ctrl-C or SIGTERM in training: end_iteration saves and exits after this iteration. Before training, or a second
        signal: out at once (exit status 128 + signum, no traceback)."""
        if self.stop or not self.training:
            raise SystemExit(128 + signum)
        self.stop = signum
        os.write(2, f"\n{signal.Signals(signum).name}: saving after this iteration (again to quit at once)\n".encode())

    def budget(self, per_iteration: int) -> int:
        """The iterations that --total-timesteps buys at per_iteration transitions each, said at the start."""
        iterations = self.args.total_timesteps // per_iteration
        self.total, rest = iterations * per_iteration, self.args.total_timesteps % per_iteration
        print(
            f"budget: {iterations} iterations x {per_iteration} transitions = {self.total}"
            + (f" ({rest} short of --total-timesteps)" if rest else "")
        )
        return iterations

    def lr_fraction(self, global_step: int) -> float:
        """--anneal-lr's linear decay, 1 - global_step / total. A resume with another budget goes on from the fraction
        reached at the checkpoint down to 0 at the new one; a finished run's extension decays afresh from --learning-rate."""
        if not self.args.resume or self.ckpt.get("total", self.total) == self.total:
            return 1.0 - global_step / self.total
        start, old_total = self.ckpt["global_step"], self.ckpt["total"]
        return (1.0 - start / old_total if start < old_total else 1.0) * (1.0 - (global_step - start) / (self.total - start))

    def restore(self, counter: str, evaluate_with: tuple, **state) -> tuple[int, int]:
        """Registers what checkpoints hold (state_dicts, tensors) and loads it from the checkpoint given; with --resume
        also the RNG states; evaluate_with = (policy, obs_norm) for --eval-every. Returns global_step and the counter
        named `counter` to continue from (0, 0 if new)."""
        self.state, self.evaluate_with, global_step, count, args = state, evaluate_with, 0, 0, self.args
        for key, value in state.items() if self.ckpt else ():
            if isinstance(value, torch.Tensor):
                with torch.no_grad():
                    value.copy_(self.ckpt[key])
            else:
                value.load_state_dict(self.ckpt[key])
        if args.resume:
            global_step, count, rng = self.ckpt["global_step"], self.ckpt[counter], self.ckpt["rng"]
            random.setstate(rng["python"])
            np.random.set_state(("MT19937", rng["numpy"].numpy().astype(np.uint32), rng["numpy_pos"], *rng.get("numpy_gauss", (0, 0.0))))
            torch.set_rng_state(rng["torch"])
            print(f"resumed {self.name} at step {global_step}")
        if args.eval_checkpoint:
            return global_step, count
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "args.json"), "w") as f:
            json.dump(asdict(args), f, indent=2)
        self.file = open(os.path.join(self.dir, "metrics.jsonl"), "a")
        self.start_time, self.start_step, self.excluded_time, self.last_print = time.time(), global_step, 0.0, 0.0
        self.save_next = global_step + args.save_every if args.save_every else None
        self.eval_next = (global_step // args.eval_every + 1) * args.eval_every if args.eval_every else None
        if args.track:
            import wandb

            resume = dict(id=self.ckpt["wandb_id"], resume="allow") if args.resume and self.ckpt.get("wandb_id") else {}
            try:  # no key or no network: one line, before any training
                self.wandb = wandb.init(
                    project=args.wandb_project_name, entity=args.wandb_entity, name=self.name, config=asdict(args), dir=self.dir, **resume
                )
            except Exception as e:
                fail(
                    f"--track: W&B did not start ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); `wandb login`, or WANDB_MODE=offline"
                )
            self.wandb.define_metric("global_step")
            self.wandb.define_metric("*", step_metric="global_step")
        self.training = True
        return global_step, count

    def log(self, global_step: int, metrics: dict) -> None:
        record = {"global_step": global_step, **{k: float(v) for k, v in metrics.items()}}
        self.file.write(json.dumps(record) + "\n")
        if self.wandb is not None:  # one call per record: two episodes ending on the same step both stay
            self.wandb.log(record)

    def log_episodes(self, global_step: int, infos: dict) -> None:
        for i in np.nonzero(infos["_episode"])[0] if "_episode" in infos else ():
            self.returns.append(float(infos["episode"]["r"][i]))
            self.log(global_step, {"charts/episodic_return": self.returns[-1], "charts/episodic_length": int(infos["episode"]["l"][i])})

    def sps(self, global_step: int) -> int:
        """Transitions per wall second in this process, compile time excluded."""
        return int((global_step - self.start_step) / max(time.time() - self.start_time - self.excluded_time, 1e-9))

    def checkpoint(self, global_step: int, **counters) -> str:
        """runs/<run>/<script>.pt: the args, global_step and the counters, the registered state, the RNG states."""
        self.file.flush()  # the metrics up to the checkpoint survive a hard kill, for --resume
        path = os.path.join(self.dir, f"{SCRIPT[:-3]}.pt")
        state = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v.state_dict() for k, v in self.state.items()}
        _, keys, pos, has_gauss, gauss = np.random.get_state()  # the whole state: a cached second Gaussian too
        numpy_rng = {"numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_pos": int(pos), "numpy_gauss": (int(has_gauss), float(gauss))}
        rng = {"python": random.getstate(), **numpy_rng, "torch": torch.get_rng_state()}
        head = {"script": SCRIPT, "run_name": self.name, "args": asdict(self.args), "global_step": global_step, "total": self.total}
        head["wandb_id"] = self.wandb.id if self.wandb is not None else None
        torch.save({**head, **counters, **state, "rng": rng}, path + ".tmp")  # then renamed: a save cut short keeps the last one
        os.replace(path + ".tmp", path)
        return path

    def end_iteration(self, global_step: int, last: bool, **counters) -> None:
        """The progress line every --progress-every seconds (and at the end), videos to W&B, --save-every; after a signal,
        the checkpoint, the metrics and W&B closed, the command that resumes, and exit status 130 (SIGINT) or 143."""
        total = self.total
        if last or time.time() - self.last_print >= self.args.progress_every:
            self.last_print, sps = time.time(), self.sps(global_step)
            recent = f"{np.mean(self.returns[-100:]):.1f}" if self.returns else "n/a"
            left = max(total - global_step, 0) / max(sps, 1)
            print(
                f"step {global_step}/{total} ({100 * global_step / total:.0f}%) | {sps} SPS | "
                f"return (last 100 episodes) {recent} | left {int(left // 60)}m{int(left % 60):02d}s",
                flush=True,
            )
            self.file.flush()
            self.upload_videos()
        if self.save_next is not None and global_step >= self.save_next:
            self.checkpoint(global_step, **counters)
            self.save_next += self.args.save_every
        if self.eval_next is not None and global_step >= self.eval_next and not last:  # the last: finish() evaluates
            start, (policy, obs_norm) = time.time(), self.evaluate_with
            returns = evaluate(policy, self.args, obs_norm, self.name, self.args.eval_episodes, f" at step {global_step}")
            self.log(global_step, {"eval/episodic_return": np.mean(returns)})
            self.eval_next, self.excluded_time = self.eval_next + self.args.eval_every, self.excluded_time + time.time() - start
        if self.stop:
            path = self.checkpoint(global_step, **counters)
            self.close()
            command = sys.argv[0] if sys.argv[0].endswith(SCRIPT) else SCRIPT
            print(f"stopped at step {global_step}, saved {path}; to continue: python {command} --resume {path}", flush=True)
            raise SystemExit(128 + self.stop)

    def upload_videos(self) -> None:
        video_dir = self.video_dir
        if self.wandb is None or not os.path.isdir(video_dir):
            return
        import wandb

        for name in sorted(set(os.listdir(video_dir)) - self.videos_logged):
            if name.endswith(".mp4"):  # wandb.Video: gymnasium 1.x breaks wandb's monitor_gym (wandb#11193)
                self.videos_logged.add(name)
                self.wandb.log({"videos/episode": wandb.Video(os.path.join(video_dir, name), format="mp4")})

    def evaluate_checkpoint(self, agent, obs_norm) -> dict:
        returns = evaluate(agent, self.args, obs_norm, self.name, self.args.eval_episodes, f" of {self.args.eval_checkpoint}")
        self.envs.close()
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)
        return {"eval_returns": returns}

    def finish(self, agent, obs_norm, global_step: int, **counters) -> dict:
        summary = {"global_step": global_step, "run_dir": self.dir, "episodic_returns": self.returns, "sps": self.sps(global_step)}
        if self.args.save_model:
            summary["checkpoint"] = self.checkpoint(global_step, **counters)
            print(f"saved {summary['checkpoint']}")
        self.envs.close()
        self.training = False  # Ctrl-C in the evaluation: out at once
        if self.args.eval_episodes:
            summary["eval_returns"] = evaluate(agent, self.args, obs_norm, self.name, self.args.eval_episodes)
            self.log(global_step, {"eval/episodic_return": np.mean(summary["eval_returns"])})
        self.upload_videos()
        self.close()
        return summary | counters

    def close(self) -> None:
        """The metrics file, W&B (its service stopped: the run's records are on disk), the signal handlers as they were."""
        self.file.close()
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)
        if self.wandb is not None:
            import wandb

            self.wandb.finish()
            wandb.teardown()


def load_checkpoint(path: str) -> dict:
    """A checkpoint of this script, loaded with weights_only=True (tensors and plain containers only); the tuples of its
    args, which come back as lists, are tuples again, so `Args(**ckpt["args"])` is the run's Args."""
    if not os.path.isfile(path):
        fail(f"checkpoint {path!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        fail(f"checkpoint {path!r} could not be read ({type(e).__name__}); is it a file this script saved?")
    made_by = ckpt.get("script") if isinstance(ckpt, dict) else None
    if made_by != SCRIPT:
        fail(f"checkpoint {path!r} was made by {made_by or 'something else'}, not {SCRIPT}")
    ckpt["args"] = {k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["args"].items()}
    return ckpt


def evaluate(agent, args, obs_norm, run_name: str, episodes: int, label: str = "") -> list[float]:
    """Returns of the deterministic policy, observation statistics frozen, on a fresh env seeded apart from training."""
    video_dir, n = os.path.join("videos", run_name + "-eval"), 1
    while args.capture_video and os.path.exists(video_dir):  # each evaluation its own folder
        n, video_dir = n + 1, os.path.join("videos", f"{run_name}-eval-{n + 1}")
    envs = make_vec_env(replace(args, num_envs=1), video_dir, 1, episodes=episodes)
    policy, returns = HostPolicy(agent), []
    obs, _ = envs.reset(seed=args.seed + 10_000)
    while len(returns) < episodes:
        action = policy.act_deterministic(obs_norm(obs))
        if isinstance(envs.single_action_space, gym.spaces.Box):
            action = np.clip(action, envs.single_action_space.low, envs.single_action_space.high)
        obs, _, _, _, infos = envs.step(action)
        if "_episode" in infos and infos["_episode"][0]:
            returns.append(float(infos["episode"]["r"][0]))
    envs.close()
    print(f"evaluation{label}: mean return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {len(returns)} episodes")
    return returns


# === end shared: plumbing ===


if __name__ == "__main__":
    main(cli(Args))
