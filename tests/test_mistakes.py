"""Properties that breaking the code on purpose showed nothing checked, each against an answer computed here.

- ppo_kl.py: the KL penalty's gradient (not only its value) against an independent KL from torch.distributions.
- evaluation leaves the observation statistics exactly as they were (every on-policy script).
- the rollout resets the reward scaler's running return at a truncation: a run on ToyTrunc-v0, whose episodes only
  ever end by the time limit, leaves the discounted returns of 1..5-step partial episodes in the statistics.
- sac.py's sac_losses: the critic, actor and temperature losses by hand, and each one's gradient reaching only its own
  parameters.
- the normalisers' outputs (scaled rewards, normalised observations, exact running moments), HostPolicy's sampling at
  a non-zero mean and a non-unit std with the log-probs of its samples by torch.distributions.
- the rest of the pure math, to the point where flipping an operator, dropping a term or swapping two arguments fails
  a test that runs in well under a second (tests/mutate.py scores that; tests/mutation_results.md has the scores).

Everything here is tiny: one-layer networks, a few dozen samples, runs of a few hundred steps.
"""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

import a2c
import ppo
import ppo_kl
import reinforce
import sac
import trpo

F64 = torch.float64
ON_POLICY = [ppo, ppo_kl, a2c, trpo, reinforce]
IDS = [m.__name__ for m in ON_POLICY]
# Each test file's tiny run: two iterations (reinforce: a few batches) of real updates in well under a second
TINY = {
    ppo: dict(num_envs=2, num_steps=64, num_minibatches=2, update_epochs=2, total_timesteps=256),
    ppo_kl: dict(num_envs=2, num_steps=64, num_minibatches=2, update_epochs=2, total_timesteps=256),
    trpo: dict(num_envs=2, num_steps=64, num_minibatches=2, update_epochs=2, total_timesteps=256),
    a2c: dict(num_envs=2, num_steps=8, total_timesteps=64),
    reinforce: dict(num_envs=2, num_steps=64, total_timesteps=256, vf_iters=2),
    sac: dict(hidden_sizes=(32, 32), batch_size=32, learning_starts=64, log_every=64, total_timesteps=256, env_id="Pendulum-v1"),
}


def tiny(module, **kw):
    return module.Args(**{"env_id": "CartPole-v1", "progress_every": 1e9, "eval_episodes": 0, **TINY[module], **kw})


def grads(loss, params):
    """d loss / d p for each p; zeros where the loss does not depend on p."""
    gs = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params, strict=True)]


def assert_grads_close(got, expected, **tol):
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, **tol)


def moved_agent(module, discrete, seed=0, obs_dim=4, action_dim=3, batch=48):
    """A one-layer float64 agent, a batch scored by pi_old, then the policy moved away from pi_old."""
    torch.manual_seed(seed)
    agent = module.Agent(obs_dim, action_dim, discrete, module.Args(hidden_sizes=(8,), policy_init_gain=1.0, init_logstd=-0.3)).double()
    x = torch.randn(batch, obs_dim, dtype=F64)
    with torch.no_grad():
        out = agent.actor(x)
        if discrete:
            old = Categorical(logits=out)
            actions = old.sample()
            logprobs = old.log_prob(actions)
        else:
            old = Normal(out, agent.actor_logstd.exp().expand_as(out))
            actions = old.sample()
            logprobs = old.log_prob(actions).sum(-1)
        old_out = out.clone()
        for p in agent.actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if not discrete:
            agent.actor_logstd.copy_(torch.tensor([[-0.1, -0.5, 0.2]], dtype=F64))
    return agent, x, actions, logprobs, old_out


def distribution(agent, x):
    out = agent.actor(x)
    return Categorical(logits=out) if agent.discrete else Normal(out, agent.actor_logstd.exp().expand_as(out))


def log_prob_entropy(agent, x, actions):
    d = distribution(agent, x)
    if agent.discrete:
        return d.log_prob(actions), d.entropy()
    return d.log_prob(actions).sum(-1), d.entropy().sum(-1)


# ================================================================================= ppo_kl: the penalty's gradient


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "box"])
def test_kl_penalty_gradient_is_beta_times_the_gradient_of_an_independent_kl(discrete):
    """With pi_theta away from pi_old, d/d theta of the penalised loss at beta minus at beta = 0 is beta grad KL, the KL
    taken by torch.distributions; and the whole loss's gradient, every parameter, is that of the loss written here.
    (A penalty detached from the graph, `beta * kl.detach()`, has the right value and no gradient.)"""
    agent, x, actions, logprobs, old_out = moved_agent(ppo_kl, discrete)
    old_dist = old_out if discrete else torch.cat([old_out, torch.full_like(old_out, -0.3)], -1)
    advantages, returns = torch.randn(48, dtype=F64) + 0.5, torch.randn(48, dtype=F64)
    params = list(agent.parameters())
    actor_params = [p for n, p in agent.named_parameters() if not n.startswith("critic.")]
    hp = dict(norm_adv=True, ent_coef=0.01, vf_coef=0.5)

    out = agent.actor(x)
    if discrete:
        kl = kl_divergence(Categorical(logits=old_out), Categorical(logits=out))
    else:
        kl = kl_divergence(Normal(old_out, math.exp(-0.3)), Normal(out, agent.actor_logstd.exp().expand_as(out))).sum(-1)
    kl = kl.mean()
    assert kl.item() > 0.05
    kl_grad = grads(kl, actor_params)

    beta = 2.5
    loss0, _ = ppo_kl.ppo_kl_loss(agent, x, actions, logprobs, advantages, returns, old_dist, beta=torch.tensor(0.0, dtype=F64), **hp)
    loss, stats = ppo_kl.ppo_kl_loss(agent, x, actions, logprobs, advantages, returns, old_dist, beta=torch.tensor(beta, dtype=F64), **hp)
    difference = [g - g0 for g, g0 in zip(grads(loss, actor_params), grads(loss0, actor_params), strict=True)]
    assert_grads_close(difference, [beta * g for g in kl_grad])
    assert max(g.abs().max().item() for g in kl_grad) > 1e-2  # a real pull

    logp, entropy = log_prob_entropy(agent, x, actions)
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg = -((logp - logprobs).exp() * adv).mean() + beta * kl
    v_loss = 0.5 * ((agent.critic(x)[:, 0] - returns) ** 2).mean()
    expected = pg + 0.5 * v_loss - 0.01 * entropy.mean()
    torch.testing.assert_close(loss, expected, rtol=1e-11, atol=1e-13)  # tight: the 1e-8 of std + 1e-8 shows
    assert_grads_close(grads(loss, params), grads(expected, params))
    ratio = (logp - logprobs).exp()
    approx = ((ratio - 1) - (logp - logprobs)).mean()
    got = torch.stack([stats[k] for k in ("policy_loss", "value_loss", "entropy", "approx_kl")])
    torch.testing.assert_close(got, torch.stack([pg, v_loss, entropy.mean(), approx]).detach())


