"""Mutation testing of the scripts' pure math functions: does breaking the code on purpose fail a fast test?

For each named function (or Class.method) of a script, parse it with `ast`, enumerate one-change mutants inside it,
write each into a temporary COPY of the repository (the real files are never touched) and run the script's fast
unit tests there with a per-mutant timeout. A mutant is killed when the tests fail (or time out), survives when they
pass. Prints killed / total per function and the survivors' diffs.

Mutation operators (one change per mutant):
  binop      + <-> -, * <-> /   (also in augmented assignments: x += y <-> x -= y)
  compare    < <-> <=, > <-> >=
  minmax     min <-> max (also minimum/maximum, amin/amax, clamp_min/clamp_max)
  const      a numeric constant c -> c + 1, and c -> 0 (a negative literal -c counts as the constant -c)
  negate     -x -> x, not x -> x
  drop       a + b -> a, a + b -> b, a - b -> a, a - b -> -b (drop one term of a sum)
  swap       swap two adjacent positional arguments of a call, or the values of two adjacent keyword arguments
  bool       True <-> False, and <-> or
  detach     x.detach() -> x; `with torch.no_grad():` -> its body (a gradient allowed where it was stopped)

Usage:
  python tests/mutate.py                                       # every default target
  python tests/mutate.py --scripts ppo.py --functions compute_gae value_loss
  python tests/mutate.py --existing-only                       # score the suite without tests/test_mistakes.py
  python tests/mutate.py --list                                # the mutants, not run
  python tests/mutate.py --json out.json                       # also write every result

The fast selection: the script's own test file, test_ppo_kl.py for trpo.py too (it checks trpo.py's KLs), and
tests/test_mistakes.py, minus the learning checks and the slow plumbing tests (-k below), with
-x so that a killed mutant stops at its first failure. test_drift.py (the shared blocks as text) is left out: it
would "kill" every mutant of a shared block without checking any behaviour. Mutants run one at a time (one core):
by default each in a process forked from one that has already imported torch, gymnasium and pytest (seconds saved
per mutant); --subprocess runs a fresh `python -m pytest` instead.
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The pure math of each script. Shared blocks (`# === shared: NAME ===`, byte-identical in every script that carries
# them, tests/test_drift.py) are mutated in one script only: compute_gae and the policy's log-probs in ppo.py, the
# analytic KLs in ppo_kl.py, the normalisers in ppo.py.
DEFAULT_TARGETS = {
    "ppo.py": [
        "compute_gae", "clipped_surrogate_loss", "value_loss", "ppo_loss",
        "gaussian_log_prob", "gaussian_entropy", "categorical_log_prob", "categorical_entropy",
        "RunningMeanStd.update", "ObsNormalizer.__call__", "RewardScaler.__call__", "explained_variance", "HostPolicy.act",
    ],
    "reinforce.py": ["reward_to_go", "policy_gradient_loss", "value_loss"],
    "a2c.py": ["a2c_loss", "approx_kl", "RMSpropTF.step"],
    "ppo_kl.py": ["categorical_kl", "gaussian_kl", "kl_divergence", "adapt_beta", "ppo_kl_loss"],
    "trpo.py": ["conjugate_gradient", "fisher_vector_product", "max_step", "line_search", "trpo_update", "value_loss"],
    "sac.py": ["squashed_log_prob", "sample_action", "soft_target", "alpha_loss", "soft_update", "sac_losses"],
}  # fmt: skip

# Left out of the fast selection: the calibrated learning checks, the learned-value truncation checks (trained runs),
# the runs that share the module's tracked_run fixture (W&B, video), compile, CLI processes, bad input: slow, or nothing
# to say about the math.
SLOW = [
    "learns", "truncation_bootstraps_and_termination_cuts", "capture_video", "track", "compile", "command_line_error",
    "cuda", "bad_input", "bad_checkpoints", "cli_takes", "save_every_then_resume", "checkpoint_contents",
]  # fmt: skip
EXTRA_TESTS = {"trpo.py": ["tests/test_ppo_kl.py"]}  # test_ppo_kl.py checks trpo.py's analytic KLs too
NEW_TESTS = "tests/test_mistakes.py"

BINOP_FLIP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
CMP_FLIP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
MINMAX = {"min": "max", "max": "min", "minimum": "maximum", "maximum": "minimum", "amin": "amax", "amax": "amin",
          "clamp_min": "clamp_max", "clamp_max": "clamp_min"}  # fmt: skip
SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


# ------------------------------------------------------------------------------------------------ mutants


def find_function(tree: ast.Module, name: str) -> ast.FunctionDef:
    """A top-level function, or `Class.method`."""
    parts = name.split(".")
    body = tree.body
    node = None
    for part in parts:
        node = next((n for n in body if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == part), None)
        if node is None:
            raise SystemExit(f"mutate.py: no {name} (looking for {part!r})")
        body = node.body
    if not isinstance(node, ast.FunctionDef):
        raise SystemExit(f"mutate.py: {name} is not a function")
    return node


def numeric(node: ast.AST) -> float | int | None:
    """The value of a numeric literal, c or -c (not a bool); None otherwise."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        if type(node.operand.value) in (int, float):
            return -node.operand.value
    return None


