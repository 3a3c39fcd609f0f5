"""benchmarks/head_latency.py: its grid builds the heads it names, and each one runs (no timings asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import head_latency as bench


def test_the_full_grid_has_every_head_at_every_size() -> None:
    cells, skipped = bench.grid(quick=False)
    assert skipped == []  # every in > out, so QBEC takes all nine combinations
    for kind in ("linear", "qbec", "angle"):
        assert {(i, o) for k, i, o in cells if k == kind} == {
            (i, o) for i in (384, 768, 1024) for o in (64, 128, 256)
        }
    assert {(i, o) for k, i, o in cells if k == "bloch"} == {(384, 384), (768, 768), (1024, 1024)}


@pytest.mark.parametrize("kind", ["linear", "qbec", "angle", "bloch"])
def test_each_head_has_the_stated_dims_and_output_shape(kind: str) -> None:
    in_dim, out_dim = (48, 48) if kind == "bloch" else (48, 16)
    head = bench.build_head(kind, in_dim, out_dim)
    assert (head.in_dim, head.out_dim) == (in_dim, out_dim)
    assert not head.training
    with torch.inference_mode():
        x = bench.inputs(3, in_dim)
        assert tuple(head(x).shape) == bench.expected_shape(head, 3)
        scores = bench.forward_and_score(head, x)
    assert scores.shape == (1, 3) and torch.isfinite(scores).all()
    # the first row is the query itself: cosine 1 or log-fidelity 0, the best score
    assert scores[0, 0] == pytest.approx(0.0 if head.kind == "state" else 1.0, abs=1e-5)
    assert int(scores.argmax()) == 0


def test_parameter_counts_match_the_architectures() -> None:
    assert bench.build_head("linear", 768, 256).num_parameters() == 768 * 256 + 256
    assert bench.build_head("qbec", 768, 256).num_parameters() == 6_144 + 1  # gates + learnable tau
    assert bench.build_head("angle", 384, 64).num_parameters() == 384 * 512 + 512 + 512 * 128 + 128


def test_a_tiny_run_writes_rows_with_ratios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.json"
    monkeypatch.setattr(bench, "QUICK", {"in": (24,), "out": (8,), "batch": (1, 4)})
    assert (
        bench.main(["--quick", "--rounds", "1", "--min-time", "0", "--min-calls", "2", "--out", str(out)])
        == 0
    )
    assert torch.is_grad_enabled()  # the run switched autograd off for itself only
    rows = json.loads(out.read_text())["rows"]
    assert {(r["head"], r["batch"]) for r in rows} == {
        (h, b) for h in ("linear", "qbec", "angle", "bloch") for b in (1, 4)
    }
    for r in rows:
        assert r["forward"]["calls"] >= 2 and r["forward_score"]["calls"] >= 2
        if r["head"] == "linear":
            assert r["forward_ratio_to_linear"] == 1.0