def test_kl_penalty_alone_pulls_the_policy_back_toward_pi_old():
    """Zero advantages, no value or entropy term: the loss is beta KL, and a small gradient step on it lowers the KL."""
    agent, x, actions, logprobs, old_out = moved_agent(ppo_kl, False, seed=4)
    old_dist = torch.cat([old_out, torch.full_like(old_out, -0.3)], -1)

    def kl_now():
        with torch.no_grad():
            return ppo_kl.kl_divergence(old_dist, ppo_kl.dist_params(agent, x), False).mean().item()

    before = kl_now()
    zeros = torch.zeros(48, dtype=F64)
    loss, _ = ppo_kl.ppo_kl_loss(
        agent, x, actions, logprobs, zeros, zeros, old_dist, beta=torch.tensor(1.0, dtype=F64), norm_adv=False, ent_coef=0.0, vf_coef=0.0
    )
    torch.testing.assert_close(loss.item(), before)
    loss.backward()
    with torch.no_grad():
        for p in agent.parameters():
            if p.grad is not None:
                p.sub_(0.05 * p.grad)
    assert kl_now() < 0.9 * before


def test_kl_divergence_splits_means_from_log_stds_and_keeps_the_direction():
    """dist_params of a Box policy is [mean | log-std]; kl_divergence must read the halves so, in the order (old, new)."""
    torch.manual_seed(5)
    mean_p, mean_q, ls_p, ls_q = (torch.randn(6, 3, dtype=F64) * s for s in (1.0, 1.0, 0.4, 0.4))
    expected = kl_divergence(Normal(mean_p, ls_p.exp()), Normal(mean_q, ls_q.exp())).sum(-1)
    got = ppo_kl.kl_divergence(torch.cat([mean_p, ls_p], -1), torch.cat([mean_q, ls_q], -1), False)
    torch.testing.assert_close(got, expected)
    logits_p, logits_q = torch.randn(6, 4, dtype=F64), torch.randn(6, 4, dtype=F64)
    expected = kl_divergence(Categorical(logits=logits_p), Categorical(logits=logits_q))
    torch.testing.assert_close(ppo_kl.kl_divergence(logits_p, logits_q, True), expected)


def test_dist_params_are_logits_or_mean_and_log_std():
    agent, x, _, _, _ = moved_agent(ppo_kl, False)
    with torch.no_grad():
        params = ppo_kl.dist_params(agent, x)
        torch.testing.assert_close(params, torch.cat([agent.actor(x), agent.actor_logstd.expand(48, 3)], -1))


# ===================================================================== evaluation: the statistics stay frozen


@pytest.mark.parametrize("module", ON_POLICY, ids=IDS)
def test_evaluation_leaves_the_observation_statistics_exactly_as_they_were(module):
    """Mean, variance and count of the running observation statistics before and after evaluate(), compared exactly;
    two evaluations give the same returns. (One that updated the statistics would drift, and two such evaluations
    would drift identically: comparing evaluations with each other cannot see it.)"""
    args = module.Args(env_id="CartPole-v1", hidden_sizes=(8,), norm_obs=True)
    torch.manual_seed(0)
    agent = module.Agent(4, 2, True, args)
    obs_norm = module.ObsNormalizer((4,), True, 10.0)
    obs_norm(np.random.default_rng(0).normal(0.5, 2.0, (64, 4)), update=True)
    before = obs_norm.rms.mean.copy(), obs_norm.rms.var.copy(), obs_norm.rms.count
    first = module.evaluate(agent, args, obs_norm, "frozen", 3)
    assert len(first) == 3
    assert np.array_equal(obs_norm.rms.mean, before[0]) and np.array_equal(obs_norm.rms.var, before[1])
    assert obs_norm.rms.count == before[2]
    assert module.evaluate(agent, args, obs_norm, "frozen", 3) == first


@pytest.mark.parametrize("module", ON_POLICY, ids=IDS)
def test_load_policy_leaves_the_checkpoints_statistics_frozen(module):
    """The act() of load_policy normalises with the checkpoint's statistics and never updates them: the same
    observation gives the same action after many calls, and that action is HostPolicy's on the frozen statistics."""
    summary = module.main(tiny(module, env_id="Pendulum-v1", norm_obs=True, save_model=True))
    act = module.load_policy(summary["checkpoint"])
    ckpt = torch.load(summary["checkpoint"], weights_only=True)
    obs = np.random.default_rng(1).uniform(-1, 1, (5, 3)).astype(np.float32) * [1, 1, 8]
    first = act(obs)
    for _ in range(20):
        act(obs * 3 + 5)
    np.testing.assert_array_equal(act(obs), first)
    args = module.Args(**{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["args"].items()})
    agent = module.Agent(3, 1, False, args)
    agent.load_state_dict(ckpt["agent"])
    mean, var = ckpt["obs_rms"]["mean"].numpy(), ckpt["obs_rms"]["var"].numpy()
    normalised = np.clip((obs - mean) / np.sqrt(var + 1e-8), -10, 10).astype(np.float32)
    with torch.no_grad():
        expected = np.clip(agent.actor(torch.as_tensor(normalised)).numpy(), -2.0, 2.0)
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-6)


# ================================================================== the reward scaler's reset, through a run


def partial_returns(steps: int, gamma: float, horizon: int = 5) -> np.ndarray:
    """The running discounted return G_t = gamma G_{t-1} + 1 of each step of back-to-back episodes of `horizon`
    steps, reset at each episode's end: 1, 1 + gamma, ..., then 1 again."""
    return np.array([sum(gamma**j for j in range(t % horizon + 1)) for t in range(steps)])


@pytest.mark.parametrize("module", ON_POLICY, ids=IDS)
def test_reward_scaler_return_resets_at_a_truncation_in_a_run(module):
    """ToyTrunc-v0 pays 1 a step and ends only by truncation, after 5 steps. Resetting G at every episode end leaves
    the statistics of G those of the 1..5-step partial returns (mean 4.1 at gamma 0.9); resetting at terminations
    only would let G grow toward 1 / (1 - gamma) = 10 within a rollout. The statistics are read from the checkpoint."""
    gamma = 0.9
    summary = module.main(tiny(module, env_id="toy_envs:ToyTrunc-v0", gamma=gamma, norm_reward=True, save_model=True))
    rms = torch.load(summary["checkpoint"], weights_only=True)["return_rms"]
    num_envs = TINY[module]["num_envs"]
    steps = round((rms["count"] - 1e-4) / num_envs)  # every env steps every time: count = prior + steps * num_envs
    assert steps * num_envs >= TINY[module]["total_timesteps"]
    g = partial_returns(steps, gamma)
    np.testing.assert_allclose(float(rms["mean"]), g.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(rms["var"]), g.var(), rtol=1e-4)


# ======================================================================================== sac.py: sac_losses


def q_by_hand(qf, obs, action, detach=False):
    """Q_1(s, a) and Q_2(s, a) as two plain MLPs, each on its own slice of the stacked weights (relu between)."""
    out = []
    for i in range(2):
        x = torch.cat([obs, action], -1)
        for j, (w, b) in enumerate(zip(qf.weights, qf.biases, strict=True)):
            w, b = (w.detach(), b.detach()) if detach else (w, b)
            x = x @ w[i] + b[i, 0]
            x = torch.relu(x) if j < len(qf.weights) - 1 else x
        out.append(x[:, 0])
    return out


def sample_by_hand(actor, obs, eps):
    """a = bias + scale * tanh(u), u = mu + sigma eps; log pi(a|s) = log N(u; mu, sigma) - sum log(scale (1 - tanh(u)^2))."""
    mean, log_std = actor(obs)
    u = mean + log_std.exp() * eps
    scale, bias = actor.action_scale, actor.action_bias
    log_pi = Normal(mean, log_std.exp()).log_prob(u).sum(-1) - torch.log(scale * (1 - torch.tanh(u) ** 2)).sum(-1)
    return bias + scale * torch.tanh(u), log_pi


