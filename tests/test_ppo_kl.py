"""ppo_kl.py: the beta rule on every branch and boundary, the analytic KLs against Monte-Carlo estimates, the
penalised loss against an independent computation; smoke runs, beta adapting and surviving a resume,
determinism, checkpoints and bad input."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import COMMON_BAD, assert_bad_input, assert_refuses_bad_checkpoints, read_metrics
from torch.distributions import Categorical, Normal, kl_divergence

import ppo_kl
import trpo

TINY = dict(num_envs=2, num_steps=64, num_minibatches=2, update_epochs=2, total_timesteps=256, progress_every=0.0, eval_episodes=1)
METRICS = [
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/SPS",
    "charts/learning_rate",
    "losses/policy_loss",
    "losses/value_loss",
    "losses/entropy",
    "losses/approx_kl",
    "losses/kl",
    "losses/beta",
    "losses/explained_variance",
]


def tiny(**kw) -> ppo_kl.Args:
    return ppo_kl.Args(**{**TINY, "env_id": "CartPole-v1", **kw})


# ---------------------------------------------------------------------------------------- beta rule


@pytest.mark.parametrize("tolerance,factor", [(1.5, 2.0), (2.0, 3.0)])
def test_adapt_beta_branches_and_strict_boundaries(tolerance, factor):
    """d < d_targ / tol: beta / factor; d > d_targ * tol: beta * factor; otherwise unchanged. The boundaries
    themselves leave beta alone (the paper's strict inequalities); one ulp beyond them changes it."""
    target, beta = 0.01, 0.7
    low, high = target / tolerance, target * tolerance
    adapt = lambda d: ppo_kl.adapt_beta(beta, d, kl_target=target, tolerance=tolerance, factor=factor)  # noqa: E731
    assert adapt(0.0) == beta / factor
    assert adapt(low * 0.5) == beta / factor
    assert adapt(math.nextafter(low, 0.0)) == beta / factor
    assert adapt(low) == beta
    assert adapt(target) == beta
    assert adapt(high) == beta
    assert adapt(math.nextafter(high, 1.0)) == beta * factor
    assert adapt(10 * high) == beta * factor


def test_adapt_beta_defaults_are_the_papers():
    assert ppo_kl.adapt_beta(1.0, 0.016, kl_target=0.01) == 2.0  # > 1.5 d_targ
    assert ppo_kl.adapt_beta(1.0, 0.006, kl_target=0.01) == 0.5  # < d_targ / 1.5
    assert ppo_kl.adapt_beta(1.0, 0.014, kl_target=0.01) == 1.0
    args = ppo_kl.Args()
    assert (args.kl_target, args.init_beta, args.kl_tolerance, args.beta_factor) == (0.01, 1.0, 1.5, 2.0)


# ---------------------------------------------------------------------------------------- analytic KL


@pytest.mark.parametrize("module", [ppo_kl, trpo], ids=["ppo_kl", "trpo"])
def test_categorical_kl_matches_monte_carlo(module):
    """KL(p || q) = E_{x~p}[log p(x) - log q(x)], estimated from 400k samples (standard error ~1e-3)."""
    torch.manual_seed(0)
    logits_p, logits_q = torch.randn(3, 5) * 1.5, torch.randn(3, 5) * 1.5
    p, q = Categorical(logits=logits_p), Categorical(logits=logits_q)
    x = p.sample((400_000,))
    monte_carlo = (p.log_prob(x) - q.log_prob(x)).mean(0)
    analytic = module.categorical_kl(logits_p, logits_q)
    torch.testing.assert_close(analytic, monte_carlo, atol=0.01, rtol=0.01)
    torch.testing.assert_close(analytic, kl_divergence(p, q))
    assert torch.all(module.categorical_kl(logits_p, logits_p).abs() < 1e-6)


@pytest.mark.parametrize("module", [ppo_kl, trpo], ids=["ppo_kl", "trpo"])
def test_gaussian_kl_matches_monte_carlo(module):
    """KL of diagonal Gaussians summed over 3 action dimensions, against E_{a~p}[log p(a) - log q(a)]."""
    torch.manual_seed(1)
    mean_p, mean_q = torch.randn(4, 3), torch.randn(4, 3)
    logstd_p, logstd_q = torch.randn(4, 3) * 0.3, torch.randn(4, 3) * 0.3
    p, q = Normal(mean_p, logstd_p.exp()), Normal(mean_q, logstd_q.exp())
    a = p.sample((400_000,))
    monte_carlo = (p.log_prob(a) - q.log_prob(a)).sum(-1).mean(0)
    analytic = module.gaussian_kl(mean_p, logstd_p, mean_q, logstd_q)
    torch.testing.assert_close(analytic, monte_carlo, atol=0.03, rtol=0.02)
    torch.testing.assert_close(analytic, kl_divergence(p, q).sum(-1))
    # KL is not symmetric: the direction matters, and kl_divergence() takes pi_old first
    reverse = module.gaussian_kl(mean_q, logstd_q, mean_p, logstd_p)
    assert not torch.allclose(analytic, reverse)
    old, new = torch.cat([mean_p, logstd_p], -1), torch.cat([mean_q, logstd_q], -1)
    torch.testing.assert_close(module.kl_divergence(old, new, False), analytic)


# ---------------------------------------------------------------------------------------- the loss


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "box"])
def test_penalised_loss_matches_an_independent_computation(discrete):
    """-(E[r A] - beta KL(pi_old || pi)) + c1 1/2 E[(V - R)^2] - c2 H, with the policy moved away from pi_old,
    against torch.distributions."""
    torch.manual_seed(2)
    args = ppo_kl.Args(hidden_sizes=(8,), policy_init_gain=1.0)
    agent = ppo_kl.Agent(4, 3, discrete, args)
    x = torch.randn(32, 4)
    with torch.no_grad():
        old_dist = ppo_kl.dist_params(agent, x)
        actions, logprobs, _, _ = agent.get_action_and_value(x)
        for p in agent.actor.parameters():
            p.add_(0.1 * torch.randn_like(p))  # pi_theta != pi_old
        if not discrete:
            agent.actor_logstd.fill_(-0.2)
    advantages, returns, beta = torch.randn(32), torch.randn(32), 0.7
    hp = dict(norm_adv=False, ent_coef=0.01, vf_coef=0.5)
    loss, stats = ppo_kl.ppo_kl_loss(agent, x, actions, logprobs, advantages, returns, old_dist, beta=torch.tensor(beta), **hp)

    out = agent.actor(x)
    if discrete:
        old, new = Categorical(logits=old_dist), Categorical(logits=out)
        kl, logp, entropy = kl_divergence(old, new), new.log_prob(actions), new.entropy()
    else:
        old = Normal(old_dist[:, :3], old_dist[:, 3:].exp())
        new = Normal(out, agent.actor_logstd.exp().expand_as(out))
        kl, logp, entropy = (t.sum(-1) for t in (kl_divergence(old, new), new.log_prob(actions), new.entropy()))
    assert kl.mean() > 1e-3
    pg_loss = -((logp - logprobs).exp() * advantages).mean() + beta * kl.mean()
    v_loss = 0.5 * ((agent.get_value(x) - returns) ** 2).mean()
    expected = pg_loss + 0.5 * v_loss - 0.01 * entropy.mean()
    torch.testing.assert_close(loss, expected)
    assert list(stats) == ["policy_loss", "value_loss", "entropy", "approx_kl"]
    torch.testing.assert_close(
        torch.stack([stats["policy_loss"], stats["value_loss"], stats["entropy"]]), torch.stack([pg_loss, v_loss, entropy.mean()]).detach()
    )
    assert not any(v.requires_grad for v in stats.values())


