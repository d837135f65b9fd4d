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
