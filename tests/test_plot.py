"""benchmark/plot.py on your own runs, no W&B: a run folder and a folder of runs (tiny real ppo.py and sac.py runs)
drawn into one PNG with the return and a panel per logged loss; a run still writing, with no episode yet."""

import json
import os
import struct
import subprocess
import sys

import pytest
from conftest import ROOT, read_metrics

import ppo
import sac

PLOT = os.path.join(ROOT, "benchmark", "plot.py")
sys.path.insert(0, os.path.dirname(PLOT))
import plot  # noqa: E402


def draw(*argv: str) -> str:
    out = subprocess.run([sys.executable, PLOT, *argv], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def assert_png(path, min_width=800, min_height=600) -> None:
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    assert width >= min_width and height >= min_height and len(data) > 20_000, (width, height, len(data))


def losses(run_dir: str) -> set[str]:
    return {k for r in read_metrics(run_dir) for k in r if k.startswith("losses/") or k == "charts/learning_rate"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/ holding a tiny ppo.py run on CartPole-v1 and a tiny sac.py run on Pendulum-v1, past its first updates."""
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("runs"))
    try:
        small = dict(progress_every=0.0, eval_episodes=1)
        p = ppo.main(ppo.Args(env_id="CartPole-v1", num_envs=2, num_steps=64, num_minibatches=2, total_timesteps=512, **small))
        small.update(hidden_sizes=(32, 32), batch_size=32, learning_starts=100, log_every=50)
        s = sac.main(sac.Args(env_id="Pendulum-v1", total_timesteps=300, **small))
        yield os.path.abspath(p["run_dir"]), os.path.abspath(s["run_dir"])
    finally:
        os.chdir(cwd)


def test_one_run_folder(runs):
    run_dir = runs[0]
    assert {"losses/policy_loss", "losses/value_loss", "charts/learning_rate"} <= losses(run_dir)
    out = draw(run_dir)
    png = os.path.join(run_dir, "curves.png")
    assert_png(png)
    assert f"wrote {png}" in out and os.path.basename(run_dir) in out and "eval" in out
    panels = out.split("panels: ")[1].splitlines()[0].split(", ")
    assert panels[0] == "episodic return" and set(panels[1:]) == losses(run_dir)


def test_folder_of_runs_overlaid(runs, tmp_path):
    ppo_dir, sac_dir = runs
    assert {"losses/qf_loss", "losses/actor_loss", "losses/alpha"} <= losses(sac_dir)
    folder = os.path.dirname(ppo_dir)
    out = draw(folder)
    assert_png(os.path.join(folder, "curves.png"))
    for run_dir in runs:
        assert os.path.basename(run_dir) + ": step" in out
    panels = out.split("panels: ")[1].splitlines()[0].split(", ")
    assert set(panels[1:]) == losses(ppo_dir) | losses(sac_dir)
    # --out: a .png file, or a folder to write curves.png in
    assert f"wrote {tmp_path / 'mine.png'}" in draw(folder, "--out", str(tmp_path / "mine.png"))
    assert_png(tmp_path / "mine.png")
    draw(folder + "/", "--out", str(tmp_path / "figs"))
    assert_png(tmp_path / "figs" / "curves.png")


def test_run_still_writing_with_no_episode_yet(tmp_path):
    run_dir = tmp_path / "runs" / "Hopper-v5__ppo__1__123"
    run_dir.mkdir(parents=True)
    lines = [json.dumps({"global_step": 2048 * i, "charts/learning_rate": 3e-4 / i, "losses/value_loss": 10.0 / i}) for i in (1, 2, 3)]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + '\n{"global_step": 8192, "losses/val')  # a line being written
    out = draw(str(run_dir))
    assert_png(run_dir / "curves.png")
    assert "Hopper-v5__ppo__1__123: step 6144, 0 episodes" in out and "no episode finished yet" in out
    assert "panels: episodic return, charts/learning_rate, losses/value_loss" in out
    # beside it a run that has logged nothing yet: left out, said so; the other still drawn
    (tmp_path / "runs" / "just_started").mkdir()
    (tmp_path / "runs" / "just_started" / "metrics.jsonl").write_text("")
    out = draw(str(tmp_path / "runs"))
    assert "just_started: nothing logged yet" in out and "Hopper-v5__ppo__1__123: step 6144" in out
    assert_png(tmp_path / "runs" / "curves.png")


def test_records_past_a_resumed_checkpoint_are_dropped(tmp_path):
    """A --resume appends from its checkpoint's step; what the killed run logged past the step logged again is dropped."""
    steps = [100, 200, 200, 300, 250, 300, 400]  # two episodes at 200; killed after 300, resumed, first logging 250
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"global_step": s, "losses/x": i}) + "\n" for i, s in enumerate(steps)))
    kept = [(r["global_step"], r["losses/x"]) for r in plot.read_run(str(tmp_path))]
    assert kept == [(100, 0), (200, 1), (200, 2), (250, 4), (300, 5), (400, 6)]