def sac_setup(autotune=True):
    torch.manual_seed(0)
    low, high = np.array([0.0, -3.0], np.float32), np.array([5.0, 1.0], np.float32)
    args = sac.Args(hidden_sizes=(16, 16))
    actor = sac.Actor(3, low, high, args).double()
    qf = sac.TwinQNetwork(3, 2, (16, 16), "relu").double()
    qf_target = sac.TwinQNetwork(3, 2, (16, 16), "relu").double().requires_grad_(False)
    with torch.no_grad():
        for t, q in zip(qf_target.parameters(), qf.parameters(), strict=True):
            t.copy_(q + 0.2 * torch.randn_like(q))  # a target that is not the critics themselves
    log_alpha = torch.tensor(math.log(0.3 if autotune else 0.2), dtype=F64, requires_grad=autotune)
    n = 64
    batch = (
        torch.randn(n, 3, dtype=F64),
        torch.as_tensor(low, dtype=F64) + torch.rand(n, 2, dtype=F64) * torch.as_tensor(high - low, dtype=F64),
        torch.randn(n, dtype=F64),
        (torch.rand(n, dtype=F64) < 0.3).double(),
        torch.randn(n, 3, dtype=F64),
    )
    return actor, qf, qf_target, log_alpha, batch


def sac_by_hand(actor, qf, qf_target, log_alpha, batch, gamma, target_entropy, seed, update_actor=True):
    """J_Q, J_pi and J(alpha) written out, with the noise sac_losses draws (a' at s' first, then a at s)."""
    obs, actions, rewards, terminations, next_obs = batch
    torch.manual_seed(seed)
    eps_next = torch.randn(len(obs), 2, dtype=F64)
    eps = torch.randn(len(obs), 2, dtype=F64)
    alpha = log_alpha.exp().detach()
    with torch.no_grad():
        next_a, next_log_pi = sample_by_hand(actor, next_obs, eps_next)
        y = rewards + gamma * (1 - terminations) * (torch.minimum(*q_by_hand(qf_target, next_obs, next_a)) - alpha * next_log_pi)
    q1, q2 = q_by_hand(qf, obs, actions)
    j_q = 0.5 * ((q1 - y) ** 2).mean() + 0.5 * ((q2 - y) ** 2).mean()
    if not update_actor:
        return dict(q1=q1, q2=q2, j_q=j_q)
    a, log_pi = sample_by_hand(actor, obs, eps)
    j_pi = (alpha * log_pi - torch.minimum(*q_by_hand(qf, obs, a, detach=True))).mean()
    j_alpha = (log_alpha.exp() * (-log_pi.detach() - target_entropy)).mean()
    return dict(q1=q1, q2=q2, j_q=j_q, j_pi=j_pi, j_alpha=j_alpha, alpha=alpha)


@pytest.mark.parametrize("autotune", [True, False], ids=["autotune", "fixed_alpha"])
def test_sac_losses_values_and_each_gradient_reaching_only_its_own_parameters(autotune):
    """The one-backward-pass sum J_Q + J_pi + J(alpha): its value and diagnostics against the three losses written
    here, and its gradient: in the critics' parameters that of J_Q alone (J_pi holds the critics fixed), in the actor's
    that of J_pi alone (the target y carries no gradient), in log alpha that of J(alpha) alone."""
    actor, qf, qf_target, log_alpha, batch = sac_setup(autotune)
    hp = dict(gamma=0.9, update_actor=True, autotune=autotune, target_entropy=-2.0)
    torch.manual_seed(7)
    loss, stats = sac.sac_losses(actor, qf, qf_target, log_alpha, batch, **hp)
    ref = sac_by_hand(actor, qf, qf_target, log_alpha, batch, 0.9, -2.0, seed=7)
    assert not torch.allclose(ref["q1"], ref["q2"])  # min over the twins matters
    expected = ref["j_q"] + ref["j_pi"] + (ref["j_alpha"] if autotune else 0.0)
    torch.testing.assert_close(loss, expected)
    want = {
        "losses/qf1_values": ref["q1"].mean(), "losses/qf2_values": ref["q2"].mean(), "losses/qf_loss": ref["j_q"],
        "losses/actor_loss": ref["j_pi"], "losses/alpha": ref["alpha"],
    } | ({"losses/alpha_loss": ref["j_alpha"]} if autotune else {})  # fmt: skip
    assert set(stats) == set(want) and not any(v.requires_grad for v in stats.values())
    for k, v in want.items():
        torch.testing.assert_close(stats[k], v.detach(), msg=k)

    actor_params, critic_params = list(actor.parameters()), list(qf.parameters())
    assert_grads_close(grads(loss, critic_params), grads(ref["j_q"], critic_params))
    assert_grads_close(grads(loss, actor_params), grads(ref["j_pi"], actor_params))
    assert max(g.abs().max().item() for g in grads(ref["j_pi"], actor_params)) > 1e-3
    if autotune:
        torch.testing.assert_close(grads(loss, [log_alpha])[0], grads(ref["j_alpha"], [log_alpha])[0])
        assert abs(grads(ref["j_alpha"], [log_alpha])[0].item()) > 1e-3
    loss.backward()
    assert all(p.grad is None for p in qf_target.parameters())


def test_sac_losses_without_the_actor_update_are_the_critic_loss_alone():
    actor, qf, qf_target, log_alpha, batch = sac_setup()
    torch.manual_seed(3)
    loss, stats = sac.sac_losses(actor, qf, qf_target, log_alpha, batch, gamma=0.9, update_actor=False, autotune=True, target_entropy=-2.0)
    ref = sac_by_hand(actor, qf, qf_target, log_alpha, batch, 0.9, -2.0, seed=3, update_actor=False)
    torch.testing.assert_close(loss, ref["j_q"])
    assert set(stats) == {"losses/qf1_values", "losses/qf2_values", "losses/qf_loss"}
    assert all(g.abs().max() == 0 for g in grads(loss, [*actor.parameters(), log_alpha]))
    assert_grads_close(grads(loss, list(qf.parameters())), grads(ref["j_q"], list(qf.parameters())))


def test_sac_losses_terminal_batch_regresses_on_the_reward_alone():
    """Every sample terminated: y = r, whatever the target critics and the actor say."""
    actor, qf, qf_target, log_alpha, batch = sac_setup()
    obs, actions, rewards, terminations, next_obs = batch
    q1, q2 = (q.detach() for q in q_by_hand(qf, obs, actions))
    terminal = (obs, actions, rewards, torch.ones_like(terminations), next_obs)
    _, stats = sac.sac_losses(actor, qf, qf_target, log_alpha, terminal, gamma=0.9, update_actor=False, autotune=True, target_entropy=-2.0)
    torch.testing.assert_close(stats["losses/qf_loss"], 0.5 * ((q1 - rewards) ** 2).mean() + 0.5 * ((q2 - rewards) ** 2).mean())


# ============================================================================ sac.py: the rest of the math


