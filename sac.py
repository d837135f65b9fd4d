"""SAC: Soft Actor-Critic (Haarnoja et al., 2018, arXiv:1812.05905): twin critics, Polyak-averaged targets,
automatic temperature.

Each vector step (num_envs transitions):
  1) act: uniform random actions for the first learning_starts transitions, then a ~ pi(.|s)
  2) step the envs; store (s, a, r, s', terminated) in the replay buffer, s' being the true final observation
     where an episode ended (SAME_STEP autoreset: no reset step ever enters the buffer)
  3) gradient_steps updates (default num_envs: one per transition): sample a batch; J_Q on both critics and,
     every policy_frequency-th update, J_pi and J(alpha); one Adam step for all of them
  4) every target_network_frequency-th update, Polyak-average the target critics: Q_targ <- (1 - tau) Q_targ + tau Q
  5) log, checkpoint; after the last step, evaluate the deterministic action a = tanh(mu(s)), rescaled

The losses. SAC v1 (arXiv:1801.01290, the lecture notes) also trains V_psi and bootstraps Q from its Polyak
average; v2 drops V, samples its target at s' straight into y, and Polyak-averages the two critics instead:
  y        = r + gamma (1 - terminated) (min_i Q_targ_i(s', a') - alpha log pi(a'|s')),  a' ~ pi(.|s')   (soft_target)
  J_Q      = sum_i 1/2 E[(Q_i(s, a) - y)^2],  (s, a) from the buffer
  J_pi     = E[alpha log pi(a|s) - min_i Q_i(s, a)],  a = f(eps; s) = bias + scale * tanh(mu(s) + sigma(s) eps)
  J(alpha) = E[alpha (-log pi(a|s) - target_entropy)],  log pi detached, target_entropy = -dim(A)      (alpha_loss)
All three come from the same pre-update networks (as in rlkit; CleanRL and SB3 step the critics first), so their
sum takes one backward pass. Checkpoints hold all but the replay buffer, which --resume refills before updating.

Part one is SAC; below the `# ==== infrastructure` divider is the machinery every script shares (blocks marked
`# === shared: NAME ===` are byte-identical in every script that carries them).

Run:  python sac.py --env-id Hopper-v5
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
    num_envs: int = 1  # N: parallel sub-environments (gymnasium SyncVectorEnv)
    buffer_size: int = 1_000_000  # replay buffer capacity in transitions; the oldest are overwritten first (CleanRL, SB3: 1e6)
    learning_starts: int = 5_000  # transitions of uniform random actions before the first update, over all sub-envs (CleanRL: 5e3; SB3: 100; RL Zoo MuJoCo, Spinning Up: 1e4); after --resume the buffer refills with this many
    batch_size: int = 256  # transitions per gradient step, sampled uniformly with replacement (CleanRL, SB3: 256)
    gradient_steps: int | None = None  # gradient steps per vector step; None: num_envs, i.e. update-to-data ratio 1 (CleanRL, SB3)
    learning_rate: float = 3e-4  # Adam step size of actor, critics and log alpha (SAC paper, SB3: 3e-4; CleanRL: 1e-3 critics, alpha)
    gamma: float = 0.99  # gamma: discount factor, in (0, 1]
    tau: float = 0.005  # tau: Polyak coefficient of the target critics, in (0, 1]; 1 copies (CleanRL, SB3: 0.005)
    policy_frequency: int = 1  # update the actor and alpha every this many gradient steps (SB3, the paper: 1; CleanRL: 2, with 2 actor updates at once; here d > 1 updates the actor d times less often, as TD3)
    target_network_frequency: int = 1  # Polyak-average the target critics every this many gradient steps (CleanRL, SB3: 1)
    autotune: bool = True  # tune alpha toward the target entropy -dim(A), starting from alpha = 1 (CleanRL, SB3)
    alpha: float = 0.2  # alpha: the fixed temperature with --no-autotune (CleanRL, Spinning Up: 0.2); must be positive
    hidden_sizes: tuple[int, ...] = (256, 256)  # widths of the hidden layers of the actor and of each critic (CleanRL, SB3: 256-256)
    activation: str = "relu"  # hidden activation: relu (CleanRL, SB3) or tanh
    log_std_min: float = -5.0  # lower bound of log sigma, squashed into [min, max] by tanh (CleanRL: -5, 2; SB3, Spinning Up clamp: -20, 2)
    log_std_max: float = 2.0  # upper bound of log sigma
    adam_eps: float = 1e-8  # Adam epsilon (PyTorch's default, as CleanRL and SB3 use for SAC)
    log_every: int = 1_000  # write the losses and charts/SPS every this many env steps; each write reads the losses off the device once (the only host sync in the updates)
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


class Actor(nn.Module):
    """pi(a|s): u ~ N(mu(s), sigma(s)^2), a = action_bias + action_scale * tanh(u), so a lies in [low, high].

    One MLP outputs mu and the unbounded log-std side by side (the same function as CleanRL's two heads);
    log sigma is squashed into [log_std_min, log_std_max] with tanh, which keeps a gradient everywhere."""

    def __init__(self, obs_dim: int, action_low: np.ndarray, action_high: np.ndarray, args):
        super().__init__()
        action_dim = action_low.shape[0]
        self.net = MLP(obs_dim, args.hidden_sizes, 2 * action_dim, args.activation, 1.0, 1.0)
        for layer in self.net.layers:  # PyTorch's default init, as CleanRL and SB3 (MLP's orthogonal one is PPO's)
            layer.reset_parameters()
        low, high = (torch.as_tensor(x, dtype=torch.float32) for x in (action_low, action_high))
        self.register_buffer("action_scale", (high - low) / 2)
        self.register_buffer("action_bias", (high + low) / 2)
        self.log_std_centre = (args.log_std_max + args.log_std_min) / 2
        self.log_std_half_range = (args.log_std_max - args.log_std_min) / 2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu(s) and log sigma(s), each (B, A)."""
        mean, log_std = self.net(x).chunk(2, -1)
        # log sigma = min + (max - min) (tanh(x) + 1) / 2, written as centre + half-range * tanh(x)
        log_std = self.log_std_centre + self.log_std_half_range * torch.tanh(log_std)
        return mean, log_std

    def sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a ~ pi(.|s), reparameterised, and log pi(a|s): (B, A), (B,)."""
        mean, log_std = self(x)
        return sample_action(mean, log_std, self.action_scale, self.action_bias)


class TwinQNetwork(nn.Module):
    """Q_1 and Q_2 (CleanRL's qf1 and qf2) as one module: each layer holds the two critics' weights stacked,
    (2, in, out), so that one batched matmul (torch.baddbmm) evaluates both. Stored (in, out), the transpose of
    nn.Linear's, so that the weight's gradient arrives in the parameter's own layout (a transposed one costs a copy
    per layer and step). The one-unit output layer is a dot product per row, (x * w).sum(-1): a matrix-vector product
    through the batched matrix kernel is several times slower on the CPU. The critics keep their own initialisation,
    parameters and Adam moments; row 0 of the output is Q_1 (qf1), row 1 is Q_2 (qf2)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: tuple[int, ...], activation: str):
        super().__init__()
        sizes = (obs_dim + action_dim, *hidden_sizes, 1)
        # Two nn.Linear per layer for PyTorch's default init (CleanRL, SB3), stacked into one parameter
        pairs = [(nn.Linear(i, o), nn.Linear(i, o)) for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
        with torch.no_grad():
            self.weights = nn.ParameterList([torch.stack([qf1.weight.T, qf2.weight.T]) for qf1, qf2 in pairs])  # (2, in, out)
            self.biases = nn.ParameterList([torch.stack([qf1.bias, qf2.bias]).unsqueeze(1) for qf1, qf2 in pairs])  # (2, 1, out)
        # In place: one (2, B, hidden) tensor fewer to allocate per layer (baddbmm's backward never reads its output)
        self.activation_ = {"relu": torch.relu_, "tanh": torch.tanh_}[activation]

    def forward(self, obs: torch.Tensor, action: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """Q_1(s, a) and Q_2(s, a): (B, obs_dim), (B, A) -> (2, B). detach_params: the gradient reaches the inputs
        (the actor, through a) but not the critics' weights."""
        x = torch.cat([obs, action], -1).expand(2, -1, -1)  # (2, B, obs_dim + A): the same input to both
        weights, biases = list(self.weights), list(self.biases)
        if detach_params:
            weights, biases = [w.detach() for w in weights], [b.detach() for b in biases]
        for weight, bias in zip(weights[:-1], biases[:-1], strict=True):
            x = self.activation_(torch.baddbmm(bias, x, weight))  # (2, B, out) = act(b + x W)
        # Q_i(s, a) = b + x . w: (2, B, hidden) * (2, 1, hidden), summed over hidden -> (2, B)
        return (x * weights[-1].transpose(1, 2)).sum(-1) + biases[-1].squeeze(-1)


LOG_SQRT_2PI = 0.5 * float(np.log(2 * np.pi))
LOG_2 = float(np.log(2.0))


def squashed_log_prob(u: torch.Tensor, eps: torch.Tensor, log_std: torch.Tensor, action_scale: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) of a = bias + scale * tanh(u), u = mu + sigma * eps ~ N(mu, sigma^2), by the change of variables
    on the pre-squash sample u, summed over action dimensions: (B, A) -> (B,).

    log pi(a|s) = sum_i [ log N(u_i | mu_i, sigma_i^2) - log(1 - tanh(u_i)^2) - log scale_i ]
    log N(u | mu, sigma^2) = log N(eps | 0, 1) - log sigma: eps = (u - mu) / sigma is the noise drawn, a constant
    to autograd, so this form costs no backward pass through mu.
    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)): exact, and finite where tanh(u) rounds to +-1.
    """
    log_det_tanh = 2.0 * (LOG_2 - u - F.softplus(-2.0 * u))
    log_prob = (-0.5 * eps**2 - log_std - log_det_tanh).sum(-1)
    # the action-scale Jacobian: - sum_i log scale_i, with the Gaussian's constant
    return log_prob - (u.shape[-1] * LOG_SQRT_2PI + torch.log(action_scale).sum())


def sample_action(mean: torch.Tensor, log_std: torch.Tensor, action_scale: torch.Tensor, action_bias: torch.Tensor):
    """a = f(eps; s) = bias + scale * tanh(mu + sigma * eps), eps ~ N(0, I): the reparameterisation trick, so the
    gradient of J_pi flows through the sample. Returns a (B, A) and log pi(a|s) (B,)."""
    eps = torch.randn_like(mean)
    u = mean + log_std.exp() * eps
    return action_bias + action_scale * torch.tanh(u), squashed_log_prob(u, eps, log_std, action_scale)


def soft_target(rewards, terminations, next_q_min, next_log_pi, *, alpha: torch.Tensor | float, gamma: float) -> torch.Tensor:
    """The soft Bellman target, (B,) tensors. next_q_min = min_i Q_targ_i(s', a') and next_log_pi = log pi(a'|s')
    with a' ~ pi(.|s'), s' the true next observation (the final one at a truncation). Only a termination cuts the
    bootstrap: a time-limit truncation is not the end of the task."""
    # y = r + gamma * (1 - terminated) * (min_i Q_targ_i(s', a') - alpha * log pi(a'|s'))
    return rewards + gamma * (1.0 - terminations) * (next_q_min - alpha * next_log_pi)


def alpha_loss(log_alpha: torch.Tensor, log_pi: torch.Tensor, *, target_entropy: float) -> torch.Tensor:
    """J(alpha) = E[alpha * (-log pi(a|s) - target_entropy)], log pi detached, optimised through log alpha
    (alpha = exp(log alpha) stays positive). Its gradient in alpha is the entropy estimate minus the target:
    an entropy above the target lowers alpha, one below raises it (CleanRL PR #414: alpha, not log alpha)."""
    return (log_alpha.exp() * (-log_pi.detach() - target_entropy)).mean()


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, *, tau: float) -> None:
    """Polyak averaging, in place: theta_targ <- (1 - tau) theta_targ + tau theta, i.e. theta_targ.lerp_(theta, tau)."""
    with torch.no_grad():
        for target_param, param in zip(target.parameters(), source.parameters(), strict=True):
            target_param.lerp_(param, tau)


