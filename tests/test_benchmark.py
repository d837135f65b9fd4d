"""benchmark/: the runner, the peer adapter and the plots on a tiny grid (ppo.py on CartPole-v1, a few hundred
steps, two seeds), and W&B Sweeps' argument form on a real ppo.py run."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmark")
sys.path.insert(0, BENCH)
import plot  # noqa: E402
import run  # noqa: E402

TINY = "--total-timesteps 512 --num-envs 2 --num-steps 64 --num-minibatches 2 --update-epochs 1 --eval-episodes 2"


def campaign(tmp_path, *options: str, flags: str = TINY, seeds=("1", "2"), popen: bool = False):
    cmd = [sys.executable, os.path.join(BENCH, "run.py"), "--campaign", "tiny", "--scripts", "ppo.py", "--envs", "CartPole-v1"]
    cmd += ["--seeds", *seeds, "--flags", flags, "--results-dir", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work"), *options]
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def result(tmp_path, key: str) -> dict:
    with open(tmp_path / "results" / "tiny" / f"{key}.json") as f:
        return json.load(f)


def test_campaign_results_resume_peer_and_plots(tmp_path):
    out = campaign(tmp_path, "--workers", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    for seed in (1, 2):
        r = result(tmp_path, f"CartPole-v1__ppo__{seed}")
        assert (r["status"], r["seed"], r["global_step"], r["kind"]) == ("done", seed, 512, "ours")
        steps, returns = r["episodes"]["global_step"], r["episodes"]["return"]
        assert len(steps) == len(returns) == r["n_episodes"] > 0 and steps == sorted(steps)
        assert r["return_last100"] == pytest.approx(np.mean(returns[-100:]), abs=1e-3)
        assert r["eval"]["episodes"] == 2 and r["sps"] > 0 and r["wall_s"] > 0
        assert r["command"].startswith("OMP_NUM_THREADS=1 ") and f"python ppo.py {TINY}" in r["command"]
        assert "--torch-threads 1" in r["command"] and f"--seed {seed}" in r["command"]
        assert {"torch", "gymnasium", "mujoco", "stable-baselines3", "sb3-contrib"} <= set(r["versions"])
        assert set(r["definitions"]) == {"return", "eval", "SPS", "no worse"}
    before = (tmp_path / "results" / "tiny" / "CartPole-v1__ppo__1.json").read_text()

    # Run again with the peers added: the finished runs are skipped, the SB3 job runs through the adapter
    out = campaign(tmp_path, "--impl", "both", seeds=("1",))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "skip (done): CartPole-v1__ppo__1" in out.stdout and "start: CartPole-v1__ppo__1" not in out.stdout
    assert (tmp_path / "results" / "tiny" / "CartPole-v1__ppo__1.json").read_text() == before
    peer = result(tmp_path, "CartPole-v1__sb3-ppo__1")
    assert (peer["status"], peer["kind"], peer["peer"], peer["global_step"]) == ("done", "peer", "stable_baselines3/PPO", 512)
    assert peer["n_episodes"] > 0 and peer["eval"]["episodes"] == 2 and peer["sps"] > 0
    assert peer["unmapped"] == [] and any(row["peer"] == "batch_size=64" for row in peer["mapping"])
    assert peer["peer_spec"]["kwargs"]["vf_coef"] == 0.25  # ours 1/2 c1 E[(V-R)^2] = SB3's (c1/2) E[(V-R)^2]

    # Other flags under the same campaign name are refused rather than mixed with the old results
    out = campaign(tmp_path, flags=TINY.replace("512", "1024"))
    assert out.returncode == 2 and "refusing" in out.stderr

    assert plot.main([str(tmp_path / "results" / "tiny")]) == 0
    png = tmp_path / "results" / "tiny" / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "results" / "tiny" / "table.md").read_text()
    assert "| CartPole-v1 | ppo.py | 2 |" in table and "SB3 PPO (1)" in table and "n/a (< 2 seeds)" in table
    assert "last 100 training episodes" in table and "SPS ratio" in table and "python benchmark/run.py peer ppo.py" in table
    assert "vf_coef=0.25" in (tmp_path / "results" / "tiny" / "mapping.md").read_text()
    assert plot.main([str(tmp_path / "results" / "tiny"), "--speed", "--out", str(tmp_path / "speed")]) == 0
    assert "| CartPole-v1 | ppo.py | 512 |" in (tmp_path / "speed" / "table.md").read_text()


def test_interrupted_campaign_continues_from_the_checkpoint(tmp_path):
    flags = TINY.replace("512", "4096")
    proc = campaign(tmp_path, "--save-every", "256", flags=flags, seeds=("1",), popen=True)
    deadline = time.time() + 120
    while not glob.glob(str(tmp_path / "work" / "tiny" / "runs" / "*" / "ppo.pt")):  # the first checkpoint
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130, proc.stdout.read()
    assert result(tmp_path, "CartPole-v1__ppo__1")["status"] == "interrupted"

    out = campaign(tmp_path, "--save-every", "256", flags=flags, seeds=("1",))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resume: CartPole-v1__ppo__1 from step" in out.stdout
    r = result(tmp_path, "CartPole-v1__ppo__1")
    assert (r["status"], r["global_step"], len(r["attempts"])) == ("done", 4096, 2)
    assert "--resume runs/" in r["attempts"][1]["command"] and "--resume" not in r["attempts"][0]["command"]
    records = run.read_metrics(os.path.join(tmp_path, "work", "tiny", r["run_dir"]))
    steps = [rec["global_step"] for rec in records]
    assert steps == sorted(steps), "steps logged after the checkpoint were not dropped before the resume"
    assert sum("charts/learning_rate" in rec for rec in records) == 4096 // 128  # each iteration logged once


def sweep_argv(sweep: dict, overrides: dict) -> list[str]:
    """The command line a W&B agent builds from the sweep (one value per parameter: False for booleans)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    chosen = {}
    for name, spec in sweep["parameters"].items():
        if "value" in spec:
            chosen[name] = spec["value"]
        elif "values" in spec:
            chosen[name] = False if all(isinstance(v, bool) for v in spec["values"]) else spec["values"][0]
        else:
            chosen[name] = spec["min"]
    args = create_sweep_command_args({"args": {k: {"value": v} for k, v in chosen.items()}})["args"]
    more = create_sweep_command_args({"args": {k: {"value": v} for k, v in overrides.items()}})["args"]
    return args + more  # a later flag wins