def test_soft_target_every_term_and_each_argument_in_its_place():
    """y = r + gamma (1 - d) (q - alpha log pi) with every input distinct, so that swapping any two shows."""
    r = torch.tensor([1.0, 2.0, -0.5, 0.25], dtype=F64)
    d = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=F64)
    q = torch.tensor([10.0, 20.0, 30.0, -4.0], dtype=F64)
    log_pi = torch.tensor([-1.0, 0.5, 2.0, 3.0], dtype=F64)
    y = sac.soft_target(r, d, q, log_pi, alpha=0.2, gamma=0.7)
    expected = [r[i].item() + 0.7 * (1 - d[i].item()) * (q[i].item() - 0.2 * log_pi[i].item()) for i in range(4)]
    torch.testing.assert_close(y, torch.tensor(expected, dtype=F64))
    alpha = torch.tensor(0.3, dtype=F64)
    y = sac.soft_target(r, d, q, log_pi, alpha=alpha, gamma=1.0)  # gamma = 1: no discount, the cut still there
    torch.testing.assert_close(y, r + (1 - d) * (q - 0.3 * log_pi))


def test_alpha_loss_value_and_gradient_by_hand():
    """J = mean(alpha (-log pi - target)): its value, dJ/d log alpha = alpha mean(-log pi - target), none to log pi."""
    log_alpha = torch.tensor(math.log(0.4), dtype=F64, requires_grad=True)
    log_pi = torch.tensor([-1.0, 0.5, 2.5, -3.0], dtype=F64, requires_grad=True)
    loss = sac.alpha_loss(log_alpha, log_pi, target_entropy=-1.5)
    per = [-lp + 1.5 for lp in (-1.0, 0.5, 2.5, -3.0)]
    assert loss.item() == pytest.approx(0.4 * sum(per) / 4, rel=1e-12)
    (g,) = torch.autograd.grad(loss, log_alpha)
    assert g.item() == pytest.approx(0.4 * sum(per) / 4, rel=1e-12)
    assert torch.autograd.grad(loss, log_pi, allow_unused=True)[0] is None  # log pi detached


def test_squashed_log_prob_with_a_non_unit_noise_and_scale_per_dimension():
    """log pi against torch.distributions (a TransformedDistribution of N(mu, sigma) by tanh and the affine map), per
    row, on three action dimensions with different scales."""
    torch.manual_seed(2)
    mean, log_std = torch.randn(8, 3, dtype=F64), 0.6 * torch.randn(8, 3, dtype=F64)
    eps = torch.randn(8, 3, dtype=F64) * 1.5
    u = mean + log_std.exp() * eps
    scale, bias = torch.tensor([0.5, 2.0, 3.0], dtype=F64), torch.tensor([0.0, 1.0, -2.0], dtype=F64)
    transforms = [torch.distributions.TanhTransform(), torch.distributions.AffineTransform(bias, scale)]
    dist = torch.distributions.TransformedDistribution(Normal(mean, log_std.exp()), transforms)
    a = bias + scale * torch.tanh(u)
    expected = dist.log_prob(a).sum(-1)
    torch.testing.assert_close(sac.squashed_log_prob(u, eps, log_std, scale), expected, rtol=1e-7, atol=1e-7)
    torch.manual_seed(9)
    got_a, got_log_pi = sac.sample_action(mean, log_std, scale, bias)
    torch.manual_seed(9)
    u = mean + log_std.exp() * torch.randn(8, 3, dtype=F64)
    torch.testing.assert_close(got_a, bias + scale * torch.tanh(u))
    torch.testing.assert_close(got_log_pi, dist.log_prob(got_a).sum(-1), rtol=1e-7, atol=1e-7)


def test_polyak_update_moves_every_tensor_of_the_target_only():
    torch.manual_seed(0)
    target, source = sac.TwinQNetwork(2, 1, (4,), "relu"), sac.TwinQNetwork(2, 1, (4,), "relu")
    t0, s0 = [p.detach().clone() for p in target.parameters()], [p.detach().clone() for p in source.parameters()]
    sac.soft_update(target, source, tau=0.25)
    for p, t, s in zip(target.parameters(), t0, s0, strict=True):
        torch.testing.assert_close(p.detach(), 0.75 * t + 0.25 * s)
    assert all(torch.equal(p.detach(), s) for p, s in zip(source.parameters(), s0, strict=True))
    one, two = torch.nn.Linear(3, 2), torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    for a, b in ((one, two), (two, one)):  # the first tensors pair up, then one module has more: a ValueError
        with pytest.raises(ValueError):
            sac.soft_update(a, b, tau=0.25)


# ===================================================================================== the normalisers


@pytest.mark.parametrize("module", ON_POLICY, ids=IDS)
def test_reward_scaler_scaled_rewards_by_hand(module):
    """r' = clip(r / sqrt(Var[G] + eps), -c, c), Var[G] over every running return so far (the prior of count 1e-4
    is below the tolerance), G reset to 0 after each episode end, terminated or truncated alike. eps and the clip are
    large so that where each sits shows; the returns after each step are checked too."""
    rewards = np.array([[1.0, 3.0], [2.0, -1.0], [1.0, 1.0], [0.5, 2.0], [-4.0, 0.0]])
    dones = np.array([[False, False], [True, False], [False, True], [False, False], [False, False]])
    gamma, eps, clip = 0.5, 0.3, 1.6
    scaler = module.RewardScaler(2, gamma=gamma, enabled=True, clip=clip, eps=eps)
    g, seen, outputs = np.zeros(2), [], []
    for r, d in zip(rewards, dones, strict=True):
        g = gamma * g + r
        seen.extend(g)
        w, n = 1e-4, len(seen)  # the prior: a pseudo-sample of weight 1e-4 at mean 0, variance 1
        mean = sum(seen) / (w + n)
        var = (w * (1.0 + mean**2) + sum((x - mean) ** 2 for x in seen)) / (w + n)
        expected = np.clip(r / np.sqrt(var + eps), -clip, clip)
        g = np.where(d, 0.0, g)
        out = scaler(r, d)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected, rtol=1e-6)
        np.testing.assert_allclose(scaler.returns, g, rtol=1e-12)
        outputs.extend(expected)
    assert (np.abs(outputs) == clip).any() and (np.abs(outputs) < clip).any()  # the clip binds, and not everywhere
    off = module.RewardScaler(2, gamma=gamma, enabled=False, clip=clip)
    out = off(np.array([5.0, -7.0]), np.array([True, False]))
    assert out.dtype == np.float32 and out.tolist() == [5.0, -7.0] and off.rms.count == 1e-4


@pytest.mark.parametrize("module", ON_POLICY, ids=IDS)
def test_obs_normalizer_output_update_flag_and_clip_by_hand(module):
    norm = module.ObsNormalizer((3,), True, clip=2.0, eps=0.25)
    norm.rms.mean, norm.rms.var, norm.rms.count = np.array([1.0, -2.0, 0.0]), np.array([4.0, 0.25, 1.0]), 10.0
    obs = np.array([[3.0, -2.5, 9.0], [-9.0, -1.0, 0.5]])
    expected = np.clip((obs - [1.0, -2.0, 0.0]) / np.sqrt(np.array([4.0, 0.25, 1.0]) + 0.25), -2.0, 2.0)
    out = norm(obs)
    assert out.dtype == np.float32 and norm.rms.count == 10.0
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert (np.abs(expected) == 2.0).any() and (np.abs(expected) < 2.0).any()
    out = norm(obs, update=True)  # the statistics first take in the batch, then normalise it
    data_mean = (10.0 * np.array([1.0, -2.0, 0.0]) + obs.sum(0)) / 12.0
    assert norm.rms.count == 12.0
    np.testing.assert_allclose(norm.rms.mean, data_mean, rtol=1e-12)
    np.testing.assert_allclose(out, np.clip((obs - norm.rms.mean) / np.sqrt(norm.rms.var + 0.25), -2, 2), rtol=1e-6)
    off = module.ObsNormalizer((3,), False, clip=2.0)
    out = off(obs, update=True)
    assert out.dtype == np.float32 and np.array_equal(out, obs.astype(np.float32)) and off.rms.count == 1e-4


