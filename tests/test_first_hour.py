"""The first hour of a new user: interrupts and resumes, W&B, the random state and the learning rate on resume,
the boolean flags, the budget, headless video, a closed pipe, and messages that name the fix. The shared
infrastructure is the same in every script (tests/test_drift.py), so most checks run ppo.py, and sac.py where its
loop differs; the subprocess tests are what a user types."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import ROOT, read_metrics

import ppo
import sac

TINY = dict(env_id="CartPole-v1", num_envs=1, num_steps=64, num_minibatches=2, update_epochs=1, progress_every=0.0, eval_episodes=0)


def tiny(**kw) -> ppo.Args:
    return ppo.Args(**{**TINY, "total_timesteps": 256, **kw})


def script_command(script: str, *flags: str) -> list[str]:
    return [sys.executable, os.path.join(ROOT, script), *flags]


def quiet_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return {**env, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **extra}


def start_and_signal(command: list[str], signals: list[int], after_lines: int = 2, timeout: float = 120.0):
    """Start a run, wait until it has printed `after_lines` progress lines, send the signals; returns
    (returncode, stdout, stderr, seconds from the last signal to the exit)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=quiet_env())
    lines, seen = [], 0
    deadline = time.time() + timeout
    while seen < after_lines and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        seen += line.startswith("step ")
    assert seen == after_lines, "".join(lines) + proc.stderr.read()
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    sent = time.time()
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, "".join(lines) + out, err, time.time() - sent


# ------------------------------------------------------------------------------------------------ interrupts


