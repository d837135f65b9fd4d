"""The blocks that the scripts share on purpose stay byte-identical.

A script declares a shared block with `# === shared: NAME ===` ... `# === end shared: NAME ===`. Every
block name must be carried by at least two scripts and be the same text in all of them; a script may leave
out a block that does not fit it (SAC has no rollout storage), but may not change it.
"""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["ppo.py", "ppo_kl.py", "trpo.py", "a2c.py", "reinforce.py", "sac.py"]
BLOCK = re.compile(r"^[ \t]*# === shared: (?P<name>[\w-]+) ===\n(?P<body>.*?)^[ \t]*# === end shared: (?P=name) ===$", re.M | re.S)


def shared_blocks(path: str) -> dict[str, str]:
    text = open(path).read()
    blocks = {}
    for m in BLOCK.finditer(text):
        assert m["name"] not in blocks, f"{path}: block {m['name']} appears twice"
        blocks[m["name"]] = m["body"]
    opened = re.findall(r"^[ \t]*# === shared: ([\w-]+) ===$", text, re.M)
    assert sorted(opened) == sorted(blocks), f"{path}: a shared block is not closed: {sorted(set(opened) - set(blocks))}"
    return blocks


def present_scripts() -> list[str]:
    return [s for s in SCRIPTS if os.path.exists(os.path.join(ROOT, s))]


def test_template_declares_blocks():
    blocks = shared_blocks(os.path.join(ROOT, "ppo.py"))
    for name in ("imports", "args-on-policy", "args-common", "policy", "gae", "rollout", "on-policy", "plumbing"):
        assert name in blocks


@pytest.mark.parametrize("script", [s for s in present_scripts() if s != "ppo.py"])
def test_shared_blocks_identical(script):
    """Each block a script declares is identical to the same block in every other script carrying it."""
    mine = shared_blocks(os.path.join(ROOT, script))
    assert mine, f"{script} declares no shared block"
    others = {s: shared_blocks(os.path.join(ROOT, s)) for s in present_scripts() if s != script}
    for name, body in mine.items():
        carriers = [s for s, blocks in others.items() if name in blocks]
        assert carriers, f"{script}: block {name!r} is carried by no other script"
        for other in carriers:
            assert body == others[other][name], f"{script} and {other} differ in shared block {name!r}"


@pytest.mark.parametrize("script", present_scripts())
def test_algorithm_first_layout(script):
    """One `# ==== ... infrastructure` divider; above it the algorithm and main(), below it only shared machinery
    (and, for a script that needs it, machinery of its own); markers only around whole top-level definitions."""
    lines = open(os.path.join(ROOT, script)).read().splitlines()
    dividers = [i for i, line in enumerate(lines) if line.startswith("# ====") and "infrastructure" in line]
    assert len(dividers) == 1, f"{script}: {len(dividers)} infrastructure dividers"
    main = next(i for i, line in enumerate(lines) if line.startswith("def main("))
    assert main < dividers[0], f"{script}: main() is below the divider"
    assert "# === shared: plumbing ===" in lines[dividers[0] :], f"{script}: the plumbing is not below the divider"
    nested = [
        i + 1 for i, line in enumerate(lines) if re.match(r"\s+# === (end )?shared", line) and not line.startswith("    # === shared: args")
    ]
    nested = [n for n in nested if "end shared: args" not in lines[n - 1]]
    assert not nested, f"{script}: drift markers inside a definition at lines {nested}"


def test_no_script_imports_another():
    names = {s[:-3] for s in SCRIPTS}
    for script in present_scripts():
        text = open(os.path.join(ROOT, script)).read()
        for name in names:
            assert not re.search(rf"^\s*(import|from)\s+{name}\b", text, re.M), f"{script} imports {name}"


def sync(template: str = "ppo.py") -> None:
    """Copy every shared block from the template (ppo.py, else the first script carrying the block) into the
    other scripts: `python tests/test_drift.py --sync` after editing a block in one place."""
    texts = {s: open(os.path.join(ROOT, s)).read() for s in present_scripts()}
    order = [template] + [s for s in texts if s != template]
    source = {}
    for s in order:
        for name, body in shared_blocks(os.path.join(ROOT, s)).items():
            source.setdefault(name, body)
    for s, text in texts.items():
        new = BLOCK.sub(lambda m: m.group(0).replace(m["body"], source[m["name"]], 1), text)
        if new != text:
            with open(os.path.join(ROOT, s), "w") as f:
                f.write(new)
            print(f"synced {s}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--sync"]:
        sync()
