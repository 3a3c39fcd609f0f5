"""Eval methods on the run's own first-stage scores: first, rrf-run, fused-run[:W]."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from qrerank.errors import InputError
from qrerank.eval.evaluator import EvalConfig, evaluate
from qrerank.eval.methods import parse_methods
from qrerank.rerank.methods import Method, MethodSpec

# q1's candidates in runs/bm25.trec: d3 9, d1 8, d2 7, d4 6, d5 5. Cosine to q1 (conftest
# ANGLES, q1 at angle 0) is cos(angle): d1 .1, d4 .3, d2 .5, d3 .7, d5 .9.
RUN_Q1 = {"d3": 9.0, "d1": 8.0, "d2": 7.0, "d4": 6.0, "d5": 5.0}
ANGLE_Q1 = {"d1": 0.1, "d4": 0.3, "d2": 0.5, "d3": 0.7, "d5": 0.9}


def cfg(tiny: Path, **kw) -> EvalConfig:  # type: ignore[no-untyped-def]
    return EvalConfig(data_dir=tiny, n_resamples=200, show_progress=False, **kw)


def test_parse_run_methods() -> None:
    specs = parse_methods("first,rrf-run,fused-run,fused-run:0.50")
    assert [s.name for s in specs] == ["first", "rrf-run", "fused-run", "fused-run:0.5"]
    assert specs[3] == MethodSpec(kind=Method.FUSED_RUN, arg="0.5")
    for bad in ("fused-run:2", "fused-run:x", "fused-run:nan"):
        with pytest.raises(InputError, match=r"number in \[0, 1\]"):
            parse_methods(bad)


def test_run_score_methods_by_hand(tiny: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    methods = "first,rrf-run,fused-run,fused-run:1,fused-run:0,run:bm25"
    res = evaluate(cfg(tiny, protocol="rerank", methods=methods), encoder=encoder)
    runs, m = res["runs"], res["metrics"]
    assert runs["first"]["q1"] == RUN_Q1  # the run's scores as they are
    assert m["first"] == pytest.approx(m["run:bm25"])  # every candidate of the run has text
    # rrf-run: run ranks d3 1, d1 2, d2 3, d4 4, d5 5; cosine ranks d1 1, d4 2, d2 3, d3 4, d5 5
    assert runs["rrf-run"]["q1"] == pytest.approx(
        {"d1": 1 / 62 + 1 / 61, "d3": 1 / 61 + 1 / 64, "d2": 2 / 63, "d4": 1 / 64 + 1 / 62, "d5": 2 / 65}
    )
    # fused-run: 0.3 * minmax(run) + 0.7 * minmax(cos)
    cos = {d: math.cos(a) for d, a in ANGLE_Q1.items()}
    lo, hi = min(cos.values()), max(cos.values())
    expected = {d: 0.3 * (RUN_Q1[d] - 5) / 4 + 0.7 * (cos[d] - lo) / (hi - lo) for d in RUN_Q1}
    assert runs["fused-run"]["q1"] == pytest.approx(expected)
    # the endpoints: w = 1 ranks like the run, w = 0 like cosine
    assert list(runs["fused-run:1"]["q1"]) == list(runs["first"]["q1"])
    assert list(runs["fused-run:0"]["q1"]) == list(runs["cosine"]["q1"])
    assert {"first", "rrf-run", "fused-run"} <= set(res["significance"])  # tested against cosine


def test_run_score_methods_need_the_rerank_protocol(tiny: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="need --protocol rerank"):
        evaluate(cfg(tiny, protocol="full", methods="cosine,fused-run"), encoder=encoder)