@pytest.mark.parametrize(
    "script, sig, flags, lines",
    [
        ("ppo.py", signal.SIGINT, ["--env-id", "CartPole-v1", "--num-steps", "64", "--total-timesteps", "1000000"], 2),
        ("ppo.py", signal.SIGTERM, ["--env-id", "Pendulum-v1", "--num-steps", "64", "--total-timesteps", "1000000"], 2),
        ("sac.py", signal.SIGINT, ["--env-id", "Pendulum-v1", "--learning-starts", "100", "--total-timesteps", "1000000"], 250),
    ],
)
def test_a_signal_saves_the_run_and_prints_the_resume_command(script, sig, flags, lines):
    """SIGINT/SIGTERM: the checkpoint of the last completed iteration, the metrics flushed up to it, one line with the
    exact --resume command, exit status 128 + signum, no traceback; the resume then continues from that step."""
    command = script_command(script, *flags, "--progress-every", "0", "--eval-episodes", "0")
    rc, out, err, _ = start_and_signal(command, [sig], after_lines=lines)  # SAC: past its first episode (200 steps)
    assert rc == 128 + sig, (rc, out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("stopped at step ") and " --resume " in last, out
    path = last.split(" --resume ")[1]
    ckpt = torch.load(path, weights_only=True)
    run_dir = os.path.dirname(path)
    logged = [r["global_step"] for r in read_metrics(run_dir)]
    assert ckpt["global_step"] == int(last.split()[3].rstrip(",")) and 0 < max(logged) <= ckpt["global_step"]

    resumed = subprocess.run(
        script_command(script, "--resume", path, "--total-timesteps", str(ckpt["global_step"] + 128), "--eval-episodes", "0"),
        capture_output=True,
        text=True,
        env=quiet_env(),
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {os.path.basename(run_dir)} at step {ckpt['global_step']}" in resumed.stdout
    end = ckpt["global_step"] + 128
    assert f"step {end}/{end} (100%)" in resumed.stdout


def test_a_second_ctrl_c_exits_at_once():
    """The first Ctrl-C waits for the iteration to end; a second one does not (here an iteration is 100k steps)."""
    command = script_command("ppo.py", "--env-id", "CartPole-v1", "--num-steps", "100000", "--total-timesteps", "10000000")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=quiet_env())
    while not proc.stdout.readline().startswith("budget:"):
        pass
    time.sleep(1.0)  # in the first iteration's rollout
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    sent = time.time()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - sent < 10, (proc.returncode, out, err)
    assert "Traceback" not in err, err


# ------------------------------------------------------------------------------------------------ resume state


def test_the_whole_numpy_random_state_survives_a_checkpoint():
    """An odd number of Gaussians leaves one cached in NumPy's legacy generator; the checkpoint keeps it, so the draws
    after a resume are those of an uninterrupted generator."""
    args = tiny()
    run = ppo.Run(args)
    run.restore("iteration", evaluate_with=None)
    np.random.standard_normal(3)
    path = run.checkpoint(0, iteration=0)
    expected = np.random.standard_normal(5)
    run.close()
    np.random.standard_normal(7)  # anything in between
    again = ppo.Run(replace(args, resume=path))
    again.restore("iteration", evaluate_with=None)
    assert np.array_equal(np.random.standard_normal(5), expected)
    again.close()


def learning_rates(run_dir: str) -> list[tuple[int, float]]:
    return [(r["global_step"], r["charts/learning_rate"]) for r in read_metrics(run_dir) if "charts/learning_rate" in r]


def test_the_annealed_learning_rate_on_a_resume_with_a_new_budget():
    """--anneal-lr: lr = (1 - step / total) lr0. A resume with the same budget follows that line; with another budget
    the decay goes on from the fraction reached at the checkpoint down to 0 at the new budget (never jumping up);
    extending a finished run decays afresh from lr0."""
    lr0 = 1e-3
    first = ppo.main(tiny(learning_rate=lr0, total_timesteps=128, save_model=True))  # finished at 128 of 128
    path = first["checkpoint"]
    ckpt = torch.load(path, weights_only=True)
    ckpt["total"] = 256  # as if stopped half-way through a 256-step run
    torch.save(ckpt, path)
    ppo.main(tiny(resume=path, total_timesteps=512, learning_rate=lr0))  # main() takes no defaults from the checkpoint: cli() does
    resumed = learning_rates(first["run_dir"])[2:]  # each iteration logs the rate its update used, at its end
    reached = 1 - 128 / 256
    for (end, lr), start in zip(resumed, range(128, 512, 64), strict=True):
        assert end == start + 64
        assert lr == pytest.approx(lr0 * reached * (1 - (start - 128) / (512 - 128)), rel=1e-12)
    assert resumed[0][1] == pytest.approx(lr0 * 0.5) and all(a[1] > b[1] for a, b in zip(resumed[:-1], resumed[1:], strict=True))

    finished = ppo.main(tiny(learning_rate=lr0, total_timesteps=128, save_model=True))
    ppo.main(tiny(resume=finished["checkpoint"], total_timesteps=256, learning_rate=lr0))
    assert [lr for _, lr in learning_rates(finished["run_dir"])] == pytest.approx([lr0, lr0 / 2, lr0, lr0 / 2], rel=1e-12)


# ------------------------------------------------------------------------------------------------ W&B


def offline_run_ids(run_dir: str) -> list[str]:
    """The run ids of W&B's offline folders, offline-run-<date>_<time>-<id>, with a -<n> suffix when a second start
    falls in the same second (W&B's own de-duplication)."""
    names = (os.path.basename(d) for d in glob.glob(os.path.join(run_dir, "wandb", "offline-run-*")))
    return sorted(re.match(r"offline-run-\d{8}_\d{6}-([^-]+)", name).group(1) for name in names)


def test_a_resume_continues_the_same_wandb_run_and_no_track_turns_it_off():
    first = ppo.main(tiny(track=True, save_model=True, total_timesteps=128))
    ckpt = torch.load(first["checkpoint"], weights_only=True)
    assert ckpt["wandb_id"] and offline_run_ids(first["run_dir"]) == [ckpt["wandb_id"]]
    args = ppo.Args(**{**ckpt["args"], "resume": first["checkpoint"], "total_timesteps": 256, "hidden_sizes": (64, 64)})
    assert args.track  # inherited from the checkpoint
    resumed = ppo.main(args)
    assert torch.load(resumed["checkpoint"], weights_only=True)["wandb_id"] == ckpt["wandb_id"]  # the same run, resumed
    folders = offline_run_ids(first["run_dir"])  # one offline folder per start (two starts in one second share one)
    assert set(folders) == {ckpt["wandb_id"]}
    untracked = ppo.main(replace(args, track=False, total_timesteps=384))
    assert torch.load(untracked["checkpoint"], weights_only=True)["wandb_id"] is None
    assert offline_run_ids(first["run_dir"]) == folders


def test_wandb_that_cannot_start_is_one_line_before_training(tmp_path):
    """No API key (and no network): one line naming `wandb login` and WANDB_MODE=offline, exit 1, no step taken."""
    env = quiet_env(WANDB_MODE="online", HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path / "cfg"), WANDB_API_KEY="")
    env.pop("WANDB_API_KEY")
    done = subprocess.run(
        script_command("ppo.py", "--env-id", "CartPole-v1", "--total-timesteps", "256", "--num-steps", "64", "--track"),
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "wandb login" in lines[0] and "WANDB_MODE=offline" in lines[0], done.stderr
    assert "step " not in done.stdout


# ------------------------------------------------------------------------------------------------ flags and messages


@pytest.mark.parametrize(
    "argv, norm_obs, track",
    [
        ([], None, False),
        (["--norm-obs"], True, False),
        (["--no-norm-obs"], False, False),
        (["--norm-obs=True"], True, False),
        (["--norm-obs=false"], False, False),
        (["--norm-obs", "False", "--track"], False, True),
        (["--norm-obs", "None", "--track=True"], None, True),
        (["--no-norm-obs", "--no-track"], False, False),
        (["--track=False"], None, False),
    ],
)
def test_boolean_flags_take_every_form(monkeypatch, argv, norm_obs, track):
    """--flag, --no-flag and --flag=True/False (W&B Sweeps), for plain booleans and for those whose default None is
    automatic; tyro's own `--norm-obs False` still works."""
    monkeypatch.setattr(sys, "argv", ["ppo.py", *argv])
    args = ppo.cli(ppo.Args)
    assert (args.norm_obs, args.track) == (norm_obs, track)
    monkeypatch.setattr(sys, "argv", ["sac.py", *[a for a in argv if "norm" not in a and a not in ("False", "None")]])
    assert sac.cli(sac.Args).track == track


def test_the_budget_is_said_at_the_start_and_the_progress_line_agrees(capsys):
    ppo.main(tiny(total_timesteps=300, progress_every=1e9))
    out = capsys.readouterr().out
    assert "budget: 4 iterations x 64 transitions = 256 (44 short of --total-timesteps)" in out
    assert "step 256/256 (100%)" in out


def test_a_closed_pipe_is_not_an_error():
    """`python ppo.py --help | head` and a run piped into `head`: the reader goes away, no traceback, the run goes on."""
    for flags in (["--help"], ["--env-id", "CartPole-v1", "--total-timesteps", "256", "--num-steps", "64", "--eval-episodes", "0"]):
        proc = subprocess.Popen(script_command("ppo.py", *flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=quiet_env())
        proc.stdout.close()  # before the script has written anything
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 0 and "Error" not in err, err
    assert len(read_metrics(glob.glob("runs/*")[0])) > 0


def test_an_env_namespace_names_its_package():
    with pytest.raises(SystemExit, match="install ale-py"):
        ppo.main(tiny(env_id="ALE/Pong-v5"))


# ------------------------------------------------------------------------------------------------ video


def mp4s(folder: str) -> list[str]:
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.mp4")))


def test_headless_video_picks_a_backend_without_being_told():
    """No DISPLAY and no MUJOCO_GL: MuJoCo renders with EGL (or OSMesa) instead of a 57-line FatalError, and
    classic control renders without pygame's XDG_RUNTIME_DIR complaint."""
    env = quiet_env()
    for key in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM", "SDL_VIDEODRIVER", "SDL_AUDIODRIVER"):
        env.pop(key, None)
    for env_id in ("InvertedPendulum-v5", "CartPole-v1"):
        flags = ["--env-id", env_id, "--total-timesteps", "128", "--num-steps", "64", "--capture-video", "--eval-episodes", "1"]
        done = subprocess.run(script_command("ppo.py", *flags), capture_output=True, text=True, env=env, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "Error" not in done.stderr and "XDG_RUNTIME_DIR" not in done.stderr, done.stderr
        run = os.path.basename(glob.glob(f"runs/{env_id}__*")[0])
        assert mp4s(f"videos/{run}") and mp4s(f"videos/{run}-eval") == ["rl-video-episode-0.mp4"]


@pytest.mark.parametrize("module, kw", [(ppo, dict(TINY, env_id="Pendulum-v1")), (sac, dict(env_id="Pendulum-v1", learning_starts=64))])
def test_one_video_per_evaluated_episode_and_each_evaluation_in_its_own_folder(module, kw):
    args = module.Args(**{**kw, "total_timesteps": 128, "capture_video": True, "save_model": True, "eval_episodes": 2})
    summary = module.main(args)
    name = os.path.basename(summary["run_dir"])
    assert mp4s(f"videos/{name}-eval") == ["rl-video-episode-0.mp4", "rl-video-episode-1.mp4"]  # not a third, 1-frame one
    before = {p: os.path.getmtime(p) for p in glob.glob(f"videos/{name}-eval/*.mp4")}
    module.main(replace(args, eval_checkpoint=summary["checkpoint"], eval_episodes=3))
    assert mp4s(f"videos/{name}-eval-2") == [f"rl-video-episode-{i}.mp4" for i in range(3)]
    assert {p: os.path.getmtime(p) for p in glob.glob(f"videos/{name}-eval/*.mp4")} == before  # untouched
    empty = [d for d in glob.glob("videos/*") if not os.listdir(d)]
    assert not empty, empty
    assert json.load(open(os.path.join(summary["run_dir"], "args.json")))["capture_video"]


# ------------------------------------------------------------------------------------------------ periodic evaluation


@pytest.mark.parametrize("module, kw", [(ppo, dict(TINY, env_id="Pendulum-v1")), (sac, dict(env_id="Pendulum-v1", learning_starts=64))])
def test_periodic_evaluation_logs_and_leaves_training_unchanged(module, kw):
    """--eval-every N: eval/episodic_return at every N steps (and the final one), with its own env and no draw from
    the training RNG, so every training number is the same as without it."""
    args = module.Args(**{**kw, "total_timesteps": 384, "eval_episodes": 1, "seed": 3})
    plain = module.main(args)
    evaluated = module.main(replace(args, eval_every=128))

    def training(run_dir):
        return [{k: v for k, v in r.items() if k != "charts/SPS"} for r in read_metrics(run_dir) if "eval/episodic_return" not in r]

    assert training(plain["run_dir"]) == training(evaluated["run_dir"])
    evals = [r["global_step"] for r in read_metrics(evaluated["run_dir"]) if "eval/episodic_return" in r]
    assert evals == [128, 256, 384] and plain["eval_returns"] == evaluated["eval_returns"]