def test_sweep_config_and_its_argument_form_run_ppo(tmp_path):
    import yaml

    with open(os.path.join(BENCH, "sweep_ppo.yaml")) as f:
        sweep = yaml.safe_load(f)
    assert sweep["program"] == "ppo.py" and sweep["method"] in ("random", "bayes") and "${args}" in sweep["command"]
    assert sweep["metric"]["name"] == "eval/episodic_return"
    tiny = {"env-id": "CartPole-v1", "total-timesteps": 256, "num-steps": 64, "num-envs": 2, "num-minibatches": 2, "update-epochs": 1}
    argv = sweep_argv(sweep, {**tiny, "track": False, "eval-episodes": 1})
    assert "--anneal-lr=False" in argv and "--track=True" in argv and "--track=False" in argv
    out = subprocess.run([sys.executable, os.path.join(ROOT, "ppo.py"), *argv], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "evaluation: mean return" in out.stdout
    with open(glob.glob(str(tmp_path / "runs" / "*" / "args.json"))[0]) as f:
        args = json.load(f)
    assert (args["anneal_lr"], args["track"], args["env_id"], args["total_timesteps"]) == (False, False, "CartPole-v1", 256)
    assert args["learning_rate"] == sweep["parameters"]["learning-rate"]["min"]


@pytest.mark.parametrize("script", ["ppo.py", "a2c.py", "trpo.py", "sac.py"])
def test_every_field_of_a_script_with_a_peer_is_mapped(script):
    if not os.path.exists(os.path.join(ROOT, script)):
        pytest.skip(f"{script} not written yet")
    args = run.script_args(script, ["--env-id", "Hopper-v5"])
    spec, rows, unmapped = run.map_to_peer(script, args, discrete=False, action_dim=3)
    assert unmapped == [], f"add rows for {unmapped} to benchmark/run.py's {spec['algo']} mapping"
    assert rows and spec["total"] <= args["total_timesteps"] and spec["env_id"] == "Hopper-v5"


def test_ppo_mapping_values():
    args = run.script_args("ppo.py", ["--env-id", "Hopper-v5", "--target-kl", "0.03", "--no-clip-vloss", "--total-timesteps", "10000"])
    spec, _, _ = run.map_to_peer("ppo.py", args, discrete=False, action_dim=3)
    kw = spec["kwargs"]
    assert (kw["n_steps"], kw["batch_size"], kw["n_epochs"], kw["clip_range_vf"]) == (2048, 64, 10, None)
    assert kw["target_kl"] == pytest.approx(0.02) and kw["vf_coef"] == 0.25
    assert spec["total"] == 8192  # ours runs whole iterations: 4 x 2048
    assert spec["norm"] == {"norm_obs": True, "norm_reward": True, "clip_obs": 10.0, "clip_reward": 10.0, "gamma": 0.99}
    with pytest.raises(SystemExit, match="--hidden-init-gain 1.0 cannot be mapped"):
        run.map_to_peer("ppo.py", {**args, "hidden_init_gain": 1.0}, discrete=False, action_dim=3)


def test_trpo_mapping_gives_sb3_contrib_our_policy_step():
    """One policy update of sb3-contrib's TRPO, built with the mapped hyper-parameters, moves the policy exactly as
    trpo.py's trpo_update does from the same weights on the same batch (Hopper-v5: 3 action dimensions, where
    sb3-contrib's per-dimension KL needs target_kl and cg_damping divided by 3)."""
    import copy

    import torch
    from sb3_contrib import TRPO
    from stable_baselines3.common.env_util import make_vec_env

    sys.path.insert(0, ROOT)
    import trpo

    args = run.script_args("trpo.py", ["--env-id", "Hopper-v5", "--num-steps", "512", "--num-minibatches", "4"])
    spec, _, _ = run.map_to_peer("trpo.py", args, discrete=False, action_dim=3)
    kw = spec["kwargs"]
    assert (kw["target_kl"], kw["cg_damping"]) == (pytest.approx(args["max_kl"] / 3), pytest.approx(args["damping"] / 3))
    policy_kwargs = {**spec["policy_kwargs"], "activation_fn": torch.nn.Tanh}
    torch.manual_seed(0)
    model = TRPO("MlpPolicy", make_vec_env("Hopper-v5", n_envs=1, seed=1), seed=1, device="cpu", policy_kwargs=policy_kwargs, **kw)
    seen = {}

    def train():  # sb3-contrib's update, with the weights and the batch it starts from
        rb = model.rollout_buffer
        seen["before"] = copy.deepcopy(model.policy.state_dict())
        seen["batch"] = [torch.as_tensor(x).reshape(512, -1).float() for x in (rb.observations, rb.actions)]
        seen["batch"] += [torch.as_tensor(x).reshape(512).float() for x in (rb.log_probs, rb.advantages)]
        sb3_train()
        seen["after"] = copy.deepcopy(model.policy.state_dict())

    sb3_train, model.train = model.train, train
    model.learn(512)

    agent = trpo.Agent(11, 3, False, trpo.Args(env_id="Hopper-v5"))  # the default networks, as args
    layers = {
        "actor.layers.0": "mlp_extractor.policy_net.0",
        "actor.layers.1": "mlp_extractor.policy_net.2",
        "actor.layers.2": "action_net",
    }
    with torch.no_grad():
        for ours, theirs in layers.items():
            agent.get_submodule(ours).weight.copy_(seen["before"][f"{theirs}.weight"])
            agent.get_submodule(ours).bias.copy_(seen["before"][f"{theirs}.bias"])
        agent.actor_logstd.copy_(seen["before"]["log_std"].view(1, -1))
    obs, actions, logprobs, advantages = seen["batch"]
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    hp = {k: args[k] for k in ("max_kl", "damping", "cg_iters", "backtrack_coef", "backtrack_iters", "fvp_subsample")}
    policy_params = [p for name, p in agent.named_parameters() if not name.startswith("critic.")]
    stats = trpo.trpo_update(agent, policy_params, obs, actions, logprobs, advantages, **hp)
    assert stats["line_search_success"] == 1.0
    for ours, theirs in [*((f"{o}.weight", f"{t}.weight") for o, t in layers.items()), ("actor_logstd", "log_std")]:
        before, after = seen["before"][theirs], seen["after"][theirs]
        ours_step = agent.get_parameter(ours).detach().reshape(after.shape) - before
        assert (after - before).norm() > 0
        torch.testing.assert_close(ours_step, after - before, rtol=1e-3, atol=1e-6)


def test_shifted_linear_schedule_gives_our_learning_rates():
    lr, batch, n = 3e-4, 128, 8
    ours = [(1 - (i - 1) / n) * lr for i in range(1, n + 1)]  # ppo.py at iteration i
    schedule = run.linear_schedule(lr, 1 / n)
    sb3 = [schedule(1 - i * batch / (n * batch)) for i in range(1, n + 1)]  # SB3 reads it after rollout i
    assert sb3 == pytest.approx(ours)


def test_bootstrap_verdicts():
    same = [100.0, 110.0, 90.0, 105.0, 95.0]
    diff, lo, hi = plot.bootstrap_diff(same, same)
    assert diff == 0 and lo <= 0 <= hi and plot.verdict(lo, hi) == "no worse"
    _, lo, hi = plot.bootstrap_diff([x + 100 for x in same], same)
    assert lo > 0 and plot.verdict(lo, hi) == "no worse (favours us)"
    _, lo, hi = plot.bootstrap_diff([x - 100 for x in same], same)
    assert hi < 0 and plot.verdict(lo, hi) == "worse"


def test_sps_leaves_out_the_warmup():
    # 1000 random warm-up steps in 1 s, then 100 steps per second; the run logs its cumulative SPS
    records = [{"global_step": x, "charts/SPS": x / (1 + (x - 1000) / 100)} for x in (2000, 3000, 4000)]
    assert run.sps_after_warmup(records, 1000, "") == pytest.approx(100)
    # resumed at step 2500: that process's clock starts there
    records = [{"global_step": x, "charts/SPS": (x - 2500) / ((x - 2500) / 100)} for x in (3000, 4000)]
    assert run.sps_after_warmup(records, 1000, "resumed some-run at step 2500\n") == pytest.approx(100)


def test_calibration_cases_parse_and_own_defaults_cases_are_both_libraries_defaults():
    import calibrate

    for name, case in calibrate.CASES.items():
        args = run.script_args(case["script"], case["flags"].split())
        if case["sb3"] == "mapped":
            *_, unmapped = run.peer_spec(case["script"], case["flags"].split())
            assert unmapped == [], name
        if name.endswith("own-defaults"):  # ours: only the env, the budget and the evaluation set; the peer: library defaults
            assert set(case["flags"].split()[::2]) == {"--env-id", "--total-timesteps", "--eval-episodes"}, name
            spec = case["sb3"]
            assert spec["kwargs"] == {} and "policy_kwargs" not in spec and spec["n_envs"] == args["num_envs"], name
            assert spec["total"] == args["total_timesteps"] and spec["total"] % (args["num_envs"] * args["num_steps"]) == 0, name