@pytest.mark.parametrize("module", ON_POLICY, ids=IDS)
def test_running_mean_std_is_exactly_the_moments_of_prior_and_data(module):
    """Chan's update after batches of 1, 4 and 3 rows equals, to rounding, the mean and population variance of all the
    rows together with the prior (count 1e-4 at mean 0, variance 1) weighted in; the count adds up."""
    rng = np.random.default_rng(3)
    batches = [rng.normal(5.0, 3.0, (n, 2)) for n in (1, 4, 3)]
    rms = module.RunningMeanStd((2,))
    seen = []
    for b in batches:
        rms.update(b)
        seen.append(b)
        data, w = np.concatenate(seen), 1e-4
        mean = data.sum(0) / (w + len(data))
        var = (w * (1.0 + mean**2) + ((data - mean) ** 2).sum(0)) / (w + len(data))
        np.testing.assert_allclose(rms.mean, mean, rtol=1e-12)
        np.testing.assert_allclose(rms.var, var, rtol=1e-12)
        assert rms.count == pytest.approx(w + len(data), rel=1e-15)


def test_explained_variance_by_hand():
    y = torch.tensor([1.0, 2.0, 4.0, 7.0], dtype=F64)
    pred = torch.tensor([1.5, 1.0, 4.0, 6.0], dtype=F64)
    residual = (y - pred).numpy()
    assert ppo.explained_variance(pred, y) == pytest.approx(1 - residual.var() / y.numpy().var(), rel=1e-12)
    assert ppo.explained_variance(y, y) == 1.0
    assert ppo.explained_variance(torch.full_like(y, 3.5), y) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(ppo.explained_variance(pred, torch.full_like(y, 2.0)))
    y = torch.tensor([0.0, 1.0, 2.0], dtype=F64)  # Var[y] = 1 exactly: nothing special
    assert ppo.explained_variance(torch.tensor([0.5, 1.0, 1.5], dtype=F64), y) == pytest.approx(0.75, rel=1e-12)


# ============================================================================== HostPolicy's sampling


@pytest.mark.parametrize("module", ON_POLICY, ids=IDS)
def test_host_policy_gaussian_samples_at_a_non_zero_mean_and_non_unit_std(module):
    """mu = (1.5, -0.7), sigma = (e^-0.5, e^0.4): the samples' mean and spread per dimension, and log pi(a|s) of each
    returned sample against torch.distributions; V(s) against the critic."""
    np.random.seed(0)
    torch.manual_seed(0)
    agent = module.Agent(2, 2, False, module.Args(hidden_sizes=(8,)))
    with torch.no_grad():
        agent.actor.layers[-1].bias.copy_(torch.tensor([1.5, -0.7]))
        agent.actor_logstd.copy_(torch.tensor([[-0.5, 0.4]]))
    n = 40_000
    action, logprob, value = module.HostPolicy(agent).act(np.zeros((n, 2), np.float32))
    np.testing.assert_allclose(action.mean(0), [1.5, -0.7], atol=0.03)
    np.testing.assert_allclose(action.std(0), np.exp([-0.5, 0.4]), rtol=0.02)
    x = np.random.default_rng(1).normal(size=(64, 2)).astype(np.float32)
    action, logprob, value = module.HostPolicy(agent).act(x)
    with torch.no_grad():
        dist = Normal(agent.actor(torch.from_numpy(x)), agent.actor_logstd.exp())
        expected = dist.log_prob(torch.from_numpy(action)).sum(-1)
        v = agent.critic(torch.from_numpy(x))[:, 0]
    np.testing.assert_allclose(logprob, expected.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, v.numpy(), rtol=1e-5, atol=1e-6)
    assert action.shape == (64, 2) and logprob.shape == (64,) and value.shape == (64,)
    np.random.seed(5)  # the documented reparameterisation a = mu + sigma eps, eps from NumPy's global RNG
    action, _, _ = module.HostPolicy(agent).act(x)
    np.random.seed(5)
    eps = np.random.standard_normal((64, 2)).astype(np.float32)
    np.testing.assert_allclose(action, dist.loc.numpy() + dist.scale.numpy() * eps, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("module", ON_POLICY, ids=IDS)
def test_host_policy_categorical_frequencies_and_log_probs_even_at_huge_logits(module):
    """Action frequencies match softmax(logits); each sample's log pi(a|s) is torch.distributions'; and with logits in
    the hundreds (exp overflows float32) the log-softmax stays finite and right."""
    np.random.seed(2)
    torch.manual_seed(2)
    agent = module.Agent(2, 4, True, module.Args(hidden_sizes=(8,), policy_init_gain=1.0))
    for bias, atol in (([0.3, 1.0, -1.0, 0.0], 1e-5), ([500.0, 501.0, 499.5, 400.0], 1e-4)):  # float32 steps of 3e-5 at 500
        with torch.no_grad():
            agent.actor.layers[-1].bias.copy_(torch.tensor(bias))
        x = np.zeros((20_000, 2), np.float32)
        x[::2] = np.random.default_rng(0).normal(size=(10_000, 2))
        action, logprob, _ = module.HostPolicy(agent).act(x)
        with torch.no_grad():
            cat = Categorical(logits=agent.actor(torch.from_numpy(x)))
            expected = cat.log_prob(torch.from_numpy(action))
            probs = cat.probs[1::2].mean(0).numpy()
        assert np.isfinite(logprob).all()
        np.testing.assert_allclose(logprob, expected.numpy(), rtol=1e-5, atol=atol)
        np.testing.assert_allclose(np.bincount(action[1::2], minlength=4) / 10_000, probs, atol=0.02)
        assert action.min() >= 0 and action.max() <= 3


@pytest.mark.parametrize("module", ON_POLICY, ids=IDS)
def test_host_policy_inverse_cdf_sampling_at_the_edges(module):
    """Inverse-CDF sampling, the uniform draws given: u = 0 picks the first action, u just below each cumulative
    probability its action, and u just below 1 the last action even where the float32 probabilities sum to less
    than 1 (0.99999994 for these logits): never an index past the last action."""
    agent = module.Agent(2, 4, True, module.Args(hidden_sizes=(8,)))
    logits = np.array([2.7104106, 0.2820369, -2.2304978, -2.7651763], np.float32)
    with torch.no_grad():
        agent.actor.layers[-1].bias.copy_(torch.from_numpy(logits))
    cdf = np.cumsum(np.exp(logits.astype(np.float64)) / np.exp(logits.astype(np.float64)).sum())
    u = np.array([0.0, cdf[0] - 1e-6, cdf[0] + 1e-6, cdf[1] + 1e-6, cdf[2] + 1e-6, 1 - 1e-12])
    policy = module.HostPolicy(agent)
    rng = np.random.random_sample
    try:
        np.random.random_sample = lambda size: u.reshape(size)
        action, logprob, _ = policy.act(np.zeros((len(u), 2), np.float32))
    finally:
        np.random.random_sample = rng
    assert action.tolist() == [0, 0, 1, 2, 3, 3]
    np.testing.assert_allclose(logprob, np.log(np.diff(cdf, prepend=0.0))[action], rtol=1e-5)


# ================================================================================= ppo.py: losses in full


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "box"])
@pytest.mark.parametrize("norm_adv,clip_vloss", [(True, True), (False, False)])
def test_ppo_loss_value_gradient_and_diagnostics_against_torch_distributions(discrete, norm_adv, clip_vloss):
    """-L^CLIP + c1 L^VF - c2 H with the ratio from torch.distributions, advantages normalised per minibatch, the value
    clipped around V_old, and approx_kl (k3) and clipfrac by hand; ratios beyond the clip on both sides."""
    agent, x, actions, logprobs, _ = moved_agent(ppo, discrete, seed=1)
    advantages, returns = 2.0 * torch.randn(48, dtype=F64) + 1.0, torch.randn(48, dtype=F64)
    with torch.no_grad():
        old_values = agent.critic(x)[:, 0] + 0.5 * torch.randn(48, dtype=F64)
    hp = dict(norm_adv=norm_adv, clip_coef=0.2, clip_vloss=clip_vloss, ent_coef=0.05, vf_coef=0.7)
    loss, stats = ppo.ppo_loss(agent, x, actions, logprobs, advantages, returns, old_values, **hp)

    logp, entropy = log_prob_entropy(agent, x, actions)
    ratio = (logp - logprobs).exp()
    assert (ratio > 1.2).any() and (ratio < 0.8).any()
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8) if norm_adv else advantages
    pg = -torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv).mean()
    v = agent.critic(x)[:, 0]
    if clip_vloss:
        v_clipped = old_values + (v - old_values).clamp(-0.2, 0.2)
        assert ((v_clipped - returns) ** 2 > (v - returns) ** 2).any() and ((v_clipped - returns) ** 2 < (v - returns) ** 2).any()
        v_loss = 0.5 * torch.maximum((v - returns) ** 2, (v_clipped - returns) ** 2).mean()
    else:
        v_loss = 0.5 * ((v - returns) ** 2).mean()
    expected = pg + 0.7 * v_loss - 0.05 * entropy.mean()
    torch.testing.assert_close(loss, expected, rtol=1e-11, atol=1e-13)  # tight: the 1e-8 of std + 1e-8 shows
    params = list(agent.parameters())
    assert_grads_close(grads(loss, params), grads(expected, params))
    log_ratio = logp - logprobs
    want = dict(
        policy_loss=pg, value_loss=v_loss, entropy=entropy.mean(), approx_kl=((ratio - 1) - log_ratio).mean(),
        clipfrac=((ratio - 1).abs() > 0.2).double().mean(),
    )  # fmt: skip
    assert list(stats) == list(want) and not any(s.requires_grad for s in stats.values())
    for k, w in want.items():
        torch.testing.assert_close(stats[k].double(), w.detach(), msg=k)


