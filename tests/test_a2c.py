"""a2c.py: n-step and one-step advantages, the loss and the TensorFlow-style RMSprop against independent answers,
the truncation bootstrap on tiny envs with known answers, smoke runs that reach real updates, determinism,
checkpoints, bad input, and a calibrated learning check."""

import glob
import math
import os
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import COMMON_BAD, ROOT, assert_bad_input, assert_refuses_bad_checkpoints, read_metrics

import a2c

TINY = dict(num_envs=2, num_steps=8, total_timesteps=64, progress_every=0.0, eval_episodes=1)
METRICS = [
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/SPS",
    "charts/learning_rate",
    "losses/policy_loss",
    "losses/value_loss",
    "losses/entropy",
    "losses/approx_kl",
    "losses/explained_variance",
]


def tiny(**kw) -> a2c.Args:
    return a2c.Args(**{**TINY, "env_id": "CartPole-v1", **kw})


# ------------------------------------------------------------------------------------------ advantages

# One env, three steps, gamma = 0.9: r = (1, 2, 3), V(s_0..s_2) = (0.5, 0.4, 0.3), V(s_3) = 2 after the rollout.
REWARDS, VALUES = (1.0, 2.0, 3.0), (0.5, 0.4, 0.3)


def advantages(next_values, terminations, dones, lam):
    col = lambda x: torch.tensor(x, dtype=torch.float64).unsqueeze(-1)  # noqa: E731
    adv, ret = a2c.compute_gae(col(REWARDS), col(VALUES), col(next_values), col(terminations), col(dones), 0.9, lam)
    return adv.flatten().tolist(), ret.flatten().tolist()


def test_lambda_one_is_the_n_step_return():
    # A_0 = 1 + .9 * 2 + .81 * 3 + .729 * 2 - .5;  A_1 = 2 + .9 * 3 + .81 * 2 - .4;  A_2 = 3 + .9 * 2 - .3
    adv, ret = advantages((0.4, 0.3, 2.0), (0, 0, 0), (0, 0, 0), 1.0)
    assert adv == pytest.approx([6.188, 5.92, 4.5])
    assert ret == pytest.approx([6.688, 6.32, 4.8])


def test_n_step_return_bootstraps_at_truncation_and_cuts_at_termination():
    """The episode ends at step 1 and a new one starts at step 2; V(final obs of step 1) = 5."""
    # truncated: A_0 = 1 + .9 * 2 + .81 * 5 - .5;  A_1 = 2 + .9 * 5 - .4;  A_2 unchanged
    adv, _ = advantages((0.4, 5.0, 2.0), (0, 0, 0), (0, 1, 0), 1.0)
    assert adv == pytest.approx([6.35, 6.1, 4.5])
    # terminated: A_0 = 1 + .9 * 2 - .5;  A_1 = 2 - .4
    adv, _ = advantages((0.4, 5.0, 2.0), (0, 1, 0), (0, 1, 0), 1.0)
    assert adv == pytest.approx([2.3, 1.6, 4.5])


def test_lambda_zero_is_the_one_step_td_advantage():
    # A_t = r_t + .9 V(s_{t+1}) - V(s_t): 1 + .36 - .5, 2 + .27 - .4, 3 + 1.8 - .3; target R_t = r_t + .9 V(s_{t+1})
    adv, ret = advantages((0.4, 0.3, 2.0), (0, 0, 0), (0, 0, 0), 0.0)
    assert adv == pytest.approx([0.86, 1.87, 4.5])
    assert ret == pytest.approx([1.36, 2.27, 4.8])


# ---------------------------------------------------------------------------------------------- loss