def test_penalty_has_no_gradient_at_pi_old():
    """KL(pi_old || pi_theta) is minimal at theta_old: there the penalty adds nothing to the policy gradient,
    whatever beta (its pull only starts once the policy has moved)."""
    torch.manual_seed(3)
    agent = ppo_kl.Agent(4, 2, False, ppo_kl.Args(hidden_sizes=(8,)))
    x = torch.randn(16, 4)
    with torch.no_grad():
        old_dist = ppo_kl.dist_params(agent, x)
        actions, logprobs, _, _ = agent.get_action_and_value(x)
    hp = dict(norm_adv=True, ent_coef=0.0, vf_coef=0.0)
    grads = []
    for beta in (0.0, 100.0):
        agent.zero_grad()
        advantages = torch.randn(16, generator=torch.Generator().manual_seed(0))
        loss, _ = ppo_kl.ppo_kl_loss(agent, x, actions, logprobs, advantages, torch.zeros(16), old_dist, beta=torch.tensor(beta), **hp)
        loss.backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in agent.actor.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


# ---------------------------------------------------------------------------------------------- smoke


@pytest.mark.parametrize("env_id", ["Hopper-v5", "CartPole-v1"])
def test_smoke_reaches_updates_and_logs_every_metric(env_id, capsys):
    summary = ppo_kl.main(ppo_kl.Args(**{**TINY, "env_id": env_id}))
    records = read_metrics(summary["run_dir"])
    assert set(METRICS) <= {k for r in records for k in r}
    updates = [r for r in records if "losses/beta" in r]
    assert len(updates) == 2 and summary["global_step"] == 256
    assert updates[0]["losses/beta"] == 1.0 and updates[0]["losses/kl"] > 0
    discrete = env_id == "CartPole-v1"
    assert f"norm_obs={not discrete}, norm_reward={not discrete}" in capsys.readouterr().out