@pytest.mark.parametrize("name", ["ppo", "a2c", "ppo_kl"])
def test_normalising_a_constant_batch_of_advantages_gives_zero_not_nan(name):
    """(A - mean) / (std + 1e-8) with every A equal is 0: no policy-gradient term, and no 0 / 0."""
    module = {"ppo": ppo, "a2c": a2c, "ppo_kl": ppo_kl}[name]
    agent, x, actions, logprobs, old_out = moved_agent(module, True, seed=6)
    adv, ret = torch.full((48,), 0.5, dtype=F64), torch.randn(48, dtype=F64)
    if module is ppo:
        loss, stats = ppo.ppo_loss(
            agent, x, actions, logprobs, adv, ret, ret, norm_adv=True, clip_coef=0.2, clip_vloss=False, ent_coef=0.0, vf_coef=0.0
        )
    elif module is a2c:
        loss, stats = a2c.a2c_loss(agent, x, actions, adv, ret, norm_adv=True, ent_coef=0.0, vf_coef=0.0)
    else:
        loss, stats = ppo_kl.ppo_kl_loss(
            agent, x, actions, logprobs, adv, ret, old_out, beta=torch.tensor(0.0, dtype=F64), norm_adv=True, ent_coef=0.0, vf_coef=0.0
        )
    assert torch.isfinite(loss) and abs(stats["policy_loss"].item()) < 1e-12
    assert all(g.abs().max() < 1e-12 for g in grads(loss, list(agent.parameters())))


def test_clipfrac_counts_only_ratios_strictly_beyond_the_clip():
    """clipfrac = mean(|r - 1| > eps), strict: with eps set to one sample's |r - 1| exactly, that sample is not counted."""
    agent, x, actions, logprobs, _ = moved_agent(ppo, True, seed=1)
    with torch.no_grad():  # the ratio as ppo_loss forms it, bit for bit: log pi(a|s) of the agent, minus log pi_old
        deviation = ((ppo.categorical_log_prob(agent.actor(x), actions) - logprobs).exp() - 1.0).abs()
    eps = deviation[0].item()
    zeros = torch.zeros(48, dtype=F64)
    _, stats = ppo.ppo_loss(
        agent, x, actions, logprobs, zeros, zeros, zeros, norm_adv=False, clip_coef=eps, clip_vloss=False, ent_coef=0.0, vf_coef=0.0
    )
    beyond = int((deviation > eps).sum())
    assert 0 < beyond < 47 and stats["clipfrac"].item() == pytest.approx(beyond / 48, rel=1e-6)


def test_clipped_surrogate_value_at_every_branch_by_hand():
    """min(r A, clip(r, 1 - eps, 1 + eps) A) per sample, eps = 0.25, each ratio/advantage pair a different branch."""
    ratio = torch.tensor([1.5, 0.5, 1.1, 0.6, 1.4, 0.9], dtype=F64)
    adv = torch.tensor([2.0, -1.0, -3.0, 0.5, -0.5, 1.5], dtype=F64)
    per = [min(r * a, min(max(r, 0.75), 1.25) * a) for r, a in zip(ratio.tolist(), adv.tolist(), strict=True)]
    assert ppo.clipped_surrogate_loss(ratio, adv, 0.25).item() == pytest.approx(-sum(per) / 6, rel=1e-12)


def test_value_loss_clipped_and_unclipped_by_hand():
    """1/2 mean of max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2), each sample a different branch (the
    clip binding up and down, the clipped term larger and smaller), and the unclipped 1/2 mean (V - R)^2."""
    new = torch.tensor([1.0, -0.5, 2.0, 0.3], dtype=F64)
    old = torch.tensor([0.5, 0.4, 1.0, 0.2], dtype=F64)
    ret = torch.tensor([2.0, -1.5, 0.0, 1.0], dtype=F64)
    eps = 0.3
    per, plain = [], []
    for n, o, r in zip(new.tolist(), old.tolist(), ret.tolist(), strict=True):
        clipped = o + min(max(n - o, -eps), eps)
        per.append(max((n - r) ** 2, (clipped - r) ** 2))
        plain.append((n - r) ** 2)
    assert ppo.value_loss(new, old, ret, eps).item() == pytest.approx(0.5 * sum(per) / 4, rel=1e-12)
    assert ppo.value_loss(new, old, ret, None).item() == pytest.approx(0.5 * sum(plain) / 4, rel=1e-12)
    x = new.clone().requires_grad_(True)
    ppo.value_loss(x, old, ret, None).backward()
    torch.testing.assert_close(x.grad, (new - ret) / 4)


