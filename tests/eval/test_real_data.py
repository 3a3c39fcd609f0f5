"""The harness against published figures on the staged TREC DL data (no neural encoder needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrerank.embed.hashing import HashingEncoder
from qrerank.eval.evaluator import EvalConfig, evaluate

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

# Anserini's BM25 (default k1 = 0.9, b = 0.4) passage runs: nDCG@10 0.5058 (DL19), 0.4796 (DL20).
PUBLISHED = {"trec-dl-2019-passage": 0.5058, "trec-dl-2020-passage": 0.4796}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_bm25_run_reproduces_anserini(name: str) -> None:
    if not (DATA / name).is_dir():
        pytest.skip(f"{DATA / name} not present")
    # The cosine baseline always runs; a hashing encoder keeps it instant (not measured here).
    cfg = EvalConfig(
        data_dir=DATA / name, protocol="rerank", methods="run:bm25", n_resamples=200, show_progress=False
    )
    res = evaluate(cfg, encoder=HashingEncoder(64))
    assert res["meta"]["rel_level"] == 2
    assert res["metrics"]["run:bm25"]["nDCG@10"] == pytest.approx(PUBLISHED[name], abs=1e-4)
