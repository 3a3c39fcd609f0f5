"""Retrieval metrics through ir-measures (pytrec_eval-terrier backend), per query.

The four contract metrics and their ir-measures definitions, for binary threshold ``rel``:

| key     | ir-measures                           | meaning                                   |
|---------|---------------------------------------|-------------------------------------------|
| nDCG@10 | ``nDCG@10``                           | graded, linear gain (trec_eval), primary  |
| RR@10   | ``RR(rel=rel)@10``                    | reciprocal rank of the first grade >= rel |
| R@100   | ``R(rel=rel)@100``                    | recall of grade >= rel docs in the top 100 |
| AP      | ``AP(rel=rel)``                       | average precision over the whole run      |

TREC DL uses rel = 2 (grades 0-3); BEIR datasets rel = 1. A query of the evaluated set that a
run does not answer scores 0 (trec_eval ``-c``), so every method is averaged over the same set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from qrerank._optional import require

PRIMARY_METRIC = "nDCG@10"
METRICS = ("nDCG@10", "RR@10", "R@100", "AP")

PerQuery = dict[str, dict[str, float]]  # metric key -> qid -> value


def measures(rel_level: int = 1) -> dict[str, Any]:
    """Contract key -> ir-measures measure object for binary threshold ``rel_level``."""
    irm = require("ir_measures", "eval")
    return {
        "nDCG@10": irm.nDCG @ 10,
        "RR@10": irm.RR(rel=rel_level) @ 10,
        "R@100": irm.R(rel=rel_level) @ 100,
        "AP": irm.AP(rel=rel_level),
    }


def measure_names(rel_level: int = 1) -> dict[str, str]:
    """Contract key -> ir-measures' own name (recorded in meta.json)."""
    return {k: str(m) for k, m in measures(rel_level).items()}


def per_query(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    query_ids: Iterable[str],
    rel_level: int = 1,
    keys: Sequence[str] = METRICS,
) -> PerQuery:
    """``{metric: {qid: value}}`` over ``query_ids`` (unanswered queries score 0), for ``keys``."""
    irm = require("ir_measures", "eval")
    require("pytrec_eval", "eval")
    qids = list(query_ids)
    by_measure = {k: m for k, m in measures(rel_level).items() if k in keys}
    key_of = {m: k for k, m in by_measure.items()}
    out: PerQuery = {k: dict.fromkeys(qids, 0.0) for k in by_measure}
    wanted = set(qids)
    sub_qrels = {q: dict(qrels[q]) for q in qids if q in qrels}
    sub_run = {q: dict(docs) for q, docs in run.items() if q in wanted and docs}
    if sub_run:
        for m in irm.pytrec_eval.iter_calc(list(by_measure.values()), sub_qrels, sub_run):
            if m.query_id in wanted:
                out[key_of[m.measure]][m.query_id] = float(m.value)
    return out


def aggregate(pq: PerQuery) -> dict[str, float]:
    """Mean of each metric over its queries."""
    return {k: (sum(v.values()) / len(v) if v else 0.0) for k, v in pq.items()}


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    query_ids: Iterable[str],
    rel_level: int = 1,
) -> tuple[dict[str, float], PerQuery]:
    """Aggregate metrics and per-query values of one run."""
    pq = per_query(qrels, run, query_ids, rel_level)
    return aggregate(pq), pq
