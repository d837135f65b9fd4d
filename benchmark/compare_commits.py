"""Prove that two commits of the six scripts train bit-identically: the same seeded runs in both, compared bit for bit.

  python benchmark/compare_commits.py OLD NEW [--scripts ppo.py sac.py ...] [--configs CartPole-v1 ...] [--jobs 2] [--keep DIR]
  python benchmark/compare_commits.py HEAD~1 HEAD          # a refactor that was committed
  python benchmark/compare_commits.py HEAD WORKTREE        # the uncommitted working tree, before committing
  python benchmark/compare_commits.py HEAD HEAD            # the harness itself: must print IDENTICAL everywhere

OLD and NEW are git commit-ish; NEW (or OLD) may be the literal WORKTREE: the tracked and untracked, not ignored files
of the working tree as they are now. Exit status 0 iff every leg is identical (1: a difference or a failed run, 2:
bad usage).

What it proves: for the configurations below, the NEW commit's scripts produce exactly the same numbers as the OLD
ones (every logged value, the returned episode and evaluation returns, and every tensor of every checkpoint, down to
the last bit) on this machine and software stack. It says nothing about configurations it does not run, nor about
other machines (the scripts are deterministic on one machine, not across CPUs or library versions).

How: each commit's tree is materialised in a temporary directory (`git archive | tar -x`; a copy of the files for
WORKTREE). Each (script, config) then runs in its own fresh working directory (so runs/ and videos/ never collide),
as three legs in turn:
  train   seeded training, small (a few iterations), --save-model, --save-every (a mid-run checkpoint), --eval-episodes 2
  resume  --resume <the train checkpoint> --total-timesteps <larger>: the same run continued
  eval    --eval-checkpoint <the resumed checkpoint> --eval-episodes 2: no training
The checkpoints are copied to fixed names (resume.pt, eval.pt) before they are passed, so the paths stored in the
next checkpoint's args are the same in both commits. Each leg runs in a subprocess through a small driver: with the
commit's tree first on sys.path, sys.argv set, `import <script>; summary = mod.main(mod.cli(mod.Args))`, the summary
written as JSON (exact for Python floats). If the module has no such main/cli/Args (a later refactor may rename them),
the driver runs `python <script> ...` instead and only the files are compared. The environment is
WANDB_MODE=offline MUJOCO_GL=egl, plus OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0, the same for both
commits. Up to --jobs (script, config, commit) units run at a time; the legs of one unit run in order.

What is compared, per (script, config, leg), OLD against NEW:
  - metrics: the lines each leg appended to every runs/<run>/metrics.jsonl. Runs are matched by order of creation
    within the config (their folder names hold a timestamp, so not by name): the same number of runs, and of lines,
    each line with the same keys, and every value identical: floats with == (and the same sign, so 0.0 != -0.0),
    NaN equal to NaN, ints and floats not mixed. Values of keys whose name contains "SPS"/"sps" are skipped
    (timing); the keys themselves must still be there.
  - the summary main() returned: eval_returns, episodic_returns and global_step (and any other key both have) exactly
    equal; run_dir, checkpoint paths and sps are dropped (paths hold timestamps, sps is timing).
  - every checkpoint (*.pt) under runs/ as it is at the end of the leg (the --save-every checkpoint is the same file
    as the final one, overwritten; its last state is what is compared): loaded with torch.load(weights_only=True)
    and compared recursively: the same keys, tensors of the same dtype and shape and the same bytes (so NaN payloads
    and signed zeros count too), lists and tuples alike element by element, other leaves with ==. The key run_name
    is skipped (it holds the run's timestamp).
Not compared: args.json (it names the run's paths), stdout (progress lines carry SPS and times), videos (not made),
the wall times (printed per leg and commit for information only; concurrent runs share the cores, so they are no
speed claim).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
WORKTREE = "WORKTREE"
LEGS = ("train", "resume", "eval")
SKIP_CHECKPOINT_KEYS = frozenset({"run_name"})
SUMMARY_DROP = frozenset({"run_dir", "checkpoint", "sps"})
SUMMARY_CORE = ("global_step", "episodic_returns", "eval_returns")

# Per script: its configs as (config name = env id, train flags, resume --total-timesteps). Every config trains past
# a few updates, writes a mid-run checkpoint (--save-every) and a final one, then is resumed and evaluated.
COMMON = "--seed 1 --save-model --eval-episodes 2".split()
PPO_LIKE = "--num-envs 2 --num-steps 256 --num-minibatches 4 --update-epochs 2".split()  # a batch of 512
ON_POLICY = {
    # 4 iterations of a 512 batch, a checkpoint after the 2nd; resumed for 2 more
    "ppo.py": (PPO_LIKE + "--total-timesteps 2048 --save-every 1024".split(), 3072),
    "ppo_kl.py": (PPO_LIKE + "--total-timesteps 2048 --save-every 1024".split(), 3072),
    "trpo.py": (PPO_LIKE + "--total-timesteps 2048 --save-every 1024".split(), 3072),
    # 8 updates of a 4 x 32 batch; resumed for 4 more
    "a2c.py": ("--num-envs 4 --num-steps 32 --total-timesteps 1024 --save-every 512".split(), 1536),
    # --num-steps is the least batch of whole episodes (Pendulum: two 200-step episodes a batch)
    "reinforce.py": ("--num-envs 2 --num-steps 256 --vf-iters 10 --total-timesteps 1600 --save-every 800".split(), 2400),
}
# 1000 updates; 64-wide nets and batches (the default 256 is five times slower and runs the same code)
SAC = "--learning-starts 500 --log-every 250 --total-timesteps 1500 --save-every 1000 --hidden-sizes 64 64 --batch-size 64".split()


@dataclasses.dataclass(frozen=True)
class Config:
    script: str
    name: str  # the env id
    train: tuple[str, ...]
    resume_total: int

    def legs(self) -> dict[str, list[str]]:
        """The flags of each leg; resume.pt / eval.pt are copies made in the working directory just before."""
        return {
            "train": ["--env-id", self.name, *self.train],
            "resume": ["--resume", "resume.pt", "--total-timesteps", str(self.resume_total)],
            "eval": ["--eval-checkpoint", "eval.pt", "--eval-episodes", "2"],
        }


def all_configs() -> list[Config]:
    configs = []
    for script, (flags, resume_total) in ON_POLICY.items():
        for env in ("CartPole-v1", "Pendulum-v1"):  # Discrete; Box (normalisation on by default)
            configs.append(Config(script, env, tuple(COMMON + flags), resume_total))
    for env in ("Pendulum-v1", "InvertedPendulum-v5"):
        configs.append(Config("sac.py", env, tuple(COMMON + SAC), 2500))  # resume: 500 refill + 500 updates
    return configs


# ---------------------------------------------------------------------------------------------------
# The comparison: plain functions, each returning None (identical) or the first difference, in words.
# ---------------------------------------------------------------------------------------------------
def is_timing_key(key: str) -> bool:
    return "SPS" in key or "sps" in key


def _name(path: str) -> str:
    return path or "<top>"


def floats_equal(a: float, b: float) -> bool:
    """Bit-identical for what JSON carries: ==, the same sign (0.0 vs -0.0 differ), and NaN equal to NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def diff_tensors(a: torch.Tensor, b: torch.Tensor, path: str = "") -> str | None:
    """Same dtype, shape and bytes, element by element (NaN payloads and signed zeros included)."""
    if a.dtype != b.dtype:
        return f"{_name(path)}: dtype {a.dtype} != {b.dtype}"
    if tuple(a.shape) != tuple(b.shape):
        return f"{_name(path)}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    if a.layout != torch.strided or b.layout != torch.strided:
        return None if torch.equal(a.to_dense(), b.to_dense()) else f"{_name(path)}: sparse tensors differ"
    n, size = a.numel(), a.element_size()
    if n == 0:
        return None
    ab = a.detach().cpu().contiguous().reshape(-1).view(torch.uint8).reshape(n, size)
    bb = b.detach().cpu().contiguous().reshape(-1).view(torch.uint8).reshape(n, size)
    differ = (ab != bb).any(1)
    if not differ.any():
        return None
    i = int(differ.nonzero()[0])
    index = tuple(int(j) for j in np.unravel_index(i, tuple(a.shape))) if a.dim() else ()
    where = f"{_name(path)}[{', '.join(map(str, index))}]" if index else _name(path)
    va, vb = a.reshape(-1)[i].item(), b.reshape(-1)[i].item()
    return f"{where} {va!r} != {vb!r} ({int(differ.sum())} of {n} elements differ)"