@pytest.mark.parametrize("kl_target,change", [(10.0, 0.5), (1e-9, 2.0)], ids=["kl_below_target", "kl_above_target"])
def test_beta_follows_the_measured_kl_in_training(kl_target, change):
    """A target far above any KL the epochs produce halves beta every iteration; one far below doubles it."""
    records = read_metrics(ppo_kl.main(tiny(kl_target=kl_target, init_beta=3.0, total_timesteps=512, eval_episodes=0))["run_dir"])
    betas = [r["losses/beta"] for r in records if "losses/beta" in r]
    assert betas == [3.0 * change**i for i in range(4)]


def test_beta_is_saved_and_restored_on_resume():
    """The checkpoint holds the beta the next iteration will use, and a resumed run starts from it."""
    args = tiny(kl_target=1e-9, save_model=True, eval_episodes=0)
    summary = ppo_kl.main(args)
    ckpt = torch.load(summary["checkpoint"], weights_only=True)
    assert ckpt["beta"] == 4.0  # 1 -> 2 -> 4 after two iterations
    resumed = ppo_kl.main(replace(args, resume=summary["checkpoint"], total_timesteps=512))
    assert resumed["global_step"] == 512
    records = [r for r in read_metrics(summary["run_dir"]) if "losses/beta" in r]
    assert [r["global_step"] for r in records] == [128, 256, 384, 512]
    assert [r["losses/beta"] for r in records] == [1.0, 2.0, 4.0, 8.0]


def test_same_seed_same_numbers():
    def numbers(seed=1):
        records = read_metrics(ppo_kl.main(tiny(seed=seed, eval_episodes=2))["run_dir"])
        return [{k: v for k, v in r.items() if k != "charts/SPS"} for r in records]

    first = numbers()
    assert first == numbers()
    assert first != numbers(seed=2)


def test_save_then_eval_checkpoint_reproduces_the_evaluation():
    summary = ppo_kl.main(ppo_kl.Args(**{**TINY, "env_id": "Hopper-v5", "save_model": True, "eval_episodes": 2}))
    again = ppo_kl.main(ppo_kl.Args(env_id="Hopper-v5", eval_checkpoint=summary["checkpoint"], eval_episodes=2))
    assert again["eval_returns"] == summary["eval_returns"]


# ------------------------------------------------------------------------------------------ bad input