@pytest.mark.parametrize("discrete", [True, False])
def test_a2c_loss_matches_torch_distributions(discrete):
    """L = -mean(log pi(a|s) A) + c_v mean((V - R)^2) - c_e mean(H), scored with torch.distributions; the
    gradient reaches the critic only through c_v (V - R)^2: R is a constant."""
    torch.manual_seed(0)
    agent = a2c.Agent(4, 3, discrete, a2c.Args(init_logstd=-0.2))
    obs, adv, ret = torch.randn(6, 4), torch.randn(6), torch.randn(6)
    actions = torch.randint(0, 3, (6,)) if discrete else torch.randn(6, 3)
    loss, stats = a2c.a2c_loss(agent, obs, actions, adv, ret, norm_adv=False, ent_coef=0.01, vf_coef=0.5)
    logits_or_mean, value = agent.actor(obs), agent.critic(obs).squeeze(-1)
    if discrete:
        dist = torch.distributions.Categorical(logits=logits_or_mean)
        logprob, entropy = dist.log_prob(actions), dist.entropy()
    else:
        dist = torch.distributions.Normal(logits_or_mean, agent.actor_logstd.exp())
        logprob, entropy = dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)
    pg, vf, ent = -(logprob * adv).mean(), ((value - ret) ** 2).mean(), entropy.mean()
    torch.testing.assert_close(stats, {"policy_loss": pg.detach(), "value_loss": vf.detach(), "entropy": ent.detach()})
    assert not any(v.requires_grad for v in stats.values())
    torch.testing.assert_close(loss, pg + 0.5 * vf - 0.01 * ent)
    critic_grads = torch.autograd.grad(loss, list(agent.critic.parameters()))
    expected = torch.autograd.grad(0.5 * vf, list(agent.critic.parameters()))
    for g, e in zip(critic_grads, expected, strict=True):
        torch.testing.assert_close(g, e)


def test_approx_kl_is_schulmans_k3_and_zero_for_the_same_policy():
    """E[(r - 1) - log r] with r = pi(a|s) / pi_old(a|s): 0 where pi = pi_old, and by hand for a shifted pi_old."""
    torch.manual_seed(0)
    agent = a2c.Agent(4, 3, True, a2c.Args())
    obs, actions = torch.randn(6, 4), torch.randint(0, 3, (6,))
    logprobs = agent.get_action_and_value(obs, actions)[1].detach()
    assert a2c.approx_kl(agent, obs, actions, logprobs).item() == 0.0
    shift = torch.linspace(-0.3, 0.3, 6)  # log pi_old = log pi + shift, so log r = -shift
    expected = ((torch.exp(-shift) - 1) + shift).mean()
    torch.testing.assert_close(a2c.approx_kl(agent, obs, actions, logprobs + shift), expected)


# ------------------------------------------------------------------------------------ RMSprop, TF-style


def test_rmsprop_tf_steps_match_hand_computation():
    """lr 0.1, alpha 0.9, eps 0.01 (large, so that where it sits shows), theta_0 = (1, -2), two steps with the
    gradients (0.5, -1) then (0.1, 0.2). v starts at 1: v_1 = 0.9 + 0.1 g^2, theta -= lr g / sqrt(v + eps)."""
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = a2c.RMSpropTF([theta], lr=0.1, alpha=0.9, eps=0.01)
    theta.grad = torch.tensor([0.5, -1.0], dtype=torch.float64)
    opt.step()
    expected_1 = [1.0 - 0.1 * 0.5 / math.sqrt(0.925 + 0.01), -2.0 + 0.1 * 1.0 / math.sqrt(1.0 + 0.01)]
    assert theta.tolist() == pytest.approx(expected_1, abs=1e-12)
    theta.grad = torch.tensor([0.1, 0.2], dtype=torch.float64)
    opt.step()
    # v_2 = 0.9 v_1 + 0.1 g^2 = (0.8325 + 0.001, 0.9 + 0.004)
    expected_2 = [expected_1[0] - 0.1 * 0.1 / math.sqrt(0.8335 + 0.01), expected_1[1] - 0.1 * 0.2 / math.sqrt(0.904 + 0.01)]
    assert theta.tolist() == pytest.approx(expected_2, abs=1e-12)
    # PyTorch's RMSprop (v from 0, eps outside the root) takes a first step of about lr / sqrt(1 - alpha) = 0.32
    theta_torch = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    torch_opt = torch.optim.RMSprop([theta_torch], lr=0.1, alpha=0.9, eps=0.01)
    theta_torch.grad = torch.tensor([0.5, -1.0], dtype=torch.float64)
    torch_opt.step()
    assert theta_torch.tolist() == pytest.approx([1.0 - 0.05 / (math.sqrt(0.025) + 0.01), -2.0 + 0.1 / (math.sqrt(0.1) + 0.01)])