def diff_values(a, b, path: str = "", skip_keys: frozenset[str] = frozenset()) -> str | None:
    """Recursive: dicts (same keys, skip_keys ignored at any depth), lists/tuples alike, tensors bit for bit,
    NumPy arrays by dtype/shape/bytes, floats by floats_equal, everything else by type and ==."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return f"{_name(path)}: {type(a).__name__} != {type(b).__name__}"
        return diff_tensors(a, b, path)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return f"{_name(path)}: {type(a).__name__} != {type(b).__name__}"
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{_name(path)}: array {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        return None if a.tobytes() == b.tobytes() else f"{_name(path)}: arrays differ"
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)):
            return f"{_name(path)}: {type(a).__name__} != {type(b).__name__}"
        keys_a, keys_b = [k for k in a if k not in skip_keys], [k for k in b if k not in skip_keys]
        only_a, only_b = [k for k in keys_a if k not in b], [k for k in keys_b if k not in a]
        if only_a or only_b:
            return f"{_name(path)}: keys only in old {only_a}, only in new {only_b}"
        for k in keys_a:
            d = diff_values(a[k], b[k], f"{path}[{k!r}]", skip_keys)
            if d:
                return d
        return None
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))):
            return f"{_name(path)}: {type(a).__name__} != {type(b).__name__}"
        if len(a) != len(b):
            return f"{_name(path)}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = diff_values(x, y, f"{path}[{i}]", skip_keys)
            if d:
                return d
        return None
    if type(a) is not type(b):
        return f"{_name(path)}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"
    if isinstance(a, float):
        return None if floats_equal(a, b) else f"{_name(path)}: {a!r} != {b!r}"
    try:
        equal = bool(a == b)
    except Exception as e:  # an object whose == does not give a truth value
        return f"{_name(path)}: cannot compare {type(a).__name__} ({e})"
    return None if equal else f"{_name(path)}: {a!r} != {b!r}"


def load_checkpoint(path: str | os.PathLike):
    return torch.load(path, map_location="cpu", weights_only=True)


def diff_checkpoints(a, b) -> str | None:
    """Two loaded checkpoints (or anything torch.load gives), run_name skipped."""
    return diff_values(a, b, "", SKIP_CHECKPOINT_KEYS)


def diff_checkpoint_files(path_a: str | os.PathLike, path_b: str | os.PathLike) -> str | None:
    try:
        a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    except Exception as e:
        return f"could not load ({type(e).__name__}: {e})".splitlines()[0]
    return diff_checkpoints(a, b)


def parse_metrics_line(line) -> dict:
    return line if isinstance(line, dict) else json.loads(line)


def diff_metrics(lines_a: list, lines_b: list, first_line: int = 1) -> str | None:
    """metrics.jsonl lines (strings or parsed dicts), line by line: the same count, global_step and keys, and
    every value identical except those of timing keys (is_timing_key). first_line numbers the first line given."""
    for i, (ra, rb) in enumerate(zip(lines_a, lines_b, strict=False)):
        n = first_line + i
        try:
            a, b = parse_metrics_line(ra), parse_metrics_line(rb)
        except json.JSONDecodeError as e:
            return f"metrics line {n}: not JSON ({e})"
        if not (isinstance(a, dict) and isinstance(b, dict)):
            return f"metrics line {n}: not a JSON object"
        d = diff_values(a.get("global_step"), b.get("global_step"))
        if d:
            return f"metrics line {n} global_step {a.get('global_step')!r} != {b.get('global_step')!r}"
        if list(a) != list(b) and set(a) != set(b):
            only_a, only_b = [k for k in a if k not in b], [k for k in b if k not in a]
            return f"metrics line {n} (global_step {a.get('global_step')}): keys only in old {only_a}, only in new {only_b}"
        for k in a:
            if is_timing_key(k):
                continue
            d = diff_values(a[k], b[k])
            if d:
                return f"metrics line {n} key {k} {a[k]!r} != {b[k]!r}"
    if len(lines_a) != len(lines_b):
        return f"metrics: {len(lines_a)} lines != {len(lines_b)} lines"
    return None


def clean_summary(summary) -> dict | None:
    """What main() returned, minus paths and timing (SUMMARY_DROP, timing keys)."""
    if not isinstance(summary, dict):
        return None
    return {k: v for k, v in summary.items() if k not in SUMMARY_DROP and not is_timing_key(k)}


def diff_summaries(a: dict | None, b: dict | None) -> str | None:
    """The core keys (global_step, episodic_returns, eval_returns) must match, presence included; other keys are
    compared where both have them. None (no summary: a script run as a plain process) compares nothing."""
    if a is None or b is None:
        return None
    a, b = clean_summary(a), clean_summary(b)
    for k in list(SUMMARY_CORE) + [k for k in a if k in b and k not in SUMMARY_CORE]:
        if (k in a) != (k in b):
            return f"summary key {k}: {'only in old' if k in a else 'only in new'}"
        if k in a:
            d = diff_values(a[k], b[k], f"summary[{k!r}]")
            if d:
                return d
    return None


# ---------------------------------------------------------------------------------------------------
# Running: trees, the driver, the legs.
# ---------------------------------------------------------------------------------------------------
# Runs one leg in the commit's tree: argv = [tree, script, out.json, *flags], cwd = the config's working directory.
DRIVER = r"""
import importlib, inspect, json, os, subprocess, sys
tree, script, out, argv = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
path = os.path.join(tree, script)
sys.path.insert(0, tree)
sys.argv = [path, *argv]