def sac_losses(actor: Actor, qf: TwinQNetwork, qf_target: TwinQNetwork, log_alpha, batch, *, gamma, update_actor, autotune, target_entropy):
    """J_Q for both critics and, with update_actor, J_pi and (with autotune) J(alpha), all from the same pre-update
    networks (as in rlkit's SAC): the sum needs one backward pass, each term reaching only its own parameters.
    Returns the loss and a dict of detached diagnostics."""
    obs, actions, rewards, terminations, next_obs = batch
    alpha = log_alpha.exp().detach()
    with torch.no_grad():
        next_actions, next_log_pi = actor.sample(next_obs)  # a' ~ pi(.|s')
        next_q_min = qf_target(next_obs, next_actions).min(0).values
        y = soft_target(rewards, terminations, next_q_min, next_log_pi, alpha=alpha, gamma=gamma)
    # J_Q = sum_i 1/2 E[(Q_i(s, a) - y)^2], a from the buffer
    q_values = qf(obs, actions)  # (2, B)
    qf_loss = 0.5 * ((q_values - y) ** 2).mean(1).sum()
    stats = {"losses/qf1_values": q_values[0].mean(), "losses/qf2_values": q_values[1].mean(), "losses/qf_loss": qf_loss}
    loss = qf_loss
    if update_actor:
        # J_pi = E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi(.|s) reparameterised; the critics are held fixed
        pi, log_pi = actor.sample(obs)
        min_q_pi = qf(obs, pi, detach_params=True).min(0).values
        actor_loss = (alpha * log_pi - min_q_pi).mean()
        loss = loss + actor_loss
        stats |= {"losses/actor_loss": actor_loss, "losses/alpha": alpha}
        if autotune:
            entropy_loss = alpha_loss(log_alpha, log_pi, target_entropy=target_entropy)
            loss = loss + entropy_loss
            stats["losses/alpha_loss"] = entropy_loss
    return loss, {k: v.detach() for k, v in stats.items()}


