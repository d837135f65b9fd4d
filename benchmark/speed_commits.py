"""Time two commits of the scripts against each other: the new commit's steps per second over the old one's.

  python benchmark/speed_commits.py OLD NEW [--scripts ppo.py ...] [--rounds 3] [--out results/speed_commits.jsonl]
  python benchmark/speed_commits.py HEAD WORKTREE          # the uncommitted working tree against the last commit

Each commit's tree is materialised as benchmark/compare_commits.py does (NEW may be WORKTREE). Per script, the same
seeded Hopper-v5 run at the script's default hyper-parameters, shortened, runs in turn OLD, NEW, OLD, NEW ... in
--rounds pairs, one at a time, each in its own process and working directory. The figure is the run's own steps
per second (the summary's sps: transitions per wall second inside main(), updates included, imports, env building
and evaluation left out). The ratio of each pair is NEW / OLD; the median over the rounds is the verdict, and its
spread says how noisy the machine was. A speed claim needs a quiet machine: other work on the cores moves single
runs by 10-20%, though pairs run back to back share most of it.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_commits import ROOT, leg_env, materialise, resolve  # noqa: E402

# Hopper-v5, default hyper-parameters, a few updates' worth of steps (10-30 s a run on one core)
RUNS = {
    "ppo.py": "--total-timesteps 16384",
    "ppo_kl.py": "--total-timesteps 16384",
    "trpo.py": "--total-timesteps 16384",
    "a2c.py": "--total-timesteps 40000",
    "reinforce.py": "--total-timesteps 20000",
    "sac.py": "--learning-starts 1000 --total-timesteps 3000",
}
DRIVER = """
import json, sys
tree, script, out, *argv = sys.argv[1:]
sys.path.insert(0, tree)
sys.argv = [script, *argv]
mod = __import__(script[:-3])
summary = mod.main(mod.cli(mod.Args))
json.dump({"sps": summary["sps"], "global_step": summary["global_step"]}, open(out, "w"))
"""


def run_once(tree: Path, script: str, workdir: Path) -> float:
    workdir.mkdir(parents=True)
    flags = ["--env-id", "Hopper-v5", "--seed", "1", "--eval-episodes", "0", "--progress-every", "1e9", *RUNS[script].split()]
    out = workdir / "summary.json"
    subprocess.run(
        [sys.executable, "-c", DRIVER, str(tree), script, str(out), *flags], cwd=workdir, env=leg_env(), check=True, capture_output=True
    )
    return float(json.loads(out.read_text())["sps"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--scripts", nargs="+", default=list(RUNS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=None, help="append one JSON line per script to this file")
    args = p.parse_args()
    old, new = resolve(ROOT, args.old), resolve(ROOT, args.new)
    with tempfile.TemporaryDirectory(prefix="speed_commits_") as tmp:
        trees = {"old": Path(tmp) / "old", "new": Path(tmp) / "new"}
        materialise(ROOT, old, trees["old"])
        materialise(ROOT, new, trees["new"])
        for script in args.scripts:
            sps = {"old": [], "new": []}
            for r in range(args.rounds):
                for side in ("old", "new"):
                    sps[side].append(run_once(trees[side], script, Path(tmp) / f"{script}-{side}-{r}"))
            ratios = [n / o for n, o in zip(sps["new"], sps["old"], strict=True)]
            row = {
                "script": script,
                "old": old[:12],
                "new": new if new == "WORKTREE" else new[:12],
                "flags": RUNS[script],
                "sps_old": sps["old"],
                "sps_new": sps["new"],
                "ratios": [round(x, 4) for x in ratios],
                "median_ratio": round(statistics.median(ratios), 4),
                "when": time.strftime("%Y-%m-%d %H:%M"),
                "cpu": os.uname().machine,
            }
            print(
                f"{script:13s} new/old SPS {row['median_ratio']:.3f} (pairs {', '.join(f'{x:.3f}' for x in ratios)}; old {sps['old']}, new {sps['new']})"
            )
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