def plain(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    return str(x)

mod = importlib.import_module(script[:-3])
main, cli, Args = getattr(mod, "main", None), getattr(mod, "cli", None), getattr(mod, "Args", None)
nparams = None
if callable(cli):
    try:
        nparams = len([p for p in inspect.signature(cli).parameters.values() if p.default is p.empty])
    except (TypeError, ValueError):
        pass
if callable(main) and Args is not None and nparams in (0, 1):
    summary, mode = main(cli(Args) if nparams == 1 else cli()), "import"
else:  # main/cli/Args renamed: run the script as a process, compare only its files
    subprocess.run([sys.executable, path, *argv], check=True)
    summary, mode = None, "subprocess"
record = {"mode": mode, "summary": summary if isinstance(summary, dict) else None}
with open(out, "w") as f:
    json.dump(record, f, default=plain)
"""


def git(repo: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, **kw)


def resolve(repo: Path, rev: str) -> str:
    """A commit's full hash, or WORKTREE."""
    if rev == WORKTREE:
        return WORKTREE
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", text=True).stdout.strip()
    except subprocess.CalledProcessError:
        raise SystemExit(f"compare_commits.py: error: {rev!r} is not a commit of {repo} (nor {WORKTREE})") from None


def materialise(repo: Path, rev: str, dest: Path) -> None:
    """The commit's tree (git archive | tar -x), or for WORKTREE a copy of the tracked and untracked, not ignored
    files as they are now (deleted ones left out)."""
    dest.mkdir(parents=True)
    if rev == WORKTREE:
        names = git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout.split(b"\0")
        for name in sorted({n.decode() for n in names if n}):
            src = repo / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
        return
    archive = subprocess.Popen(["git", "-C", str(repo), "archive", "--format=tar", rev], stdout=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True)
    archive.stdout.close()
    if archive.wait() or tar.returncode:
        raise SystemExit(f"compare_commits.py: error: could not extract {rev}: {tar.stderr.decode().strip()}")


def leg_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the driver puts the commit's tree first; nothing else of ours
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", MUJOCO_GL="egl", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    return env


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclasses.dataclass
class LegResult:
    ok: bool = False
    error: str = ""
    wall: float = 0.0
    mode: str = ""
    summary: dict | None = None
    metrics: list = dataclasses.field(default_factory=list)  # per run (creation order): (first line no., lines added)
    checkpoints: dict = dataclasses.field(default_factory=dict)  # "run <i>/<relpath>" -> snapshot path
    skipped: bool = False


def run_unit(tree: Path, workdir: Path, cfg: Config, timeout: float) -> dict[str, LegResult]:
    """The legs of one (script, config) in one commit's tree, in order, in a fresh working directory; after each
    leg, the metrics lines it added and a snapshot of every checkpoint under runs/."""
    workdir.mkdir(parents=True)
    runs_order: list[str] = []  # run folders by order of creation
    line_counts: dict[str, int] = {}
    results: dict[str, LegResult] = {}
    checkpoint = None  # the latest checkpoint the scripts reported (or found)
    for leg, flags in cfg.legs().items():
        res = results[leg] = LegResult()
        if leg != "train":
            if checkpoint is None or not (workdir / checkpoint).is_file():
                res.skipped, res.error = True, "no checkpoint from the previous leg"
                continue
            shutil.copy2(workdir / checkpoint, workdir / f"{leg if leg == 'eval' else 'resume'}.pt")
        out = workdir / f"{leg}.summary.json"
        cmd = [sys.executable, "-c", DRIVER, str(tree), cfg.script, str(out), *flags]
        start = time.perf_counter()
        with open(workdir / f"{leg}.log", "w") as log:
            log.write(f"$ {cfg.script} {' '.join(flags)}\n")
            log.flush()
            try:
                proc = subprocess.run(cmd, cwd=workdir, env=leg_env(), stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        res.wall = time.perf_counter() - start
        if rc != 0 or not out.is_file():
            tail = (workdir / f"{leg}.log").read_text(errors="replace").strip().splitlines()
            res.error = f"exit {rc}: {tail[-1] if tail else ''}"[:300]
            continue
        record = json.loads(out.read_text())
        res.ok, res.mode, res.summary = True, record["mode"], clean_summary(record["summary"])
        if isinstance(record["summary"], dict) and isinstance(record["summary"].get("checkpoint"), str):
            checkpoint = record["summary"]["checkpoint"]
        # runs/: new folders join the order (several new in one leg: by name, whose number is the time)
        runs = workdir / "runs"
        present = sorted((p.name for p in runs.iterdir() if p.is_dir()), key=_natural) if runs.is_dir() else []
        runs_order += [name for name in present if name not in runs_order]
        for i, name in enumerate(runs_order):
            run_dir = runs / name
            metrics = run_dir / "metrics.jsonl"
            lines = metrics.read_text().splitlines() if metrics.is_file() else []
            start_line = line_counts.get(name, 0)
            res.metrics.append((start_line + 1, lines[start_line:]))
            line_counts[name] = len(lines)
            for pt in sorted(run_dir.rglob("*.pt")) if run_dir.is_dir() else []:
                rel = pt.relative_to(run_dir)
                snap = workdir / "_snapshots" / leg / str(i) / rel
                snap.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(pt, snap)
                res.checkpoints[f"run {i + 1}/{rel}"] = snap
                if leg == "train" and checkpoint is None:  # the plain-process fallback: the script's own checkpoint
                    checkpoint = str(pt.relative_to(workdir))
    return results


def compare_leg(old: LegResult, new: LegResult) -> str | None:
    """None if identical, else the first difference."""
    if old.skipped or new.skipped:
        return f"skipped: {old.error or new.error}"
    if not old.ok or not new.ok:
        parts = [f"{side} failed ({r.error})" for side, r in (("old", old), ("new", new)) if not r.ok]
        return "; ".join(parts)
    if len(old.metrics) != len(new.metrics):
        return f"runs/: {len(old.metrics)} runs != {len(new.metrics)} runs"
    for i, ((first, la), (_, lb)) in enumerate(zip(old.metrics, new.metrics, strict=True)):
        d = diff_metrics(la, lb, first)
        if d:
            return (f"run {i + 1} " if len(old.metrics) > 1 else "") + d
    d = diff_summaries(old.summary, new.summary)
    if d:
        return d
    if set(old.checkpoints) != set(new.checkpoints):
        return f"checkpoints: old {sorted(old.checkpoints)} != new {sorted(new.checkpoints)}"
    for key in sorted(old.checkpoints):
        d = diff_checkpoint_files(old.checkpoints[key], new.checkpoints[key])
        if d:
            return f"checkpoint {key}: {d}"
    return None


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="compare_commits.py",
        description="Run the same seeded configurations in two commits and compare metrics, summaries and checkpoints bit for bit.",
    )
    p.add_argument("old", help="git commit-ish, or WORKTREE")
    p.add_argument("new", help="git commit-ish, or WORKTREE (the current uncommitted working tree)")
    names = sorted({c.script for c in all_configs()})
    p.add_argument("--scripts", nargs="+", default=None, metavar="SCRIPT", help=f"default: all of {' '.join(names)}")
    envs = sorted({c.name for c in all_configs()})
    p.add_argument("--configs", nargs="+", default=None, metavar="ENV", help=f"only these configs (env ids: {' '.join(envs)})")
    p.add_argument("--jobs", type=int, default=2, help="(script, config, commit) units run at a time (default 2)")
    p.add_argument("--keep", default=None, metavar="DIR", help="work in DIR (must not exist) and keep the trees, runs and logs")
    p.add_argument("--repo", default=str(ROOT), help="the git repository (default: the one holding this file)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one leg may run (default 600)")
    p.add_argument(
        "--ignore-keys", nargs="+", default=[], metavar="KEY", help="checkpoint keys (at any depth) a change adds on purpose: not compared"
    )
    args = p.parse_args(argv)
    args.configs_list = [c for c in all_configs() if (args.scripts is None or c.script in args.scripts)]
    args.configs_list = [c for c in args.configs_list if args.configs is None or c.name in args.configs]
    unknown = sorted(set(args.scripts or []) - set(names)) + sorted(set(args.configs or []) - set(envs))
    if unknown:
        p.error(f"unknown script or config: {' '.join(unknown)}")
    if not args.configs_list:
        p.error("no configuration left to run")
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    global SKIP_CHECKPOINT_KEYS
    SKIP_CHECKPOINT_KEYS = SKIP_CHECKPOINT_KEYS | frozenset(args.ignore_keys)
    t0 = time.perf_counter()
    repo = Path(args.repo).resolve()
    sides = {"old": (args.old, resolve(repo, args.old)), "new": (args.new, resolve(repo, args.new))}
    if args.keep:
        base = Path(args.keep).resolve()
        if base.exists():
            raise SystemExit(f"compare_commits.py: error: --keep {base} already exists")
        base.mkdir(parents=True)
    else:
        base = Path(tempfile.mkdtemp(prefix="compare_commits_"))
    for side, (rev, sha) in sides.items():
        print(f"{side}: {rev}" + (f" = {sha}" if sha != rev else ""), flush=True)
    print(
        f"work dir: {base}{' (kept)' if args.keep else ''}; {len(args.configs_list)} configs x {len(LEGS)} legs; --jobs {args.jobs}",
        flush=True,
    )
    try:
        trees = {}
        for side, (_, sha) in sides.items():
            trees[side] = base / side / "tree"
            materialise(repo, sha, trees[side])
        units = [(side, cfg) for cfg in args.configs_list for side in sides]
        results: dict[tuple[str, Config], dict[str, LegResult]] = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {
                pool.submit(run_unit, trees[side], base / side / "work" / f"{cfg.script[:-3]}__{cfg.name}", cfg, args.timeout): (side, cfg)
                for side, cfg in units
            }
            for fut in concurrent.futures.as_completed(futures):
                results[futures[fut]] = fut.result()
        identical, lines = 0, []
        for cfg in args.configs_list:
            for leg in LEGS:
                old, new = results[("old", cfg)][leg], results[("new", cfg)][leg]
                d = compare_leg(old, new)
                identical += d is None
                modes = {r.mode for r in (old, new) if r.mode}
                note = " [summary not captured: plain process]" if "subprocess" in modes else ""
                times = f"(old {old.wall:.1f} s, new {new.wall:.1f} s)"
                lines.append(f"{cfg.script:<13} {cfg.name:<20} {leg:<7} {'IDENTICAL' if d is None else 'DIFFERENT: ' + d}{note}  {times}")
                print(lines[-1], flush=True)
        total = len(args.configs_list) * len(LEGS)
        wall = time.perf_counter() - t0
        verdict = "all identical" if identical == total else f"{total - identical} DIFFERENT"
        print(f"summary: {identical}/{total} legs identical ({verdict}); {args.old} vs {args.new}; wall time {wall:.0f} s", flush=True)
        return 0 if identical == total else 1
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