def test_moving_average_of_the_last_window():
    assert list(plot.moving_average([1.0, 3.0, 5.0, 7.0], 2)) == [1.0, 2.0, 4.0, 6.0]


def result(env_id: str, seed: int, curve: list[float], last100: float, steps=(30_000, 60_000, 90_000)) -> dict:
    flags = ["--eval-every", "30000", "--eval-episodes", "10", "--init-logstd", "-0.5"]
    return {"status": "done", "impl": "a2c", "env_id": env_id, "seed": seed, "return_last100": last100, "config": {"flags": flags},
            "eval_curve": {"global_step": list(steps), "return": curve}}  # fmt: skip


def test_best_eval_is_the_max_of_the_seed_mean_curve_and_the_ablation_table(tmp_path):
    """Tianshou's metric: the best point of the seed-averaged curve, not the mean of each seed's best (here 30 at
    step 60k, where the seeds' own bests, 30 and 40, would average 35); seeds aligned by evaluation, at the step by
    which all had made it; undefined when the seeds' numbers of evaluations differ."""
    runs = [result("Hopper-v5", 1, [10, 30, 0], 5.0), result("Hopper-v5", 2, [40, 30, 10], 7.0)]
    assert plot.best_eval(runs) == (30.0, 60_000)
    assert plot.best_eval(runs, budget=30_000) == (25.0, 30_000)
    assert plot.best_eval([runs[0], result("Hopper-v5", 3, [1, 2], 1.0, steps=(30_000, 60_000))]) is None
    late = result("Hopper-v5", 3, [40, 30, 10], 7.0, steps=(30_500, 61_000, 90_200))  # whole episodes: a little late
    assert plot.best_eval([runs[0], late]) == (30.0, 61_000)
    assert plot.best_eval([{**runs[0], "eval_curve": None}]) is None
    campaign = tmp_path / "a2c-x"
    campaign.mkdir()
    for r in runs:
        (campaign / f"Hopper-v5__a2c__{r['seed']}.json").write_text(json.dumps(r))
    table = draw(str(campaign), "--ablation", str(campaign)).splitlines()
    assert table[2] == "| a2c-x | `--init-logstd -0.5` | 30 (60k) | 6 (5, 7) |" == table[3]


def test_campaigns_merge_into_one_table_and_figure_and_a_run_is_never_counted_twice(tmp_path):
    """Ours in one campaign, the peer at the same settings in another (as the README's results are made): one
    table with the peer beside ours and its verdict, one figure; a run held by two of the folders is refused."""
    results = os.path.join(ROOT, "benchmark", "results")
    ours, peer = os.path.join(results, "a2c-logstd-0.5-torchrms"), os.path.join(results, "a2c-new-defaults-sb3")
    out = tmp_path / "merged"
    draw(ours, peer, "--out", str(out))
    rows = [line for line in (out / "table.md").read_text().splitlines() if line.startswith("| Hopper-v5 | a2c.py | 5 |")]
    assert len(rows) == 1 and "| SB3 A2C (3) |" in rows[0] and "no worse" in rows[0], rows
    assert_png(out / "curves.png", min_height=400)
    assert (out / "mapping.md").exists()
    twice = subprocess.run([sys.executable, PLOT, ours, ours, "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert twice.returncode == 2 and "a2c seed 1 is in both" in twice.stderr
    alone = subprocess.run([sys.executable, PLOT, ours, peer], capture_output=True, text=True)
    assert alone.returncode == 2 and "--out" in alone.stderr
