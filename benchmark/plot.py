"""Learning curves and tables from a campaign's results (benchmark/run.py writes them), or from your own runs.

  python benchmark/plot.py benchmark/results/quick            # -> curves.png, table.md, mapping.md there
  python benchmark/plot.py benchmark/results/speed --speed    # -> table.md with steps per second only
  python benchmark/plot.py runs/<run>                         # your run's metrics.jsonl -> runs/<run>/curves.png
  python benchmark/plot.py runs/                              # every run in runs/, overlaid -> runs/curves.png
  python benchmark/plot.py benchmark/results/a2c-x --ablation benchmark/results/a2c-y   # a row per campaign, on stdout
  python benchmark/plot.py benchmark/results/ppo-x benchmark/results/ppo-x-sb3 --out DIR  # campaigns merged into one

A campaign's curves.png: one panel per env; each implementation's mean over seeds (line) and +-1 standard
deviation (band), ours solid and the peers dashed in the same colour. A seed's curve at step x is the mean of its
last --window training episodes that ended by x.
table.md: per env and script, the return (metric named), the final deterministic evaluation, the best of the
seed-mean --eval-every curve (Tianshou's metric; with --eval-every runs), SPS, beside the
reference (the script's peer; ppo.py for ppo_kl.py), with the ratios and the bootstrap "no worse" verdict.
mapping.md: the peers' hyper-parameter mapping tables, as the runs recorded them.

Your own runs (a folder holding metrics.jsonl, or a folder of them; no W&B needed), one PNG: on top the episodic
return against global_step, each episode faint, the mean of the last --window episodes solid, the final evaluation
(eval/episodic_return) as a star; below, a panel per loss or diagnostic logged (losses/*, charts/learning_rate),
the runs overlaid, labelled by their folder names. Runs still training are drawn as far as they have got.
"""

import argparse
import glob
import itertools
import json
import os
import textwrap
import warnings

import numpy as np
from run import DEFINITIONS, read_metrics  # as run.py writes them into each result; used for results without them

COLOURS = {"reinforce": "tab:brown", "a2c": "tab:green", "trpo": "tab:purple", "ppo": "tab:blue", "ppo_kl": "tab:cyan", "sac": "tab:red"}
REFERENCE = {"ppo_kl.py": "ppo"}  # no peer: compare with ppo.py (PPO paper, section 6.1: adaptive KL ~90% of clip)


def load(results_dir: str, include_running: bool = False) -> list[dict]:
    results = []
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        with open(path) as f:
            r = json.load(f)
        if r.get("status") == "done" or (include_running and r.get("status") in ("running", "interrupted")):
            results.append(r)
    return results


def label(r: dict) -> str:
    if r["kind"] == "ours":
        return r["script"]
    library, algo = r["peer"].split("/")
    return f"{'SB3' if library == 'stable_baselines3' else 'sb3-contrib'} {algo}"