class ReplayBuffer:
    """(s, a, r, s', terminated), preallocated on the device as a ring of `capacity` transitions. s' is each
    transition's own next observation: the true final one where an episode ended, never the next episode's first.
    Actions are stored as the env took them (rescaled to [low, high]), which is what the critics see. One row per
    transition, [s | a | r | terminated | s'], so that a batch is one gather of whole rows (index_select) instead of
    one per field; the fields are column views of it."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, device: torch.device):
        self.widths = (obs_dim, action_dim, 1, 1, obs_dim)
        self.data = torch.zeros((capacity, sum(self.widths)), device=device)  # (C, 2 obs_dim + A + 2)
        # Views: obs (C, obs_dim), actions (C, A), rewards (C,), terminations (C,), next_obs (C, obs_dim)
        self.obs, self.actions, self.rewards, self.terminations, self.next_obs = self.split(self.data)
        self.capacity, self.pos, self.size, self.device = capacity, 0, 0, device

    def split(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rows (N, 2 obs_dim + A + 2) -> views s (N, obs_dim), a (N, A), r (N,), terminated (N,), s' (N, obs_dim)."""
        obs, actions, rewards, terminations, next_obs = rows.split(self.widths, 1)
        return obs, actions, rewards.squeeze(1), terminations.squeeze(1), next_obs

    def add(self, obs, actions, rewards, terminations, next_obs) -> None:
        """One vector step's transitions, NumPy arrays as the env returns them, each (N, ...): assembled into rows
        on the host, then written in one copy."""
        n, end = len(obs), self.pos + len(obs)
        block = np.concatenate([np.asarray(x, np.float32).reshape(n, -1) for x in (obs, actions, rewards, terminations, next_obs)], 1)
        rows = slice(self.pos, end) if end <= self.capacity else torch.arange(self.pos, end, device=self.device) % self.capacity
        self.data[rows] = torch.from_numpy(block).to(self.device)
        self.pos, self.size = (self.pos + n) % self.capacity, min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """batch_size transitions drawn uniformly with replacement (CleanRL, SB3): s, a, r, terminated, s'."""
        idx = torch.randint(self.size, (batch_size,), device=self.device)
        return self.split(torch.index_select(self.data, 0, idx))


