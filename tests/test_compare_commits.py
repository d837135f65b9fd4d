"""benchmark/compare_commits.py: the bit-for-bit comparison of checkpoints, metrics and summaries (no training), and
one small end-to-end run of HEAD against itself (ppo.py on CartPole-v1: train, resume, eval)."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmark")
sys.path.insert(0, BENCH)
import compare_commits as cc  # noqa: E402


def checkpoint(weight: torch.Tensor | None = None, **top) -> dict:
    w = torch.linspace(-1, 1, 12).reshape(3, 4) if weight is None else weight
    return {
        "script": "ppo.py",
        "run_name": "CartPole-v1__ppo__1__1700000000",
        "args": {"seed": 1, "hidden_sizes": (64, 64), "target_kl": None},
        "agent": {"actor.0.weight": w, "actor.0.bias": torch.zeros(4)},
        "rng": {"python": (3, (1, 2, 3), None), "numpy_pos": 624, "torch": torch.arange(8, dtype=torch.uint8)},
        **top,
    }


def test_identical_checkpoints_and_run_name_skipped(tmp_path):
    a, b = checkpoint(), checkpoint(run_name="CartPole-v1__ppo__1__1800000000")
    assert cc.diff_checkpoints(a, b) is None
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    assert cc.diff_checkpoint_files(tmp_path / "a.pt", tmp_path / "b.pt") is None
    # lists and tuples alike (a tuple may come back a list after a round trip)
    assert cc.diff_checkpoints(a, checkpoint(args={"seed": 1, "hidden_sizes": [64, 64], "target_kl": None})) is None


def test_one_ulp_in_a_tensor():
    w = torch.linspace(-1, 1, 12).reshape(3, 4)
    w2 = w.clone()
    w2[1, 2] = torch.nextafter(w2[1, 2], torch.tensor(math.inf))
    assert not torch.equal(w, w2) and torch.allclose(w, w2)
    d = cc.diff_checkpoints(checkpoint(w), checkpoint(w2))
    assert d is not None and "['agent']['actor.0.weight'][1, 2]" in d and "1 of 12 elements differ" in d, d
    assert repr(w[1, 2].item()) in d and repr(w2[1, 2].item()) in d


def test_dtype_shape_and_signed_zero():
    w = torch.linspace(-1, 1, 12).reshape(3, 4)
    d = cc.diff_checkpoints(checkpoint(w), checkpoint(w.double()))
    assert d is not None and "dtype torch.float32 != torch.float64" in d, d
    d = cc.diff_checkpoints(checkpoint(w), checkpoint(w.reshape(4, 3)))
    assert d is not None and "shape (3, 4) != (4, 3)" in d, d
    d = cc.diff_tensors(torch.tensor([0.0]), torch.tensor([-0.0]))  # == says equal; the bits do not
    assert d is not None and "0.0 != -0.0" in d, d
    assert cc.diff_tensors(torch.tensor(1.5), torch.tensor(1.5)) is None  # 0-d


def test_missing_key_and_other_leaves():
    a, b = checkpoint(), checkpoint()
    del b["agent"]["actor.0.bias"]
    d = cc.diff_checkpoints(a, b)
    assert d is not None and "keys only in old ['actor.0.bias']" in d, d
    d = cc.diff_checkpoints(checkpoint(), checkpoint(extra=1))
    assert d is not None and "only in new ['extra']" in d, d
    d = cc.diff_checkpoints(
        checkpoint(), checkpoint(rng={"python": (3, (1, 2, 4), None), "numpy_pos": 624, "torch": torch.arange(8, dtype=torch.uint8)})
    )
    assert d is not None and "['rng']['python'][1][2]: 3 != 4" in d, d
    d = cc.diff_checkpoints(checkpoint(args={"seed": 1.0, "hidden_sizes": (64, 64), "target_kl": None}), checkpoint())
    assert d is not None and "(float) != 1 (int)" in d, d


def test_nan_equals_nan():
    nan = torch.tensor([1.0, math.nan])
    assert cc.diff_checkpoints(checkpoint(nan), checkpoint(nan.clone())) is None
    assert cc.diff_checkpoints(checkpoint(nan), checkpoint(torch.tensor([1.0, 2.0]))) is not None
    assert cc.floats_equal(math.nan, math.nan) and not cc.floats_equal(math.nan, 1.0)
    assert cc.diff_metrics(['{"global_step": 8, "losses/kl": NaN}'], ['{"global_step": 8, "losses/kl": NaN}']) is None
    assert cc.diff_metrics(['{"global_step": 8, "losses/kl": NaN}'], ['{"global_step": 8, "losses/kl": 0.5}']) is not None


def metrics(**change) -> list[str]:
    rows = [
        {"global_step": 64, "charts/episodic_return": 12.0, "charts/episodic_length": 12.0},
        {"global_step": 128, "losses/approx_kl": 0.0123, "losses/value_loss": 3.25, "charts/SPS": 7000.0},
    ]
    rows[1].update(change)
    return [json.dumps(r) for r in rows]


def test_metrics():
    assert cc.diff_metrics(metrics(), metrics()) is None
    assert cc.diff_metrics(metrics(), metrics(**{"charts/SPS": 123.0})) is None  # timing: values skipped
    d = cc.diff_metrics(metrics(), metrics(**{"losses/approx_kl": 0.0124}), first_line=16)
    assert d == "metrics line 17 key losses/approx_kl 0.0123 != 0.0124", d
    d = cc.diff_metrics(metrics(), metrics(**{"losses/approx_kl": math.nextafter(0.0123, 1.0)}))
    assert d is not None and "losses/approx_kl" in d, d
    d = cc.diff_metrics(metrics(), metrics(global_step=129))
    assert d is not None and "global_step 128 != 129" in d, d
    d = cc.diff_metrics(metrics(), metrics(**{"losses/clipfrac": 0.0}))
    assert d is not None and "only in new ['losses/clipfrac']" in d, d
    d = cc.diff_metrics(metrics(), metrics()[:1])
    assert d == "metrics: 2 lines != 1 lines", d
    d = cc.diff_metrics(['{"global_step": 1, "x": 1}'], ['{"global_step": 1, "x": 1.0}'])
    assert d is not None and "key x" in d, d
    assert cc.is_timing_key("charts/SPS") and cc.is_timing_key("sps") and not cc.is_timing_key("losses/approx_kl")


def test_summaries():
    a = {
        "global_step": 2048,
        "run_dir": "runs/x__1",
        "sps": 7000,
        "checkpoint": "runs/x__1/ppo.pt",
        "episodic_returns": [10.0, 20.0],
        "eval_returns": [75.0, 52.0],
    }
    b = dict(a, run_dir="runs/x__2", sps=6000, checkpoint="runs/x__2/ppo.pt")
    assert cc.diff_summaries(a, b) is None
    d = cc.diff_summaries(a, dict(b, eval_returns=[75.0, math.nextafter(52.0, 100.0)]))
    assert d is not None and "summary['eval_returns'][1]" in d, d
    d = cc.diff_summaries(a, {k: v for k, v in b.items() if k != "episodic_returns"})
    assert d == "summary key episodic_returns: only in old", d
    assert cc.diff_summaries(a, None) is None  # a plain-process run: only the files are compared


def test_failed_leg_is_not_identical():
    ok = cc.LegResult(ok=True, summary={"global_step": 1, "episodic_returns": [], "eval_returns": [1.0]})
    assert cc.compare_leg(ok, ok) is None
    d = cc.compare_leg(ok, cc.LegResult(error="exit 1: ppo.py: error: boom"))
    assert d == "new failed (exit 1: ppo.py: error: boom)", d
    assert cc.compare_leg(cc.LegResult(skipped=True, error="no checkpoint"), ok).startswith("skipped")
    with pytest.raises(SystemExit) as e:
        cc.main(["HEAD", "HEAD", "--scripts", "nosuch.py"])
    assert e.value.code == 2


def test_head_against_head_is_identical():
    """The harness itself: the same commit twice must be identical, leg by leg (about 15 s on 2 cores)."""
    cmd = [sys.executable, os.path.join(BENCH, "compare_commits.py"), "HEAD", "HEAD", "--scripts", "ppo.py", "--configs", "CartPole-v1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    for leg in cc.LEGS:
        assert any(line.split()[:4] == ["ppo.py", "CartPole-v1", leg, "IDENTICAL"] for line in out.stdout.splitlines()), out.stdout
    assert "summary: 3/3 legs identical" in out.stdout, out.stdout