def literal(value) -> ast.AST:
    return ast.UnaryOp(ast.USub(), ast.Constant(-value)) if value < 0 else ast.Constant(value)


def parents_of(root: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(root) for child in ast.iter_child_nodes(node)}


def replace_node(parent: ast.AST, old: ast.AST, new: ast.AST | list) -> None:
    """Put new where old is among parent's fields (a list of statements when new is a list)."""
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    value[i : i + 1] = new if isinstance(new, list) else [new]
                    return
    raise ValueError("node not found in its parent")


def sites(fn: ast.FunctionDef) -> list[tuple[int, str, object]]:
    """(index of the node in ast.walk order, operator, parameter) for every mutant of fn's body."""
    out = []
    nodes = list(ast.walk(fn))
    parents = parents_of(fn)
    docstring = fn.body[0].value if fn.body and isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) else None
    for i, node in enumerate(nodes):
        if node is docstring:
            continue
        if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in BINOP_FLIP:
            out.append((i, "binop", None))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            out += [(i, "drop", "left"), (i, "drop", "right")]
        if isinstance(node, ast.Compare):
            out += [(i, "compare", k) for k, op in enumerate(node.ops) if type(op) in CMP_FLIP]
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name in MINMAX:
                out.append((i, "minmax", None))
            positional = [a for a in node.args if not isinstance(a, ast.Starred)]
            if len(positional) == len(node.args):
                out += [(i, "swap", ("args", k)) for k in range(len(node.args) - 1)]
            out += [
                (i, "swap", ("keywords", k)) for k in range(len(node.keywords) - 1) if node.keywords[k].arg and node.keywords[k + 1].arg
            ]
            if isinstance(f, ast.Attribute) and f.attr == "detach" and not node.args:
                out.append((i, "detach", "call"))
        value = numeric(node)
        if value is not None and not isinstance(parents.get(id(node)), ast.UnaryOp):  # -c: mutated as one literal
            out += [(i, "const", "plus1")] + ([(i, "const", "zero")] if value != 0 else [])
            if isinstance(node, ast.UnaryOp) and not (value == -1 and isinstance(parents.get(id(node)), ast.Call | ast.keyword)):
                out.append((i, "negate", None))  # -c -> c, except a -1 dimension argument (equivalent on 2-D tensors)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Not):
            out.append((i, "negate", None))
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            out.append((i, "bool", None))
        if isinstance(node, ast.BoolOp):
            out.append((i, "bool", None))
        if isinstance(node, ast.With) and any(
            isinstance(item.context_expr, ast.Call) and ast.unparse(item.context_expr.func).endswith("no_grad") for item in node.items
        ):
            out.append((i, "detach", "no_grad"))
    return out


def apply(fn: ast.FunctionDef, site: tuple[int, str, object]) -> ast.FunctionDef:
    """A mutated deep copy of fn."""
    index, op, param = site
    fn = copy.deepcopy(fn)
    node = list(ast.walk(fn))[index]
    parent = parents_of(fn).get(id(node))
    if op == "binop":
        node.op = BINOP_FLIP[type(node.op)]()
    elif op == "drop":
        if param == "left":
            replace_node(parent, node, node.left)
        else:
            replace_node(parent, node, node.right if isinstance(node.op, ast.Add) else ast.UnaryOp(ast.USub(), node.right))
    elif op == "compare":
        node.ops[param] = CMP_FLIP[type(node.ops[param])]()
    elif op == "minmax":
        f = node.func
        if isinstance(f, ast.Attribute):
            f.attr = MINMAX[f.attr]
        else:
            f.id = MINMAX[f.id]
    elif op == "swap":
        kind, k = param
        if kind == "args":
            node.args[k], node.args[k + 1] = node.args[k + 1], node.args[k]
        else:
            node.keywords[k].value, node.keywords[k + 1].value = node.keywords[k + 1].value, node.keywords[k].value
    elif op == "const":
        value = numeric(node)
        new = value + 1 if param == "plus1" else type(value)(0)
        replace_node(parent, node, literal(new))
    elif op == "negate":
        replace_node(parent, node, node.operand)
    elif op == "bool":
        if isinstance(node, ast.BoolOp):
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        else:
            node.value = not node.value
    elif op == "detach":
        if param == "call":
            replace_node(parent, node, node.func.value)
        else:
            replace_node(parent, node, node.body)
    return fn


