"""The README as a new user meets it: the trained-policy snippet runs as printed, the page stays short, every
relative link and image in README.md and benchmark/README.md points at something that exists, and every flag
that a documented command passes to one of the six scripts is one of that script's `Args` fields."""

import dataclasses
import glob
import importlib
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BENCHMARK_README = os.path.join(ROOT, "benchmark", "README.md")
SCRIPTS = ["reinforce.py", "a2c.py", "ppo.py", "ppo_kl.py", "trpo.py", "sac.py"]
MAX_README_LINES = 250


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def section(text: str, heading: str) -> str:
    """The body of the `## heading` section, up to the next heading of level two or one."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^#{{1,2}} |\Z)", text, flags=re.S | re.M)
    assert match, f"README.md has no section '## {heading}'"
    return match.group(1)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """The shell commands of a bash block: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [line.split(" #")[0].strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# --- the trained-policy snippet --------------------------------------------------------------------------------


def test_trained_policy_snippet_runs(tmp_path, capsys):
    """Train a tiny checkpoint with the section's own command (budget cut to two iterations), then run the
    section's Python code unchanged in that folder: it finds the checkpoint, loads it with load_policy and
    plays an episode with valid actions."""
    body = section(read(README), "Using a trained policy in your own code")
    (train,) = [c for block in code_blocks(body, "bash") for c in commands(block)]
    (snippet,) = code_blocks(body, "python")

    argv = shlex.split(train)
    assert argv[:2] == ["python", "ppo.py"] and "--save-model" in argv, train
    i = argv.index("--total-timesteps")
    argv[i + 1] = "1024"  # 4 envs x 128 steps: two iterations
    argv[:2] = [sys.executable, os.path.join(ROOT, "ppo.py")]
    out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert glob.glob(str(tmp_path / "runs" / "CartPole-v1__ppo__*" / "ppo.pt")), os.listdir(tmp_path / "runs")

    namespace: dict = {"__name__": "readme_snippet"}
    exec(compile(snippet, "README.md (Using a trained policy)", "exec"), namespace)  # cwd is tmp_path (conftest)
    printed = capsys.readouterr().out
    assert printed.startswith("return "), printed

    env, policy = namespace["env"], namespace["policy"]
    assert namespace["episode_return"] >= 1.0  # CartPole pays 1 a step
    assert env.action_space.contains(namespace["action"])
    batch = np.stack([env.observation_space.sample() for _ in range(5)])
    actions = np.asarray(policy(batch))
    assert actions.shape == (5,), actions.shape
    assert all(env.action_space.contains(a) for a in actions.astype(np.int64))
    one = policy(batch[0])
    assert env.action_space.contains(one) and int(one) == int(actions[0])


# --- length and links ------------------------------------------------------------------------------------------


def test_readme_is_at_most_250_lines():
    n = len(read(README).splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; the lab notes belong in benchmark/README.md"


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation other than '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    return {github_anchor(h) for h in re.findall(r"^#+ (.+)$", prose, flags=re.M)}


@pytest.mark.parametrize("path", [README, BENCHMARK_README], ids=["README.md", "benchmark/README.md"])
def test_relative_links_and_images_exist(path):
    text = read(path)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    prose = re.sub(r"`[^`\n]*`(?!\]\()", "", prose)  # inline code, but not the text of a link
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose)
    assert targets, f"no links found in {path}"
    broken = []
    for target in targets:
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(resolved):
            broken.append(f"{target} (no {os.path.relpath(resolved, ROOT)})")
        elif anchor and resolved.endswith(".md") and anchor not in anchors(read(resolved)):
            broken.append(f"{target} (no heading #{anchor} in {os.path.relpath(resolved, ROOT)})")
    assert not broken, f"{os.path.relpath(path, ROOT)}: broken links: {broken}"


# --- the documented commands -----------------------------------------------------------------------------------


def documented_script_commands() -> list[tuple[str, list[str]]]:
    """(script, argv after the script) for every `python <one of the six>.py ...` in a bash block of either file."""
    found = []
    for path in [README, BENCHMARK_README]:
        for block in code_blocks(read(path), "bash"):
            for command in commands(block):
                for part in command.split("&&"):
                    argv = shlex.split(part.replace("<", "").replace(">", ""))
                    while argv and "=" in argv[0] and not argv[0].startswith("-"):  # VAR=value prefixes
                        argv.pop(0)
                    if len(argv) >= 2 and argv[0] == "python" and argv[1] in SCRIPTS:
                        found.append((argv[1], argv[2:]))
    return found


def test_documented_flags_exist():
    """A flag renamed in a script, or mistyped in the README, fails here rather than in a reader's shell.
    (The commands themselves were run with small budgets when the README was written.)"""
    found = documented_script_commands()
    assert any(script == "ppo.py" for script, _ in found)
    unknown = []
    for script, argv in found:
        fields = {f.name for f in dataclasses.fields(importlib.import_module(script[:-3]).Args)}
        for arg in argv:
            if not arg.startswith("--"):
                continue
            name = arg[2:].split("=")[0].replace("-", "_")
            if name not in fields and not (name.startswith("no_") and name[3:] in fields):
                unknown.append(f"{script} {arg}")
    assert not unknown, f"flags documented but not in the scripts' Args: {unknown}"


def test_readme_test_command_is_the_ci_command():
    body = section(read(README), "Tests")
    ci = read(os.path.join(ROOT, ".ci", "run"))
    assert "MUJOCO_GL=egl WANDB_MODE=offline python -m pytest -n 2" in body
    assert "export MUJOCO_GL=egl WANDB_MODE=offline" in ci and "python -m pytest -n 2" in ci
    for line in ["-r requirements.txt", "-r benchmark/requirements.txt", "ruff format --check .", "ruff check ."]:
        assert line in body and line in ci, line