def test_rmsprop_tf_state_round_trips_and_skips_parameters_without_gradient():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = a2c.RMSpropTF([a, b], lr=0.1)
    a.grad = torch.full((3,), 2.0)
    opt.step()
    assert b.tolist() == [1.0, 1.0] and b not in opt.state
    fresh = a2c.RMSpropTF([a, b], lr=0.1)
    fresh.load_state_dict(opt.state_dict())
    torch.testing.assert_close(fresh.state[a]["square_avg"], torch.full((3,), 0.99 + 0.01 * 4.0))


# ---------------------------------------------------------------------------------- truncation, learned


def learned_value(env_id: str, **kw) -> float:
    """Train on a constant-observation env and read V(s) from the checkpoint (times sigma_R with --return-scaling)."""
    settings = dict(total_timesteps=4000, num_envs=4, num_steps=10, learning_rate=1e-2, max_grad_norm=10.0, anneal_lr=False, gamma=0.9)
    settings |= dict(norm_obs=False, norm_reward=False, save_model=True, eval_episodes=0, progress_every=1e9)
    args = a2c.Args(env_id=f"toy_envs:{env_id}", **{**settings, **kw})
    summary = a2c.main(args)
    agent, ckpt = a2c.Agent(1, 2, True, args), torch.load(summary["checkpoint"], weights_only=True)
    agent.load_state_dict(ckpt["agent"])
    sigma = math.sqrt(ckpt["target_rms"]["var"] + 1e-8) if args.return_scaling else 1.0
    with torch.no_grad():
        return agent.get_value(torch.ones(1, 1)).item() * sigma


def test_truncation_bootstraps_and_termination_cuts():
    """gamma = 0.9, reward 1 a step, episodes of 5 steps, the observation constant. Bootstrapping at the time
    limit makes the value the infinite-horizon one, 1 / (1 - gamma) = 10; had the truncation been treated as a
    termination, it would be near the mean 5-step partial return, 2.63, which the terminating twin must learn
    (not exactly: a rollout's last steps bootstrap from V itself)."""
    assert learned_value("ToyTrunc-v0") == pytest.approx(10.0, abs=0.5)
    assert learned_value("ToyTerm-v0") == pytest.approx(np.mean([(1 - 0.9**k) / 0.1 for k in range(1, 6)]), abs=0.2)


def test_return_scaling_learns_the_same_values_in_units_of_sigma():
    """--return-scaling: the critic learns R / sigma_R, rewards raw; V * sigma_R is the bootstrapped 10 again, and
    the terminating twin's 2.63. sigma_R is a running std of the lambda-returns (without their mean, as Tianshou); as
    it settles the targets move, so the critic needs longer (9.3 at 4000 steps, 9.97 at 16000)."""
    assert learned_value("ToyTrunc-v0", return_scaling=True, total_timesteps=16000) == pytest.approx(10.0, abs=0.3)
    assert learned_value("ToyTerm-v0", return_scaling=True, total_timesteps=16000) == pytest.approx(
        np.mean([(1 - 0.9**k) / 0.1 for k in range(1, 6)]), abs=0.2
    )


def test_return_scaling_leaves_the_rewards_raw_unless_told_otherwise():
    """--return-scaling scales the critic's targets; the reward scaler's automatic None then means off (both would
    scale twice), while an explicit --norm-reward stands, and without return scaling None stays automatic."""
    for settings, expected in [({"return_scaling": True}, False), ({"return_scaling": True, "norm_reward": True}, True), ({}, None)]:
        args = a2c.Args(**settings)
        a2c.validate_args(args)
        assert args.norm_reward is expected, settings