def describe(fn: ast.FunctionDef, site) -> str:
    index, op, param = site
    node = list(ast.walk(fn))[index]
    line = getattr(node, "lineno", fn.lineno)
    if op == "binop":
        flipped = BINOP_FLIP[type(node.op)]
        return f"line {line}: {SYMBOL[type(node.op)]} -> {SYMBOL[flipped]}"
    if op == "compare":
        return f"line {line}: {SYMBOL[type(node.ops[param])]} -> {SYMBOL[CMP_FLIP[type(node.ops[param])]]}"
    if op == "drop":
        return f"line {line}: drop the {'second' if param == 'left' else 'first'} term"
    if op == "swap":
        return f"line {line}: swap {param[0]} {param[1]} and {param[1] + 1}"
    return f"line {line}: {op}" + (f" {param}" if param else "")


def indent_of(text: str, lineno: int) -> str:
    line = text.splitlines()[lineno - 1]
    return line[: len(line) - len(line.lstrip())]


def mutant_source(source: str, fn: ast.FunctionDef, mutated: ast.FunctionDef) -> str:
    """The script with fn's lines (decorators included) replaced by the mutated function, unparsed and indented as fn;
    every other line is byte-identical."""
    lines = source.splitlines(keepends=True)
    start = min([fn.lineno] + [d.lineno for d in fn.decorator_list]) - 1
    pad = indent_of(source, fn.lineno)
    body = "".join(pad + line + "\n" if line else "\n" for line in ast.unparse(mutated).splitlines())
    return "".join(lines[:start]) + body + "".join(lines[fn.end_lineno :])


def diff(fn: ast.FunctionDef, mutated: ast.FunctionDef) -> str:
    a, b = ast.unparse(fn).splitlines(), ast.unparse(mutated).splitlines()
    return "\n".join(list(difflib.unified_diff(a, b, lineterm="", n=0))[2:])  # without the ---/+++ header


def mutants(script: str, functions: list[str]) -> list[dict]:
    source = open(os.path.join(ROOT, script)).read()
    tree = ast.parse(source)
    out = []
    for name in functions:
        fn = find_function(tree, name)
        seen = {ast.unparse(fn)}  # an identical function (a swap of equal arguments) or a duplicate is not a mutant
        for site in sites(fn):
            mutated = apply(fn, site)
            text = ast.unparse(mutated)
            if text in seen:
                continue
            seen.add(text)
            new_source = mutant_source(source, fn, mutated)
            compile(new_source, script, "exec")
            out.append({"script": script, "function": name, "what": describe(fn, site), "diff": diff(fn, mutated), "source": new_source})
    return out


# ------------------------------------------------------------------------------------------------ running


def test_files(root: str, script: str, existing_only: bool) -> list[str]:
    """The script's own test file, the others that test its math (EXTRA_TESTS), then tests/test_mistakes.py."""
    files = [f"tests/test_{script[: -len('.py')]}.py", *EXTRA_TESTS.get(script, [])]
    if not existing_only:
        files.append(NEW_TESTS)
    return [f for f in files if os.path.exists(os.path.join(root, f))]


def pytest_args(files: list[str], extra_k: str | None) -> list[str]:
    k = " and ".join(f"not {s}" for s in SLOW)
    if extra_k:
        k = f"({k}) and ({extra_k})"
    return [*files, "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-W", "ignore", "-k", k]


def run_forked(copy_root: str, args: list[str], timeout: float, log: str) -> tuple[str, float]:
    """pytest.main(args) in a child forked from this process (torch, gymnasium and pytest already imported)."""
    start = time.time()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.setpgid(0, 0)
            os.chdir(copy_root)
            sys.path.insert(0, copy_root)
            import pytest

            code = pytest.main(args)
        except BaseException:  # noqa: B036
            import traceback

            traceback.print_exc()
            code = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return ("passed" if code == 0 else "failed" if code == 1 else f"error({code})"), time.time() - start
        if time.time() - start > timeout:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.time() - start
        time.sleep(0.02)