# ========================================================================= reinforce.py, a2c.py, trpo.py


def test_reinforce_value_loss_by_hand():
    v, g = torch.tensor([1.0, -2.0, 0.5], dtype=F64), torch.tensor([3.0, -1.0, 0.0], dtype=F64)
    assert reinforce.value_loss(v, g).item() == pytest.approx((4.0 + 1.0 + 0.25) / 3, rel=1e-12)
    x = v.clone().requires_grad_(True)
    reinforce.value_loss(x, g).backward()
    torch.testing.assert_close(x.grad, 2 * (v - g) / 3)


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "box"])
def test_a2c_loss_with_normalised_advantages_by_hand(discrete):
    agent, x, actions, _, _ = moved_agent(a2c, discrete, seed=2)
    adv, ret = 3.0 * torch.randn(48, dtype=F64) + 2.0, torch.randn(48, dtype=F64)
    loss, stats = a2c.a2c_loss(agent, x, actions, adv, ret, norm_adv=True, ent_coef=0.02, vf_coef=0.25)
    logp, entropy = log_prob_entropy(agent, x, actions)
    a = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg, vf = -(a * logp).mean(), ((agent.critic(x)[:, 0] - ret) ** 2).mean()
    expected = pg + 0.25 * vf - 0.02 * entropy.mean()
    torch.testing.assert_close(loss, expected, rtol=1e-11, atol=1e-13)  # tight: the 1e-8 of std + 1e-8 shows
    params = list(agent.parameters())
    assert_grads_close(grads(loss, params), grads(expected, params))
    torch.testing.assert_close(torch.stack(list(stats.values())), torch.stack([pg, vf, entropy.mean()]).detach())


def test_a2c_approx_kl_is_k3_for_an_asymmetric_shift():
    """E[(r - 1) - log r] with log r = -shift: the shifts not symmetric, so that each term's sign shows."""
    torch.manual_seed(0)
    agent = a2c.Agent(4, 3, True, a2c.Args())
    obs, actions = torch.randn(6, 4), torch.randint(0, 3, (6,))
    logprobs = agent.get_action_and_value(obs, actions)[1].detach()
    shift = torch.tensor([0.5, 0.1, -0.2, 0.3, 0.0, 0.4])
    expected = sum(math.exp(-s) - 1 + s for s in shift.tolist()) / 6
    assert a2c.approx_kl(agent, obs, actions, logprobs + shift).item() == pytest.approx(expected, rel=1e-5)


def test_reward_to_go_of_a_single_step_and_a_single_env():
    """T = 1: G = r, plus gamma V(final obs) when that step was truncated."""
    one = lambda v: torch.tensor([[v]], dtype=F64)  # noqa: E731
    assert reinforce.reward_to_go(one(2.0), one(0.0), one(0.0), one(0.0), gamma=0.9).item() == 2.0
    assert reinforce.reward_to_go(one(2.0), one(0.0), one(1.0), one(3.0), gamma=0.9).item() == pytest.approx(2.0 + 0.9 * 3.0)
    assert reinforce.reward_to_go(one(2.0), one(1.0), one(1.0), one(3.0), gamma=0.9).item() == 2.0


def test_trpo_value_loss_by_hand():
    torch.manual_seed(0)
    agent = trpo.Agent(3, 2, True, trpo.Args(hidden_sizes=(4,))).double()
    obs, ret = torch.randn(5, 3, dtype=F64), torch.randn(5, dtype=F64)
    v = agent.critic(obs)[:, 0]
    expected = 0.5 * ((v - ret) ** 2).mean()
    loss = trpo.value_loss(agent, obs, ret)
    torch.testing.assert_close(loss, expected)
    assert_grads_close(grads(loss, list(agent.critic.parameters())), grads(expected, list(agent.critic.parameters())))


def test_line_search_tries_each_fraction_and_accepts_by_its_rules():
    """A scripted evaluate(): the parameters it is called at are theta_old + 0.5^i full_step; a try is accepted when
    KL <= max_kl (the boundary itself passes) and the surrogate strictly beats L(theta_old) (equal does not)."""
    theta = [torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=F64)), torch.nn.Parameter(torch.tensor([[-1.0]], dtype=F64))]
    full_step = torch.tensor([0.4, -0.8, 1.6], dtype=F64)
    theta_old = torch.tensor([1.0, 2.0, -1.0], dtype=F64)

    def scripted(outcomes):
        seen = []

        def evaluate():
            seen.append(torch.nn.utils.parameters_to_vector(theta).detach().clone())
            return outcomes[len(seen) - 1]

        return evaluate, seen

    hp = dict(max_kl=0.01, backtrack_coef=0.5, backtrack_iters=4)
    # try 1: KL too big; try 2: surrogate equal to the old one; try 3: KL exactly max_kl and better: accepted
    evaluate, seen = scripted([(5.0, 0.02), (1.0, 0.001), (1.5, 0.01), (9.0, 0.0)])
    search = trpo.line_search(theta, evaluate, full_step, 1.0, **hp)
    assert search == {"accepted": True, "tries": 3, "fraction": 0.25, "surrogate": 1.5, "kl": 0.01}
    assert len(seen) == 3
    for i, at in enumerate(seen):
        torch.testing.assert_close(at, theta_old + 0.5**i * full_step)
    torch.testing.assert_close(torch.nn.utils.parameters_to_vector(theta).detach(), theta_old + 0.25 * full_step)
    # none acceptable: every try is made, then theta_old exactly
    evaluate, seen = scripted([(2.0, 0.5), (0.5, 0.0), (2.0, 0.011), (1.0, 0.0)])
    with torch.no_grad():
        for p, v in zip(theta, (torch.tensor([1.0, 2.0], dtype=F64), torch.tensor([[-1.0]], dtype=F64)), strict=True):
            p.copy_(v)
    search = trpo.line_search(theta, evaluate, full_step, 1.0, **hp)
    assert search == {"accepted": False, "tries": 4, "fraction": 0.0, "surrogate": 1.0, "kl": 0.0}
    assert len(seen) == 4 and torch.equal(torch.nn.utils.parameters_to_vector(theta).detach(), theta_old)


def test_conjugate_gradient_stops_once_the_residual_is_below_the_tolerance():
    """On a diagonal system CG is exact after one iteration per distinct eigenvalue; once |r|^2 < residual_tol it
    must not take another step (which would divide 0 by 0); and fewer iterations than needed leave a residual."""
    h = torch.diag(torch.tensor([1.0, 1.0, 4.0, 4.0], dtype=F64))
    b = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=F64)
    calls = []

    def fvp(v):
        calls.append(v.clone())
        return h @ v

    x = trpo.conjugate_gradient(fvp, b, iters=10)
    torch.testing.assert_close(x, torch.linalg.solve(h, b), rtol=1e-12, atol=1e-12)
    assert len(calls) == 2 and torch.isfinite(x).all()
    torch.testing.assert_close(calls[0], b)  # the first direction is the residual b
    one = trpo.conjugate_gradient(lambda v: h @ v, b, iters=1)
    alpha = (b @ b) / (b @ h @ b)  # the exact line minimiser along b
    torch.testing.assert_close(one, alpha * b)
    loose = trpo.conjugate_gradient(lambda v: h @ v, b, iters=10, residual_tol=(b @ b).item() * 1.0001)
    assert torch.equal(loose, torch.zeros_like(b))  # |b|^2 below the tolerance: no step at all
    at = trpo.conjugate_gradient(lambda v: h @ v, b, iters=1, residual_tol=(b @ b).item())
    torch.testing.assert_close(at, alpha * b)  # |r|^2 equal to the tolerance is not below it: one step