def test_value_scale_turns_the_critics_units_into_returns():
    """Rollout.advantages with value_scale s on a critic of values v gives what a critic of values s v gives."""

    class Critic:
        def __init__(self, scale):
            self.scale = scale

        def value(self, x):
            return self.scale * x[:, 0]

    space = a2c.gym.spaces.Discrete(2)
    rollout = a2c.Rollout(3, 2, 1, space)
    rng = np.random.default_rng(0)
    rollout.rewards[:] = rng.normal(size=(3, 2))
    rollout.values[:], rollout.final_values[:] = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    rollout.dones[1, 0] = rollout.terminations[2, 1] = rollout.dones[2, 1] = 1.0
    next_obs = rng.normal(size=(2, 1)).astype(np.float32)
    scaled = rollout.advantages(Critic(1.0), next_obs, 0.9, 0.95, torch.device("cpu"), value_scale=4.0)
    rollout.values *= 4.0
    rollout.final_values *= 4.0
    raw = rollout.advantages(Critic(4.0), next_obs, 0.9, 0.95, torch.device("cpu"))
    for a, b in zip(scaled, raw, strict=True):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------------------- smoke


def test_smoke_hopper_reaches_updates_and_logs_every_metric(capsys):
    summary = a2c.main(a2c.Args(**{**TINY, "env_id": "Hopper-v5"}))
    records = read_metrics(summary["run_dir"])
    assert set(METRICS) <= {k for r in records for k in r}
    assert sum("losses/policy_loss" in r for r in records) == 4  # four iterations, one gradient step each
    assert summary["global_step"] == 64
    out = capsys.readouterr().out
    assert "norm_obs=True, norm_reward=True" in out
    assert re.search(r"step 64/64 \(100%\) \| \d+ SPS \| return \(last 100 episodes\) \S+ \| left", out)


def test_smoke_cartpole_with_adam():
    summary = a2c.main(tiny(optimizer="adam", num_envs=4, total_timesteps=256, save_model=True, eval_episodes=0))
    assert summary["global_step"] == 256
    assert "exp_avg" in torch.load(summary["checkpoint"], weights_only=True)["optimizer"]["state"][0]


def test_same_seed_same_numbers():
    def numbers(seed=1):
        records = read_metrics(a2c.main(tiny(seed=seed, total_timesteps=256, eval_episodes=2))["run_dir"])
        return [{k: v for k, v in r.items() if k != "charts/SPS"} for r in records]

    first = numbers()
    assert first == numbers()
    assert first != numbers(seed=2)


def test_save_then_eval_checkpoint_restores_normalisation():
    args = a2c.Args(**{**TINY, "env_id": "Hopper-v5", "save_model": True, "eval_episodes": 2})
    summary = a2c.main(args)
    ckpt = torch.load(summary["checkpoint"], weights_only=True)
    assert ckpt["obs_rms"]["count"] > 64 and ckpt["obs_rms"]["var"].shape == (11,)
    assert "square_avg" in ckpt["optimizer"]["state"][0]  # the default optimiser is PyTorch's RMSprop
    again = a2c.main(a2c.Args(env_id="Hopper-v5", eval_checkpoint=summary["checkpoint"], eval_episodes=2))
    assert again["eval_returns"] == summary["eval_returns"]


def test_save_every_then_resume_continues_the_step_count():
    args = tiny(save_every=32, eval_episodes=0)
    summary = a2c.main(args)
    path = os.path.join(summary["run_dir"], "a2c.pt")
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["global_step"] == 64 and ckpt["iteration"] == 4
    resumed = a2c.main(replace(args, resume=path, total_timesteps=96))
    assert resumed["global_step"] == 96
    steps = [r["global_step"] for r in read_metrics(summary["run_dir"]) if "losses/policy_loss" in r]
    assert steps == [16, 32, 48, 64, 80, 96]