def group(results: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """env -> impl -> runs (one per seed), in the order first seen."""
    out: dict[str, dict[str, list[dict]]] = {}
    for r in results:
        out.setdefault(r["env_id"], {}).setdefault(r["impl"], []).append(r)
    return out


def seed_curve(r: dict, grid: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` episodes that ended at or before each grid step; NaN before the first."""
    steps = np.asarray(r["episodes"]["global_step"], dtype=float)
    returns = np.asarray(r["episodes"]["return"], dtype=float)
    csum = np.concatenate([[0.0], np.cumsum(returns)])
    hi = np.searchsorted(steps, grid, side="right")
    lo = np.maximum(hi - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(hi > 0, (csum[hi] - csum[lo]) / (hi - lo), np.nan)


def bootstrap_diff(ours: list[float], ref: list[float], resamples: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """mean(ours) - mean(ref) and its 95% percentile-bootstrap interval, each group resampled over its seeds."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(ours, float), np.asarray(ref, float)
    means_a = a[rng.integers(0, len(a), (resamples, len(a)))].mean(1)
    means_b = b[rng.integers(0, len(b), (resamples, len(b)))].mean(1)
    lo, hi = np.percentile(means_a - means_b, [2.5, 97.5])
    return float(a.mean() - b.mean()), float(lo), float(hi)


def verdict(lo: float, hi: float) -> str:
    if hi < 0:
        return "worse"
    return "no worse (favours us)" if lo > 0 else "no worse"


def plot_curves(results: list[dict], path: str, title: str, window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    groups = group(results)
    ncols = min(3, len(groups))
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 3.9 * nrows + 0.6), squeeze=False)
    for ax, (env_id, impls) in zip(axes.flat, groups.items(), strict=False):
        for runs in sorted(impls.values(), key=lambda runs: (runs[0]["script"], runs[0]["kind"] != "ours")):
            end = max(r["global_step"] for r in runs)
            grid = np.linspace(0, end, 200)
            curves = np.stack([seed_curve(r, grid, window) for r in runs])
            with warnings.catch_warnings():  # all-NaN columns before any episode ended
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
            colour = COLOURS.get(runs[0]["script"][:-3], "tab:olive")
            style = "-" if runs[0]["kind"] == "ours" else "--"
            ax.plot(grid, mean, style, color=colour, lw=1.8, label=f"{label(runs[0])} ({len(runs)} seed{'s' * (len(runs) > 1)})")
            ax.fill_between(grid, mean - std, mean + std, color=colour, alpha=0.15, lw=0)
        ax.set_title(env_id)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("episodic return")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    caption = textwrap.wrap(
        f"Line: mean over seeds; band: ±1 std over seeds; a seed's value at step x is the mean of its last {window} training "
        "episodes ended by x. Solid: ours; dashed: the peer.",
        width=int(5.4 * ncols * 16),  # characters of fontsize 8 per inch, about
    )
    bottom = 0.012 * len(caption) / nrows + 0.02
    fig.text(0.5, 0.005, "\n".join(caption), ha="center", va="bottom", fontsize=8, color="0.3")
    fig.tight_layout(rect=(0, bottom + 0.01, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def best_eval(runs: list[dict], budget: int | None = None) -> tuple[float, int] | None:
    """Tianshou's metric: the maximum over evaluations (up to budget) of the seed-mean --eval-every return, and the
    step by which every seed had made that evaluation. Seeds are aligned by the evaluation's index: a script whose
    iterations are not a divisor of --eval-every (REINFORCE's whole episodes) evaluates a little after each multiple.
    None unless every seed has the same number of evaluations."""
    curves = [r.get("eval_curve") for r in runs]
    if not curves or not all(curves) or len({len(c["return"]) for c in curves}) != 1:
        return None
    steps = np.max([c["global_step"] for c in curves], 0)
    keep = steps <= (budget or steps.max())
    mean = np.mean([np.array(c["return"])[keep] for c in curves], 0)
    return float(mean.max()), int(steps[keep][mean.argmax()])


def ablation(dirs: list[str], impl: str | None = None) -> str:
    """One row per campaign and implementation (a setting tried; only `impl` if given), one column pair per env:
    best_eval (Tianshou's metric) and the mean of the last 100 training episodes (CleanRL's), per seed in brackets."""
    campaigns = [(os.path.basename(os.path.normpath(d)), [r for r in load(d) if impl in (None, r["impl"])]) for d in dirs]
    envs = list(dict.fromkeys(r["env_id"] for _, results in campaigns for r in results))
    lines = ["| campaign | flags | " + " | ".join(f"{e}: best eval (step) | {e}: last 100 (seeds)" for e in envs) + " |"]
    lines.append("|---|---|" + "---|---|" * len(envs))
    for name, results in campaigns:
        impls = list(dict.fromkeys(r["impl"] for r in results))
        for i in impls:
            mine = [r for r in results if r["impl"] == i]
            flags = " ".join(f for f in mine[0]["config"]["flags"] if f not in ("--eval-every", "30000", "--eval-episodes", "10"))
            cells = [name if len(impls) == 1 else f"{name}: {i}", f"`{flags}`" if flags else "(defaults)"]
            for env in envs:
                runs = sorted((r for r in mine if r["env_id"] == env), key=lambda r: r["seed"])
                best, last = best_eval(runs), [r["return_last100"] for r in runs]
                cells.append(f"{best[0]:.0f} ({best[1] // 1000}k)" if best else "-")
                cells.append(f"{np.mean(last):.0f} ({', '.join(f'{x:.0f}' for x in last)})" if last else "-")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fmt(values: list[float], digits: int = 1) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{np.mean(values):.{digits}f} +- {np.std(values):.{digits}f}" if len(values) > 1 else f"{values[0]:.{digits}f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a > 0 and b > 0 else "-"


def rows(results: list[dict]) -> list[dict]:
    """One row per (env, our script), with its reference; peers with no script of ours in the results get a row."""
    out = []
    for env_id, impls in group(results).items():
        used = set()
        for impl, runs in impls.items():
            if runs[0]["kind"] != "ours":
                continue
            script = runs[0]["script"]
            ref_impl = next((i for i, rs in impls.items() if rs[0]["kind"] == "peer" and rs[0]["script"] == script), REFERENCE.get(script))
            ref = impls.get(ref_impl) if ref_impl else None
            used.add(ref_impl)
            out.append({"env": env_id, "impl": impl, "runs": runs, "ref": ref})
        out += [{"env": env_id, "impl": i, "runs": rs, "ref": None} for i, rs in impls.items() if rs[0]["kind"] == "peer" and i not in used]
    return out


def table(results: list[dict], title: str) -> str:
    lines = [
        f"## {title}",
        "",
        "| env | ours | seeds | return (last 100 episodes) | eval (deterministic) | best eval (step) | reference | its return "
        "| its eval | return ratio | diff of returns, 95% CI | verdict | SPS | its SPS | SPS ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows(results):
        runs, ref = row["runs"], row["ref"]
        ret = [r["return_last100"] for r in runs if r["return_last100"] is not None]
        ev = [r["eval"]["mean"] for r in runs if r.get("eval")]
        sps = [r["sps"] for r in runs if r.get("sps")]
        best = best_eval(runs)
        cells = [row["env"], label(runs[0]), str(len(runs)), fmt(ret), fmt(ev), f"{best[0]:.1f} ({best[1]})" if best else "-"]
        if ref:
            ref_ret = [r["return_last100"] for r in ref if r["return_last100"] is not None]
            ref_ev = [r["eval"]["mean"] for r in ref if r.get("eval")]
            ref_sps = [r["sps"] for r in ref if r.get("sps")]
            if len(ret) > 1 and len(ref_ret) > 1:
                diff, lo, hi = bootstrap_diff(ret, ref_ret)
                ci, verdict_text = f"{diff:+.1f} [{lo:+.1f}, {hi:+.1f}]", verdict(lo, hi)
            else:
                ci, verdict_text = "-", "n/a (< 2 seeds)"
            cells += [f"{label(ref[0])} ({len(ref)})", fmt(ref_ret), fmt(ref_ev)]
            cells += [ratio(np.mean(ret), np.mean(ref_ret)) if ret and ref_ret else "-", ci, verdict_text]
            cells += [fmt(sps, 0), fmt(ref_sps, 0), ratio(np.mean(sps), np.mean(ref_sps)) if sps and ref_sps else "-"]
        else:
            cells += ["-", "-", "-", "-", "-", "-", fmt(sps, 0), "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", *footer(results)]) + "\n"


def speed_table(results: list[dict], title: str) -> str:
    lines = [f"## {title}", "", "| env | ours | steps | SPS | peer | its SPS | SPS ratio (ours / peer) |", "|---|---|---|---|---|---|---|"]
    for row in rows(results):
        runs, ref = row["runs"], row["ref"]
        sps = [r["sps"] for r in runs if r.get("sps")]
        cells = [row["env"], label(runs[0]), str(max(r["global_step"] for r in runs)), fmt(sps, 0)]
        if ref:
            ref_sps = [r["sps"] for r in ref if r.get("sps")]
            cells += [label(ref[0]), fmt(ref_sps, 0), ratio(np.mean(sps), np.mean(ref_sps)) if sps and ref_sps else "-"]
        else:
            cells += ["-", "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", *footer(results)]) + "\n"


def footer(results: list[dict]) -> list[str]:
    definitions = results[0].get("definitions", DEFINITIONS) if results else DEFINITIONS
    out = ["Definitions:", ""]
    out += [f"- **{name}**: {text}." for name, text in definitions.items()]
    out += ["- **return ratio**, **SPS ratio**: ours / reference (shown when both are positive).", ""]
    machines = sorted({json.dumps(r.get("machine", {}), sort_keys=True) for r in results})
    versions = sorted({json.dumps(r.get("versions", {}), sort_keys=True) for r in results})
    for m in machines:
        m = json.loads(m)
        out.append(f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('platform')}.")
    for v in versions:
        out.append("Versions: " + ", ".join(f"{k} {val}" for k, val in json.loads(v).items() if val) + ".")
    out += ["", "Commands, as benchmark/run.py ran them from the repository root (the first seed; the others differ in --seed):", ""]
    for impls in group(results).values():
        out += [f"- `{min(runs, key=lambda r: r['seed'])['command']}`" for runs in impls.values()]
    return out


def mapping_doc(results: list[dict]) -> str:
    out, seen = ["# Peer hyper-parameter mappings", ""], set()
    for r in results:
        if r["kind"] != "peer" or "mapping" not in r or (r["env_id"], r["impl"]) in seen:
            continue
        seen.add((r["env_id"], r["impl"]))
        out += [f"## {label(r)} beside {r['script']} on {r['env_id']}", "", "| ours | peer | note |", "|---|---|---|"]
        out += [f"| {m['ours']} | {m['peer']} | {m['note']} |" for m in r["mapping"]]
        out += [""] + [f"Note: {n}" for n in r.get("notes", [])]
        if r.get("unmapped"):
            out.append(f"Unmapped fields (run with --allow-unmapped): {', '.join(r['unmapped'])}")
        out.append("")
    return "\n".join(out)


def find_runs(path: str) -> list[str]:
    """[path] if it is a run folder (it holds metrics.jsonl), else the run folders in it; [] for a campaign's results."""
    if os.path.isfile(os.path.join(path, "metrics.jsonl")):
        return [path]
    return sorted(os.path.dirname(m) for m in glob.glob(os.path.join(path, "*", "metrics.jsonl")))


def read_run(run_dir: str) -> list[dict]:
    """metrics.jsonl's records up to a partial last line (a run still writing). A --resume appends from its
    checkpoint's step: what the stopped run logged past the first step logged again is dropped (curves go forward)."""
    records: list[dict] = []
    for r in read_metrics(run_dir):
        while records and records[-1]["global_step"] > r["global_step"]:
            records.pop()
        records.append(r)
    return records


def series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(global_step, value) of the records that hold `key`."""
    points = np.array([(r["global_step"], r[key]) for r in records if key in r], dtype=float).reshape(-1, 2)
    return points[:, 0], points[:, 1]


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at each point (of all of them, before `window` are in)."""
    csum = np.concatenate([[0.0], np.cumsum(x)])
    hi = np.arange(1, len(x) + 1)
    lo = np.maximum(hi - window, 0)
    return (csum[hi] - csum[lo]) / (hi - lo)


def few(x: np.ndarray) -> dict:
    """Dots on a line of few points (one point alone draws no line)."""
    return dict(marker="o", ms=3) if len(x) < 50 else {}


def plot_runs(runs: dict[str, list[dict]], path: str, title: str, window: int) -> list[str]:
    """The return panel and one panel per loss or diagnostic; returns the panels' names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    keys = dict.fromkeys(k for records in runs.values() for r in records for k in r)  # in the order first logged
    metrics = [k for k in keys if k.startswith("losses/") or k == "charts/learning_rate"]
    ncols = max(1, min(3, len(metrics)))
    nrows = -(-len(metrics) // ncols)
    fig = plt.figure(figsize=(5.2 * ncols, 4.2 + 2.5 * nrows), layout="constrained")
    grid = fig.add_gridspec(1 + nrows, ncols, height_ratios=[1.7] + [1] * nrows)
    top = fig.add_subplot(grid[0, :])
    axes = [fig.add_subplot(grid[1 + i // ncols, i % ncols], sharex=top) for i in range(len(metrics))]
    colours = itertools.cycle(plt.get_cmap("tab10").colors)
    for (name, records), colour in zip(runs.items(), colours, strict=False):
        steps, returns = series(records, "charts/episodic_return")
        top.plot(steps, returns, color=colour, alpha=0.25, lw=0.8)
        top.plot(steps, moving_average(returns, window), color=colour, lw=1.8, label=name, **few(steps))
        top.plot(*series(records, "eval/episodic_return"), "*", color=colour, mec="k", ms=13)
        for ax, metric in zip(axes, metrics, strict=True):
            x, y = series(records, metric)
            ax.plot(x, y, color=colour, lw=1.2, **few(x))
    if "charts/episodic_return" not in keys:
        top.text(0.5, 0.5, "no episode finished yet", transform=top.transAxes, ha="center", va="center", color="0.4")
    top.set_title(f"episodic return: each episode (faint), mean of the last {window} (solid), final evaluation (star)", fontsize=10)
    top.set_ylabel("episodic return")
    top.legend(fontsize=8, loc="best", ncols=1 + len(runs) // 10)
    top.xaxis.set_major_formatter(EngFormatter(sep=""))  # the panels below share it
    for ax, metric in zip(axes, metrics, strict=True):
        ax.set_title(metric, fontsize=10)
    for ax in [top, *axes]:
        ax.grid(alpha=0.3)
    for ax in axes[-ncols:] or [top]:  # the lowest panel of each column
        ax.set_xlabel("global_step")
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return ["episodic return", *metrics]


def main_runs(run_dirs: list[str], path: str, out: str | None, window: int) -> int:
    runs = {}
    for d in run_dirs:
        name, records = os.path.basename(os.path.normpath(d)), read_run(d)
        if not records:
            print(f"{name}: nothing logged yet, left out")
            continue
        runs[name] = records
        episodes, evals = series(records, "charts/episodic_return")[1], series(records, "eval/episodic_return")[1]
        note = f", eval {evals[-1]:.1f}" if len(evals) else ""
        note += "" if len(episodes) else "; no episode finished yet: its losses only"
        print(f"{name}: step {records[-1]['global_step']}, {len(episodes)} episodes{note}")
    if not runs:
        print(f"no metrics logged yet in {path}")
        return 1
    png = out if out and out.endswith(".png") else os.path.join(out or path, "curves.png")
    os.makedirs(os.path.dirname(png) or ".", exist_ok=True)
    panels = plot_runs(runs, png, os.path.basename(os.path.normpath(os.path.abspath(path))), window)
    print("panels: " + ", ".join(panels))
    print(f"wrote {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results_dir", nargs="+", help="campaigns' results (several: merged, with --out), a run folder or a folder of runs")
    p.add_argument("--out", help="where to write curves.png, table.md, mapping.md (default: the results dir); for runs, a folder or a .png")
    p.add_argument("--speed", action="store_true", help="a table of steps per second only, no curves")
    p.add_argument("--window", type=int, default=10, help="episodes averaged into each seed's (or run's) curve")
    p.add_argument("--include-running", action="store_true", help="also show runs not finished yet (runs folders: always)")
    p.add_argument("--ablation", nargs="+", metavar="DIR", help="more campaigns: print one table, a row per campaign (the settings tried)")
    p.add_argument("--impl", help="with --ablation: only this implementation's runs (e.g. reinforce, sb3-a2c)")
    a = p.parse_args(argv)
    if a.ablation:
        print(ablation([*a.results_dir, *a.ablation], a.impl), end="")
        return 0
    if len(a.results_dir) > 1 and not a.out:
        p.error("several folders are merged into one figure and table: say where with --out")
    run_dirs = [run for d in a.results_dir for run in find_runs(d)]
    if run_dirs:
        if a.speed:
            p.error("--speed needs a campaign's results (benchmark/run.py), not run folders")
        return main_runs(run_dirs, a.results_dir[0], a.out, a.window)
    results, seen = [], {}
    for d in a.results_dir:
        for r in load(d, a.include_running):  # merged folders must not hold the same run twice (a seed counted twice)
            key = f"{r['env_id']} {r['impl']} seed {r['seed']}"
            if key in seen:
                p.error(f"{key} is in both {seen[key]} and {d}: merge folders that hold different runs")
            seen[key] = d
            results.append(r)
    if not results:
        print(f"no finished results in {' '.join(a.results_dir)}")
        return 1
    out = a.out or a.results_dir[0]
    os.makedirs(out, exist_ok=True)
    name = os.path.basename(os.path.normpath(out if len(a.results_dir) > 1 else a.results_dir[0]))
    written = [os.path.join(out, "table.md")]
    with open(written[0], "w") as f:
        f.write(speed_table(results, f"Steps per second: {name}") if a.speed else table(results, f"Results: {name}"))
    if not a.speed:
        written.append(os.path.join(out, "curves.png"))
        plot_curves(results, written[-1], f"{name}: episodic return during training", a.window)
    if any(r["kind"] == "peer" for r in results):
        written.append(os.path.join(out, "mapping.md"))
        with open(written[-1], "w") as f:
            f.write(mapping_doc(results))
    print("wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
