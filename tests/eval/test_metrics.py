"""Metrics through ir-measures against hand-computed values on the tiny fixture."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from qrerank.eval.datasets import load_dataset
from qrerank.metrics import evaluate_run, measure_names

L2 = math.log2

# runs/bm25.trec against qrels/test.tsv (grades; d7 is judged 2 for q1 but never retrieved).
# trec_eval nDCG uses linear gain g / log2(rank + 1):
#   q1 ranking d3(0) d1(3) d2(1) d4(2) d5(-): DCG = 3/log2(3) + 1/log2(4) + 2/log2(5) = 3.25414
#      ideal 3, 2, 2, 1 (d1, d4, d7, d2): IDCG = 3 + 2/log2(3) + 2/log2(4) + 1/log2(5) = 5.69254
#      nDCG = 0.571651
#   q2 ranking d6(1) d5(2) d1(-): DCG = 1 + 2/log2(3) = 2.26186; IDCG = 2 + 1/log2(3) = 2.63093
#      nDCG = 0.859719
# Binary metrics at rel >= 2 (q1 relevant: d1, d4, d7; q2: d5):
#   RR@10: q1 first relevant d1 at rank 2 -> 1/2; q2 d5 at rank 2 -> 1/2          mean 0.5
#   R@100: q1 2 of 3 -> 2/3; q2 1 of 1 -> 1                                          mean 5/6
#   AP:    q1 (1/2 + 2/4) / 3 = 1/3; q2 (1/2) / 1 = 1/2                                mean 5/12
Q1_NDCG = (3 / L2(3) + 1 / L2(4) + 2 / L2(5)) / (3 + 2 / L2(3) + 2 / L2(4) + 1 / L2(5))
Q2_NDCG = (1 + 2 / L2(3)) / (2 + 1 / L2(3))
BM25_EXPECTED = {"nDCG@10": (Q1_NDCG + Q2_NDCG) / 2, "RR@10": 0.5, "R@100": 5 / 6, "AP": 5 / 12}


def _run(ds, name: str) -> dict[str, dict[str, float]]:
    return {q: dict(docs) for q, docs in ds.run(name).items()}


def test_hand_computed_metrics_of_a_fixed_ranking(tiny: Path) -> None:
    ds = load_dataset(tiny)
    agg, pq = evaluate_run(ds.qrels, _run(ds, "bm25"), ds.queries, ds.rel_level)
    assert round(Q1_NDCG, 6) == 0.571651
    assert round(Q2_NDCG, 6) == 0.859719
    assert agg == pytest.approx(BM25_EXPECTED, abs=1e-9)
    assert pq["nDCG@10"] == pytest.approx({"q1": Q1_NDCG, "q2": Q2_NDCG})
    assert pq["AP"] == pytest.approx({"q1": 1 / 3, "q2": 1 / 2})


def test_rel_level_changes_binary_metrics_only(tiny: Path) -> None:
    # At rel >= 1, q2's first relevant doc is d6 at rank 1: RR = (1/2 + 1) / 2 = 0.75.
    ds = load_dataset(tiny, rel_level=1)
    agg, _ = evaluate_run(ds.qrels, _run(ds, "bm25"), ds.queries, ds.rel_level)
    assert agg["RR@10"] == pytest.approx(0.75)
    assert agg["nDCG@10"] == pytest.approx(BM25_EXPECTED["nDCG@10"])
    assert measure_names(2) == {
        "nDCG@10": "nDCG@10",
        "RR@10": "RR(rel=2)@10",
        "R@100": "R(rel=2)@100",
        "AP": "AP(rel=2)",
    }


def test_perfect_run_and_unanswered_queries(tiny: Path) -> None:
    ds = load_dataset(tiny)
    agg, _ = evaluate_run(ds.qrels, _run(ds, "perfect"), ds.queries, ds.rel_level)
    assert agg == pytest.approx({"nDCG@10": 1.0, "RR@10": 1.0, "R@100": 1.0, "AP": 1.0})
    # A query the run does not answer scores 0 and still counts in the mean (trec_eval -c).
    only_q1 = {"q1": _run(ds, "perfect")["q1"]}
    agg, pq = evaluate_run(ds.qrels, only_q1, ds.queries, ds.rel_level)
    assert pq["nDCG@10"] == {"q1": 1.0, "q2": 0.0}
    assert agg["nDCG@10"] == pytest.approx(0.5)