def validate_args(args: Args) -> None:
    """Bad input fails here, before any env is built or a step is taken (validate_common is in part two)."""
    validate_common(args)
    for flag in ("buffer_size", "batch_size", "policy_frequency", "target_network_frequency", "log_every", "gradient_steps"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:  # gradient_steps may be None
            fail(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.batch_size > args.buffer_size:
        fail(f"--batch-size {args.batch_size} is larger than the replay buffer (--buffer-size {args.buffer_size})")
    if not 0 <= args.learning_starts <= args.buffer_size:
        fail(f"--learning-starts must be in [0, --buffer-size = {args.buffer_size}], got {args.learning_starts}")
    budget = args.total_timesteps // args.num_envs * args.num_envs  # the transitions the run will take
    if args.learning_starts >= budget and not args.eval_checkpoint:
        fail(
            f"--learning-starts {args.learning_starts} is not below the budget of {budget} transitions "
            f"(--total-timesteps {args.total_timesteps}, --num-envs {args.num_envs}): the run would never update"
        )
    if not 0 < args.tau <= 1:
        fail(f"--tau must be in (0, 1], got {args.tau}")
    if not args.alpha > 0:
        fail(f"--alpha must be positive, got {args.alpha}")
    if not args.log_std_min < args.log_std_max:
        fail(f"--log-std-min {args.log_std_min} must be below --log-std-max {args.log_std_max}")


def main(args: Args) -> dict:
    """Train (or, with --eval-checkpoint, only evaluate). Returns a summary for tests and the benchmark."""
    validate_args(args)
    run = Run(args)  # the checkpoint to resume or evaluate, seeding, device, run folder, envs (part two)
    envs, device, obs_dim, action_dim = run.envs, run.device, run.obs_dim, run.action_dim
    space = envs.single_action_space
    gradient_steps = args.num_envs if args.gradient_steps is None else args.gradient_steps
    print(
        f"{SCRIPT} on {args.env_id}: Box actions in [{space.low.min():g}, {space.high.max():g}], "
        f"autotune={args.autotune}, {gradient_steps} gradient step(s) per vector step of {args.num_envs} transition(s)"
    )
    actor = Actor(obs_dim, space.low, space.high, args).to(device)
    qf = TwinQNetwork(obs_dim, action_dim, args.hidden_sizes, args.activation).to(device)
    qf_target = TwinQNetwork(obs_dim, action_dim, args.hidden_sizes, args.activation).to(device).requires_grad_(False)
    qf_target.load_state_dict(qf.state_dict())
    target_entropy = -float(action_dim)  # -dim(A), the paper's heuristic
    log_alpha = torch.tensor(0.0 if args.autotune else float(np.log(args.alpha)), device=device, requires_grad=args.autotune)
    # One Adam for the actor, both critics and log alpha: Adam is per parameter, so this is the paper's three
    # optimisers (one step size) in one fused call. A parameter without a gradient (the actor between two
    # policy_frequency steps) is skipped, its moments and step count untouched.
    params = [*actor.parameters(), *qf.parameters(), *([log_alpha] if args.autotune else [])]
    optimizer = torch.optim.Adam(params, lr=args.learning_rate, eps=args.adam_eps, fused=True)
    # What checkpoints hold (not the replay buffer), restored here from --resume or --eval-checkpoint; evaluation
    # skips the optimizer, whose parameters --no-autotune would change
    state = dict(actor=actor, qf=qf, qf_target=qf_target, log_alpha=log_alpha) | ({} if args.eval_checkpoint else dict(optimizer=optimizer))
    global_step, update_step = run.restore("update_step", evaluate_with=(actor, float32), **state)
    if args.eval_checkpoint:
        return run.evaluate_checkpoint(actor, float32)
    if args.resume:
        print(f"the replay buffer is not saved: {args.learning_starts} transitions refill it before the updates resume")
    rb = ReplayBuffer(args.buffer_size, obs_dim, action_dim, device)
    stats: dict[str, torch.Tensor] = {}

    envs.action_space.seed(args.seed + global_step)
    raw_obs, _ = envs.reset(seed=args.seed + global_step)
    obs = float32(raw_obs)  # a copy: the vector env reuses its observation array (copy=False) on the next step
    policy = HostPolicy(actor)
    num_vector_steps = run.budget(args.num_envs)  # vector steps of num_envs transitions
    log_next = global_step + args.log_every
    for _ in range(global_step // args.num_envs, num_vector_steps):
        # 1) Act: uniform random during the warm-up, then a ~ pi(.|s), on the host
        actions = envs.action_space.sample() if global_step < args.learning_starts else policy.act(obs)

        # 2) Step; store s' = the true final observation where an episode ended (SAME_STEP autoreset has already
        # reset that sub-env and returned the next episode's first observation)
        raw_obs, rewards, terminations, truncations, infos = envs.step(actions)
        global_step += args.num_envs
        next_obs = float32(raw_obs)
        real_next_obs = next_obs
        if "_final_obs" in infos and infos["_final_obs"].any():
            real_next_obs = next_obs.copy()
            for i in np.nonzero(infos["_final_obs"])[0]:
                real_next_obs[i] = infos["final_obs"][i]
        rb.add(obs, actions, rewards, terminations, real_next_obs)
        obs = next_obs
        run.log_episodes(global_step, infos)

        # 3) gradient_steps updates once the buffer holds learning_starts transitions (after a resume it refills)
        if rb.size >= args.learning_starts:
            for _ in range(gradient_steps):
                update_step += 1
                loss, step_stats = sac_losses(
                    actor, qf, qf_target, log_alpha, rb.sample(args.batch_size),
                    gamma=args.gamma, update_actor=update_step % args.policy_frequency == 0, autotune=args.autotune, target_entropy=target_entropy,
                )  # fmt: skip
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                stats |= step_stats
                # 4) Target critics: Q_targ <- (1 - tau) Q_targ + tau Q
                if update_step % args.target_network_frequency == 0:
                    soft_update(qf_target, qf, tau=args.tau)
            if device.type != "cpu":
                policy = HostPolicy(actor)  # a GPU's weights reach NumPy by copy: refresh them

        # 5) Log, checkpoint
        if global_step >= log_next:
            log_next += args.log_every
            values = torch.stack(list(stats.values())).tolist() if stats else []  # .tolist(): the one sync per log
            run.log(global_step, {**dict(zip(stats, values, strict=True)), "charts/SPS": run.sps(global_step)})
        run.end_iteration(global_step, last=global_step == run.total, update_step=update_step)
    return run.finish(actor, float32, global_step, update_step=update_step)


# ==== infrastructure: the same machinery in every script of the collection; a reader of the algorithm can stop here ====


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


class HostPolicy:
    """The policy that acts in the environment: NumPy views of the actor's current weights (as ppo.py's). Acting
    runs once per env step on num_envs observations, a size at which torch's per-operation overhead is many times the
    arithmetic. On the CPU the arrays share memory with the actor's parameters, so each Adam step (in place) shows
    through at once; on a GPU they are copies, rebuilt after the updates. tests/test_sac.py checks it against Actor."""

    def __init__(self, actor: Actor):
        def host(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy()

        self.layers = [(host(layer.weight).T, host(layer.bias)) for layer in actor.net.layers]
        self.activation = np.tanh if actor.net.activation is torch.tanh else (lambda x: np.maximum(x, 0))
        self.action_scale, self.action_bias = host(actor.action_scale), host(actor.action_bias)
        self.log_std_centre, self.log_std_half_range = actor.log_std_centre, actor.log_std_half_range

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mu(s) and log sigma(s) for a batch (N, obs_dim), as Actor.forward."""
        for weight, bias in self.layers[:-1]:
            x = self.activation(x @ weight + bias)
        out = x @ self.layers[-1][0] + self.layers[-1][1]
        half = out.shape[1] // 2  # slices, not np.split: the same views without np.split's Python-level bookkeeping
        mean, log_std = out[:, :half], out[:, half:]
        return mean, self.log_std_centre + self.log_std_half_range * np.tanh(log_std)

    def act(self, x: np.ndarray) -> np.ndarray:
        """a ~ pi(.|s) = bias + scale * tanh(mu + sigma * eps), eps ~ N(0, I) from NumPy's global RNG: (N, A)."""
        mean, log_std = self.forward(x)
        eps = np.random.standard_normal(mean.shape).astype(np.float32)
        return self.action_bias + self.action_scale * np.tanh(mean + np.exp(log_std) * eps)

    def act_deterministic(self, x: np.ndarray) -> np.ndarray:
        """The evaluation action: tanh(mu(s)), rescaled to the bounds."""
        return self.action_bias + self.action_scale * np.tanh(self.forward(x)[0])


def float32(obs: np.ndarray) -> np.ndarray:
    """SAC feeds the networks raw observations (no normalisation, as CleanRL and SB3): evaluate() takes this in
    place of the on-policy scripts' ObsNormalizer."""
    return obs.astype(np.float32)


def check_action_space(space: gym.Space) -> bool:
    """SAC squashes a Gaussian into [low, high]: it needs a flat Box action space with finite bounds."""
    takers = "; ppo.py, ppo_kl.py, a2c.py, trpo.py and reinforce.py take Discrete actions" if isinstance(space, gym.spaces.Discrete) else ""
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        fail(f"--env-id: SAC needs a Box action space, not {space}{takers}")
    if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
        fail(f"--env-id: action space {space} is unbounded; SAC squashes its actions into [low, high] and needs finite bounds")
    return False


def load_policy(path: str):
    """A trained policy for your own code: act(obs) -> action, from raw observations, (obs_dim,) or (N, obs_dim), to
    the deterministic action tanh(mu(s)) rescaled to the bounds: `from sac import load_policy; act = load_policy(path)`."""
    ckpt = load_checkpoint(path)
    args = Args(**ckpt["args"])
    env = gym.make(args.env_id, **json.loads(args.env_kwargs))  # for its spaces only
    obs_dim, space = env.observation_space.shape[0], env.action_space
    env.close()
    actor = Actor(obs_dim, space.low, space.high, args)
    actor.load_state_dict(ckpt["actor"])
    policy = HostPolicy(actor)

    def act(obs: np.ndarray) -> np.ndarray:
        action = policy.act_deterministic(float32(np.asarray(obs).reshape(-1, obs_dim)))
        return action if np.ndim(obs) > 1 else action[0]

    return act


if __name__ == "__main__":
    main(cli(Args))