def run_subprocess(copy_root: str, args: list[str], timeout: float, log: str) -> tuple[str, float]:
    start = time.time()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with open(log, "w") as f:
        try:
            code = subprocess.run(
                [sys.executable, "-m", "pytest", *args], cwd=copy_root, env=env, stdout=f, stderr=f, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            return "timeout", time.time() - start
    return ("passed" if code == 0 else "failed" if code == 1 else f"error({code})"), time.time() - start


def preimport() -> None:
    """What every child would import anyway, imported once here (not the scripts, nor the tests)."""
    for name in ("numpy", "torch", "torch.nn.functional", "gymnasium", "gymnasium.vector", "tyro", "pytest", "mujoco", "wandb"):
        try:
            __import__(name)
        except Exception:  # noqa: S110
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scripts", nargs="+", default=list(DEFAULT_TARGETS), help="scripts to mutate (default: all six)")
    parser.add_argument("--functions", nargs="+", help="only these functions (or Class.method) of the scripts given")
    parser.add_argument("--existing-only", action="store_true", help=f"run without {NEW_TESTS} (the score before it)")
    parser.add_argument("-k", dest="extra_k", help="a further pytest -k expression for the selection")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per mutant (default: 4 x the unmutated run + 20)")
    parser.add_argument("--subprocess", action="store_true", help="a fresh python -m pytest per mutant instead of a fork")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--json", help="write every mutant's result to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy and the logs")
    opts = parser.parse_args()

    plan = []
    for script in opts.scripts:
        functions = opts.functions or DEFAULT_TARGETS.get(script)
        if not functions:
            raise SystemExit(f"mutate.py: name the functions of {script} with --functions")
        if opts.functions:  # --functions across several scripts: each script takes the names it has
            tree = ast.parse(open(os.path.join(ROOT, script)).read())
            have = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)} | {
                f"{c.name}.{m.name}" for c in tree.body if isinstance(c, ast.ClassDef) for m in c.body if isinstance(m, ast.FunctionDef)
            }
            functions = [f for f in functions if f in have]
            if not functions:
                continue
        plan.append((script, functions, mutants(script, functions)))
    if opts.list:
        for script, _, ms in plan:
            for m in ms:
                print(f"{script} {m['function']} {m['what']}\n{m['diff']}\n")
        print(f"{sum(len(ms) for _, _, ms in plan)} mutants")
        return

    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.dont_write_bytecode = True  # a mutant of the same size written in the same second must not load a stale .pyc
    runner = run_subprocess if opts.subprocess or not hasattr(os, "fork") else run_forked
    if runner is run_forked:
        preimport()

    tmp = tempfile.mkdtemp(prefix="mutate-")
    copy_root = os.path.join(tmp, "repo")
    ignore = shutil.ignore_patterns(".git", "runs", "videos", "wandb", "__pycache__", ".pytest_cache", ".ruff_cache", "*.pyc")
    shutil.copytree(ROOT, copy_root, ignore=ignore)
    results, started, skipped = [], time.time(), []

    def save():
        if opts.json:
            with open(opts.json, "w") as f:
                json.dump([{k: v for k, v in r.items() if k != "source"} for r in results], f, indent=1)

    try:
        for script, functions, ms in plan:
            files = test_files(copy_root, script, opts.existing_only)
            args = pytest_args(files, opts.extra_k)
            target = os.path.join(copy_root, script)
            original = open(target).read()
            status, base = runner(copy_root, args, 600, os.path.join(tmp, "baseline.log"))
            if status != "passed":
                print(open(os.path.join(tmp, "baseline.log")).read()[-3000:])
                print(f"mutate.py: the unmutated {script} fails its fast tests ({status}): its mutants are not scored", flush=True)
                skipped.append(script)
                continue
            timeout = opts.timeout or 4 * base + 20
            print(f"== {script}: {len(ms)} mutants of {', '.join(functions)}; tests {' '.join(files)} ({base:.1f} s unmutated)", flush=True)
            for n, m in enumerate(ms):
                with open(target, "w") as f:
                    f.write(m["source"])
                log = os.path.join(tmp, f"{script}-{n}.log")
                status, seconds = runner(copy_root, args, timeout, log)
                m["status"], m["seconds"] = status, round(seconds, 2)
                m["killed"] = status != "passed"
                if not m["killed"]:
                    print(f"  SURVIVED {m['function']} {m['what']}\n    " + m["diff"].replace("\n", "\n    "), flush=True)
                results.append(m)
                save()
            with open(target, "w") as f:
                f.write(original)
    finally:
        save()
        if opts.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print("\n== score (killed / mutants) per function")
    total_killed = 0
    for script, functions, _ in plan:
        for name in functions if script not in skipped else ():
            rs = [r for r in results if r["script"] == script and r["function"] == name]
            killed = sum(r["killed"] for r in rs)
            total_killed += killed
            timeouts = sum(r["status"] == "timeout" for r in rs)
            print(f"  {script:13s} {name:28s} {killed:3d} / {len(rs):3d}" + (f"  ({timeouts} by timeout)" if timeouts else ""))
    print(f"  total {total_killed} / {len(results)} killed, {len(results) - total_killed} survived, in {time.time() - started:.0f} s")
    if skipped:
        print(f"  not scored (the unmutated script failed its tests): {' '.join(skipped)}")


if __name__ == "__main__":
    main()