def test_max_step_size_and_direction_by_hand():
    s = torch.tensor([1.0, -2.0], dtype=F64)
    hs = torch.tensor([3.0, -1.0], dtype=F64)  # s^T H s = 3 + 2 = 5
    torch.testing.assert_close(trpo.max_step(s, hs, max_kl=0.1), math.sqrt(2 * 0.1 / 5) * s)
    s, hs = torch.tensor([0.1, 0.2], dtype=F64), torch.tensor([0.3, 0.1], dtype=F64)  # s^T H s = 0.05, below 1
    torch.testing.assert_close(trpo.max_step(s, hs, max_kl=0.1), math.sqrt(2 * 0.1 / 0.05) * s)


def kl_of_flat_params(theta, agent, x, old_out):
    """Mean KL(pi_old || pi_theta) of a one-hidden-layer tanh Box policy written out from its flat parameters (in
    the order of named_parameters without the critic's), by torch.distributions."""
    names = [(n, p.shape) for n, p in agent.named_parameters() if not n.startswith("critic.")]
    w = dict(zip([n for n, _ in names], torch.split(theta, [math.prod(s) for _, s in names]), strict=True))
    shapes = dict(names)
    h = torch.tanh(x @ w["actor.layers.0.weight"].view(shapes["actor.layers.0.weight"]).T + w["actor.layers.0.bias"])
    out = h @ w["actor.layers.1.weight"].view(shapes["actor.layers.1.weight"]).T + w["actor.layers.1.bias"]
    old = Normal(old_out, math.exp(-0.3))
    return kl_divergence(old, Normal(out, w["actor_logstd"].exp().expand_as(out))).sum(-1).mean()


@pytest.mark.parametrize("fvp_subsample", [1, 3])
def test_trpo_update_takes_the_natural_gradient_step_to_the_trust_region_edge(fvp_subsample):
    """With H the explicit Hessian of the mean KL (on every fvp_subsample-th sample) and g the gradient of the surrogate
    E[pi/pi_old A], both by autograd of code written here, the step taken is fraction * sqrt(2 delta / s^T H' s) s,
    s = H'^-1 g, H' = H + damping I, fraction = 0.5^(tries - 1); and every diagnostic is what it says, measured here."""
    torch.manual_seed(3)
    agent = trpo.Agent(3, 3, False, trpo.Args(hidden_sizes=(4,), policy_init_gain=1.0, init_logstd=-0.3)).double()
    params = [p for n, p in agent.named_parameters() if not n.startswith("critic.")]
    x = torch.randn(30, 3, dtype=F64)
    with torch.no_grad():
        old_out = agent.actor(x)
        old = Normal(old_out, math.exp(-0.3))
        actions = old.sample()
        logprobs = old.log_prob(actions).sum(-1)
    advantages = torch.randn(30, dtype=F64)
    critic_before = [p.detach().clone() for p in agent.critic.parameters()]
    theta_old = torch.nn.utils.parameters_to_vector(params).detach().clone()
    n = theta_old.numel()

    def surrogate_of(agent_):
        out = agent_.actor(x)
        logp = Normal(out, agent_.actor_logstd.exp().expand_as(out)).log_prob(actions).sum(-1)
        return ((logp - logprobs).exp() * advantages).mean()

    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(surrogate_of(agent), params)])
    sub = slice(None, None, fvp_subsample)
    h = torch.autograd.functional.hessian(lambda t: kl_of_flat_params(t, agent, x[sub], old_out[sub]), theta_old)
    h_damped = h + 0.1 * torch.eye(n, dtype=F64)
    s = torch.linalg.solve(h_damped, g)
    full_step = math.sqrt(2 * 0.005 / (s @ h_damped @ s).item()) * s
    surrogate_old = surrogate_of(agent).item()

    hp = dict(max_kl=0.005, damping=0.1, cg_iters=n, backtrack_coef=0.5, backtrack_iters=10, fvp_subsample=fvp_subsample)
    stats = trpo.trpo_update(agent, params, x, actions, logprobs, advantages, **hp)
    assert stats["line_search_success"] == 1.0
    fraction = 0.5 ** (stats["line_search_steps"] - 1)
    step = torch.nn.utils.parameters_to_vector(params).detach() - theta_old
    # CG stops once |r|^2 < 1e-10: the step is H'^-1 g to about 1e-5 of its length
    assert torch.linalg.vector_norm(step - fraction * full_step) <= 1e-3 * torch.linalg.vector_norm(fraction * full_step)
    assert all(torch.equal(p, q) for p, q in zip(agent.critic.parameters(), critic_before, strict=True))

    with torch.no_grad():
        out = agent.actor(x)
        new = Normal(out, agent.actor_logstd.exp().expand_as(out))
        kl = kl_divergence(old, new).sum(-1).mean().item()
        logp = new.log_prob(actions).sum(-1)
        surrogate_new = ((logp - logprobs).exp() * advantages).mean().item()
        approx = (((logp - logprobs).exp() - 1) - (logp - logprobs)).mean().item()
        entropy = new.entropy().sum(-1).mean().item()
    assert 0 < kl <= 0.005
    expected = {
        "policy_loss": -surrogate_new, "entropy": entropy, "approx_kl": approx, "kl": kl,
        "surrogate_improvement": surrogate_new - surrogate_old, "expected_improvement": (g @ step).item(),
        "line_search_steps": stats["line_search_steps"], "line_search_success": 1.0,
    }  # fmt: skip
    assert list(stats) == list(expected)
    for k, v in expected.items():
        assert stats[k] == pytest.approx(v, rel=1e-6, abs=1e-12), k
    assert stats["surrogate_improvement"] > 0 and stats["expected_improvement"] > 0


# ====================================================================== the GPU, where it can be checked


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: on the CPU every tensor is a host tensor already")
@pytest.mark.parametrize("module", [*ON_POLICY, sac], ids=[*IDS, "sac"])
def test_train_resume_evaluate_and_load_policy_on_the_gpu(module):
    """What test_no_numpy_* check as text, as behaviour: with --cuda every path that hands a tensor to NumPy (acting,
    the statistics, checkpoints, the RNG state on resume, evaluation, load_policy) runs, and a .numpy() on a CUDA
    tensor would raise."""
    args = tiny(module, cuda=True, save_model=True, eval_episodes=1, **({} if module is sac else {"env_id": "Pendulum-v1"}))
    summary = module.main(args)
    ckpt = summary["checkpoint"]
    resumed = module.main(module.Args(**{**vars(args), "resume": ckpt, "total_timesteps": 2 * args.total_timesteps, "eval_episodes": 0}))
    assert resumed["global_step"] >= 2 * args.total_timesteps
    again = module.main(module.Args(**{**vars(args), "eval_checkpoint": ckpt, "save_model": False}))
    assert len(again["eval_returns"]) == 1
    act = module.load_policy(ckpt)
    assert np.shape(act(np.zeros(3, np.float32))) == (1,)