def test_capture_video_compile_and_cuda_flags_run(capsys):
    """--capture-video writes mp4s; --compile and --cuda (which falls back to the CPU without a GPU) run to the end."""
    summary = a2c.main(tiny(capture_video=True, compile=True, cuda=True, total_timesteps=128, eval_episodes=1))
    assert summary["global_step"] == 128
    videos = glob.glob("videos/*/*.mp4")
    assert videos and all(os.path.getsize(v) > 1000 for v in videos)
    out = capsys.readouterr().out
    assert ("device: cuda" in out) if torch.cuda.is_available() else ("device: cpu (--cuda given, but no GPU is present)" in out)


def test_no_numpy_on_a_tensor_that_may_live_on_the_gpu():
    """Every `.numpy()` in the script is on a host array's tensor view or follows `.cpu()`."""
    source = open(os.path.join(ROOT, "a2c.py")).read()
    allowed = {'state["mean"]', 'state["var"]', 'state["numpy"]', 'rng["numpy"]'}  # checkpoints load with map_location="cpu"
    for expr in re.findall(r"([\w\.\[\]\"']+)\.numpy\(\)", source):
        assert expr.endswith(".cpu()") or expr in allowed, expr


# ------------------------------------------------------------------------------------------ bad input

BAD = COMMON_BAD + [
    (dict(env_id="toy_envs:ToyDict-v0"), "observation space"),
    (dict(total_timesteps=10), "--total-timesteps 10 is smaller than one batch"),
    (dict(num_steps=0), "--num-steps must be at least 1"),
    (dict(gae_lambda=-0.1), "--gae-lambda must be in [0, 1]"),
    (dict(gae_lambda=1.1), "--gae-lambda must be in [0, 1]"),
    (dict(optimizer="sgd"), "--optimizer must be one of ['rmsprop', 'torch-rmsprop', 'adam'], got 'sgd'"),
    (dict(rmsprop_alpha=1.0), "--rmsprop-alpha must be in [0, 1)"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_fails_with_one_line(overrides, message):
    assert_bad_input(a2c, tiny(**overrides), message)


def test_bad_checkpoints(tmp_path):
    assert_refuses_bad_checkpoints(a2c, tiny, tmp_path, "CartPole-v1", "Acrobot-v1")


def test_command_line_error_exit_status_and_no_traceback():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "a2c.py"), "--optimizer", "sgd"], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip() == "a2c.py: error: --optimizer must be one of ['rmsprop', 'torch-rmsprop', 'adam'], got 'sgd'"


# ------------------------------------------------------------------------------------------- learning


def test_learns_cartpole():
    """A2C at its defaults clears a floor on CartPole-v1 at 100k steps (~20 s on one core).

    Calibrated offline with `python benchmark/calibrate.py a2c-cartpole-defaults --seeds 10` (results in
    benchmark/results/calibration_a2c-cartpole-defaults.jsonl): every default as `python a2c.py --env-id
    CartPole-v1` runs it (16 envs x 5 steps, PyTorch's RMSprop, lr 7e-4 annealed, lambda 0.95, c_e 0.003), beside
    SB3's A2C with the same hyper-parameters mapped one to one. Return = mean of the last 100 training episodes /
    deterministic evaluation over 10 episodes:

        seed   ours        SB3 A2C
        1      483 / 500   176 / 192
        2      247 / 384   282 / 459
        3      238 / 298   340 / 387
        4      208 / 252   213 / 393
        5      295 / 406   269 / 470
        6      206 / 265   194 / 253
        7      232 / 445   229 / 451
        8      192 / 431   250 / 456
        9      270 / 437   158 / 151
        10     262 / 455   196 / 287
        mean   263 / 387   231 / 350

    Floors: last-100 mean >= 150 and evaluation >= 200, cleared by 10 of our 10 seeds (and by 8 of SB3's 10).
    The test runs seed 8, the weakest of ours on the last-100 metric. (RL Zoo's CartPole settings, the check
    before issue 16: the a2c-cartpole calibration, 204 / 344 against SB3's 183 / 320.)
    """
    summary = a2c.main(a2c.Args(env_id="CartPole-v1", seed=8, total_timesteps=100_000, eval_episodes=10, progress_every=1e9))
    assert np.mean(summary["episodic_returns"][-100:]) >= 150
    assert np.mean(summary["eval_returns"]) >= 200
