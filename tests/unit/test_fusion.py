"""Score fusion and the candidate scorer."""

from __future__ import annotations

import pytest
import torch

from qrerank.core.fusion import hybrid_scores, minmax, quantum_score
from qrerank.rerank.scoring import score_candidates


def test_minmax_and_constant_rows() -> None:
    assert torch.equal(minmax(torch.tensor([2.0, 4.0, 3.0])), torch.tensor([0.0, 1.0, 0.5]))
    assert torch.equal(minmax(torch.tensor([5.0, 5.0])), torch.zeros(2))


def test_alpha_endpoints_reproduce_each_signal_order(gen: torch.Generator) -> None:
    cos, lf = torch.rand(20, generator=gen), -50 * torch.rand(20, generator=gen)
    assert torch.equal(hybrid_scores(cos, lf, 1.0, 384).argsort(), cos.argsort())
    assert torch.equal(hybrid_scores(cos, lf, 0.0, 384).argsort(), lf.argsort())
    mid = hybrid_scores(cos, lf, 0.5, 384)
    assert torch.allclose(mid, 0.5 * minmax(cos) + 0.5 * minmax(lf))
    with pytest.raises(ValueError, match="alpha"):
        hybrid_scores(cos, lf, 1.5, 384)
    with pytest.raises(ValueError, match="normalize"):
        hybrid_scores(cos, lf, 0.5, 384, normalize="zscore")  # type: ignore[arg-type]


def test_quantum_score_range() -> None:
    lf = torch.tensor([0.0, -1e9, -384 * 0.01])
    q = quantum_score(lf, 384)
    assert q[0] == 1.0 and q[1] == pytest.approx(-1.0) and -1 < q[2] < 1
    none = hybrid_scores(torch.tensor([1.0, 0.0]), torch.tensor([0.0, -3.84]), 0.5, 384, normalize="none")
    assert none[0] == pytest.approx(1.0)


def test_score_candidates_methods(gen: torch.Generator) -> None:
    docs = torch.randn(10, 16, generator=gen)
    q = docs[3] + 0.01 * torch.randn(16, generator=gen)
    for method in ("cosine", "fidelity", "hybrid"):
        s = score_candidates(q, docs, method=method, tau=0.5)
        assert int(s.score.argmax()) == 3
    s = score_candidates(q, docs, method="fidelity", tau=0.5)
    assert torch.equal(s.score, s.quantum)
    with pytest.raises(ValueError, match="unknown method"):
        score_candidates(q, docs, method="bm25")
    with pytest.raises(ValueError, match="expected query"):
        score_candidates(docs, docs)


@pytest.mark.parametrize("seed", range(20))
def test_top_order_equals_the_full_stable_sort_cut(seed: int) -> None:
    """Heavy ties (few distinct values), every cut: ``top_order`` is ``rank_order[:k]``."""
    from qrerank.rerank.scoring import rank_order, top_order

    gen = torch.Generator().manual_seed(seed)
    score = torch.randint(0, 5, (50,), generator=gen).double()
    if seed % 2:
        score = score + torch.rand(50, generator=gen, dtype=torch.float64)  # no ties
    for k in (1, 3, 10, 49, 50, 80):
        assert torch.equal(top_order(score, k), rank_order(score)[:k])
