"""Method parsing, RRF, BM25 and the batched candidate scorer against score_candidates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qrerank.errors import InputError
from qrerank.eval.datasets import load_dataset
from qrerank.eval.methods import (
    BM25Scorer,
    CandidateScorer,
    parse_methods,
    reciprocal_rank_fusion,
)
from qrerank.rerank.methods import Method, MethodSpec
from qrerank.rerank.scoring import score_candidates


def test_parse_methods() -> None:
    specs = parse_methods("bm25, cosine,run:bm25,head:/x/my-head,cosine")
    assert [s.name for s in specs] == ["bm25", "cosine", "run:bm25", "head:my-head"]
    assert specs[2] == MethodSpec(kind=Method.RUN, arg="bm25")
    with pytest.raises(InputError, match="unknown method 'dense'"):
        parse_methods("cosine,dense")
    with pytest.raises(InputError, match="needs a value"):
        parse_methods("run:")
    with pytest.raises(InputError, match="no methods"):
        parse_methods(" , ")


def test_rrf_by_hand() -> None:
    # ranks a: x1 1, x2 2, x3 3; b: x3 1, x2 2, x1 3 (k = 60)
    # x1 = x3 = 1/61 + 1/63 = 0.0322665, x2 = 2/62 = 0.0322581 -> x1, x3 above x2
    fused = reciprocal_rank_fusion(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 3.0]))
    assert fused.tolist() == pytest.approx([1 / 61 + 1 / 63, 2 / 62, 1 / 63 + 1 / 61])
    assert fused[0] > fused[1]


def test_bm25_prefers_lexical_matches(tiny: Path) -> None:
    ds = load_dataset(tiny)
    bm25 = BM25Scorer(list(ds.corpus.values()))
    scores = bm25.scores("cosine similarity of embedding vectors")
    best = list(ds.corpus)[int(np.argmax(scores))]
    assert best == "d5"
    assert bm25.scores("the of and").tolist() == [0.0] * 6  # stopwords only: no terms left


def test_batched_scores_equal_score_candidates(tiny: Path, encoder) -> None:
    ds = load_dataset(tiny)
    cands = {"q1": ["d3", "d1", "d2", "d4", "d5"], "q2": ["d6", "d5", "d1"]}
    doc_ids = list(ds.corpus)
    q = encoder.encode([ds.queries[x] for x in ds.queries])
    d = encoder.encode([ds.corpus[x].content for x in doc_ids])
    scorer = CandidateScorer(
        qids=list(ds.queries), queries=ds.queries, candidates=cands, doc_ids=doc_ids, q_emb=q, d_emb=d
    )
    row = {x: i for i, x in enumerate(doc_ids)}
    for i, qid in enumerate(ds.queries):
        docs = torch.from_numpy(d[[row[x] for x in cands[qid]]])
        for method, kw in (
            ("cosine", {}),
            ("fidelity", {"tau": 0.3}),
            ("hybrid", {"tau": 0.3, "alpha": 0.4}),
        ):
            ref = score_candidates(torch.from_numpy(q[i]), docs, method=method, **kw).score
            spec = MethodSpec(kind=Method(method), tau=kw.get("tau"), alpha=kw.get("alpha"))
            assert scorer.scores(spec, i).float() == pytest.approx(ref, abs=1e-5)
    run = scorer.run(MethodSpec(kind=Method.COSINE), depth=2)
    assert {q: list(r) for q, r in run.items()} == {"q1": ["d1", "d4"], "q2": ["d5", "d6"]}


def test_saturated_qubits_stay_finite() -> None:
    # tanh(u / tau) rounds to +-1 for tiny tau: orthogonal qubits. float64 keeps log F finite,
    # so min-max fusion gives no NaN.
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    d = np.array([[-1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    scorer = CandidateScorer(
        qids=["q"],
        queries={"q": "q"},
        candidates={"q": ["a", "b", "c"]},
        doc_ids=["a", "b", "c"],
        q_emb=q,
        d_emb=d,
    )
    logf = scorer.log_fidelity(0, 1e-3)
    assert torch.isfinite(logf).all()
    hybrid = scorer.scores(MethodSpec(kind=Method.HYBRID, tau=1e-3, alpha=1.0), 0)
    assert torch.isfinite(hybrid).all() and int(hybrid.argmax()) == 2