BAD = COMMON_BAD + [
    (dict(kl_target=0.0), "--kl-target and --init-beta must be positive"),
    (dict(init_beta=-1.0), "--kl-target and --init-beta must be positive"),
    (dict(kl_tolerance=1.0), "--kl-tolerance and --beta-factor must be greater than 1"),
    (dict(beta_factor=0.5), "--kl-tolerance and --beta-factor must be greater than 1"),
    (dict(num_minibatches=3), "--num-minibatches 3 does not divide the batch"),
    (dict(total_timesteps=100), "--total-timesteps 100 is smaller than one batch"),
    (dict(env_id="toy_envs:ToyDict-v0"), "observation space"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_fails_with_one_line(overrides, message):
    assert_bad_input(ppo_kl, tiny(**overrides), message)


def test_bad_checkpoints(tmp_path):
    assert_refuses_bad_checkpoints(ppo_kl, tiny, tmp_path, "CartPole-v1", "Acrobot-v1")


def test_target_kl_keeps_its_early_stop_meaning():
    """--target-kl is ppo.py's early stop, not d_targ: once the approximate KL passes it, the epochs stop. Two
    iterations x 2 epochs x 2 minibatches are 8 Adam steps; stopping after each first epoch leaves 4."""
    steps = []
    for target_kl in (None, 1e-12):
        summary = ppo_kl.main(tiny(target_kl=target_kl, save_model=True, eval_episodes=0))
        steps.append(int(torch.load(summary["checkpoint"], weights_only=True)["optimizer"]["state"][0]["step"]))
    assert steps == [8, 4]


def test_compile_flag_runs_without_falling_back(capsys):
    summary = ppo_kl.main(tiny(compile=True, total_timesteps=128, eval_episodes=0))
    assert summary["global_step"] == 128
    assert "torch.compile failed" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- learning


def test_learns_cartpole():
    """PPO-KL clears a floor on CartPole-v1 at 50k steps (~15 s on one core), with ppo.py's learning check's
    settings (4 envs x 128 steps, 4 minibatches, 4 epochs, lr 2.5e-4 annealed, ent 0.01) and the paper's
    d_targ = 0.01, beta_0 = 1.

    PPO-KL has no Stable-Baselines3 peer: the reference is ppo.py at the same budget, flags and seeds.
    Calibrated offline with `python benchmark/calibrate.py ppo-kl-cartpole --seeds 10` (results in
    benchmark/results/calibration_ppo-kl-cartpole.jsonl; ppo.py's in calibration_ppo-cartpole.jsonl).
    Return = mean of the last 100 training episodes / deterministic evaluation over 10 episodes:

        seed   ours (PPO-KL)   ppo.py (PPO-Clip)
        1      205 / 434       183 / 432
        2      230 / 433       222 / 464
        3      239 / 463       202 / 453
        4      254 / 500       188 / 417
        5      237 / 491       231 / 440
        6      224 / 481       204 / 446
        7      238 / 388       274 / 491
        8      209 / 396       209 / 371
        9      227 / 462       245 / 478
        10     219 / 495       198 / 464
        mean   228 / 454       216 / 446

    Normalised as the PPO paper's Table 1, (R - R_random) / (R_max - R_random) with R_random = 22, R_max = 500:
    PPO-KL 0.43 / 0.91, PPO-Clip 0.41 / 0.89 (the paper, over 7 MuJoCo tasks: 0.74 against 0.82). At this
    learning rate the epochs' KL stays under d_targ / 1.5, so beta halves every iteration and the penalty fades:
    this check covers the loop; test_beta_follows_the_measured_kl_in_training covers the rule in training.

    Floors: last-100 mean >= 180 and evaluation >= 330, cleared by 10 of our 10 seeds. The test runs seed 1,
    the weakest of them on the last-100 metric.
    """
    summary = ppo_kl.main(
        ppo_kl.Args(
            env_id="CartPole-v1",
            seed=1,
            total_timesteps=50_000,
            num_envs=4,
            num_steps=128,
            num_minibatches=4,
            update_epochs=4,
            learning_rate=2.5e-4,
            ent_coef=0.01,
            eval_episodes=10,
            progress_every=1e9,
        )
    )
    assert np.mean(summary["episodic_returns"][-100:]) >= 180
    assert np.mean(summary["eval_returns"]) >= 330
