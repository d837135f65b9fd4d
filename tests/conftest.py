"""Test set-up shared by every test file: headless rendering, offline W&B, one torch thread, and each test
running in its own temporary directory (the scripts write runs/ and videos/ under the working directory)."""

import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
torch.set_num_threads(1)

import toy_envs  # noqa: E402, F401  (registers the tiny test envs)


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield tmp_path


# Bad input every script refuses the same way (the shared validate-common and plumbing blocks); each test file
# adds its own cases: BAD = COMMON_BAD + [...]
COMMON_BAD = [
    (dict(env_id="NoSuchEnv-v0"), "--env-id 'NoSuchEnv-v0' could not be made"),
    (dict(env_id="toy_envs:ToyMultiDiscrete-v0"), "action space"),
    (dict(env_kwargs="{oops"), "--env-kwargs"),
    (dict(eval_checkpoint="missing.pt"), "checkpoint 'missing.pt' does not exist"),
    (dict(num_envs=0), "--num-envs must be at least 1"),
    (dict(learning_rate=0.0), "--learning-rate must be positive"),
    (dict(learning_rate=-1e-3), "--learning-rate must be positive"),
    (dict(gamma=0.0), "--gamma must be in (0, 1]"),
    (dict(gamma=1.5), "--gamma must be in (0, 1]"),
    (dict(activation="gelu"), "--activation must be one of"),
]


def assert_bad_input(module, args, message: str) -> None:
    """main(args) refuses with the one-line error: `<script>: error: ...` naming what is wrong, no traceback
    (SystemExit with a string exits with status 1; test_*_command_line_error checks that through a process)."""
    with pytest.raises(SystemExit) as e:
        module.main(args)
    code = e.value.code
    assert isinstance(code, str) and "\n" not in code, code
    assert code.startswith(f"{module.SCRIPT}: error: ") and message in code, code


def assert_refuses_bad_checkpoints(module, make_args, tmp_path, saved_env: str, other_env: str, **train) -> None:
    """A corrupt file, another script's checkpoint, and one of this script made for another env are each
    refused by --eval-checkpoint. make_args(**kw) builds the test file's small Args."""
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    other = tmp_path / "other.pt"
    torch.save({"script": "another.py", "args": {}}, other)
    saved = module.main(make_args(env_id=saved_env, save_model=True, eval_episodes=0, **train))["checkpoint"]
    for path, message in [
        (corrupt, "could not be read"),
        (other, f"was made by another.py, not {module.SCRIPT}"),
        (saved, f"was made for --env-id {saved_env}, not {other_env}"),
    ]:
        assert_bad_input(module, make_args(env_id=other_env, eval_checkpoint=str(path)), message)


def read_metrics(run_dir: str) -> list[dict]:
    import json

    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def wandb_logged_bytes(run_dir: str, expect: list[str], timeout: float = 60.0) -> bytes:
    """The raw records of the offline W&B run(s) under run_dir, in which logged metric names appear
    verbatim. W&B's service process writes them asynchronously, after wandb.finish() returns: wait until
    every expected name is there or the timeout passes."""
    import glob
    import time

    deadline = time.time() + timeout
    while True:
        files = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "run-*.wandb"))
        data = b"".join(open(f, "rb").read() for f in files)
        if all(name.encode() in data for name in expect) or time.time() > deadline:
            assert files, f"no offline W&B run under {run_dir}"
            return data
        time.sleep(0.5)
