"""The one scoring engine: the fused candidate pass, lazy signals, the method dispatch, tuning."""

from __future__ import annotations

import math

import pytest
import torch

import qrerank.rerank.scoring as scoring
from qrerank.core.candidates import candidate_signals
from qrerank.core.encoding import bloch_angles
from qrerank.core.fidelity import log_fidelity_angles
from qrerank.core.fusion import hybrid_scores
from qrerank.eval.sweep import best, tune_tau_alpha
from qrerank.rerank.methods import METHODS, PLAIN_METHODS, Method, MethodSpec, method_scores, parse_method
from qrerank.rerank.reranker import ranked
from qrerank.types import Document


def _unit(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(*shape, generator=gen), dim=-1)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(7)


@pytest.mark.parametrize("compile", [False, True])
def test_candidate_signals_match_reference(gen: torch.Generator, compile: bool) -> None:
    q, docs = _unit(gen, 96), _unit(gen, 40, 96)
    docs[3] = q  # identical state: log F = 0 exactly, the refinement's case
    docs[5] = q + 1e-4 * _unit(gen, 96)
    tau = 0.3
    s = candidate_signals(q, docs, tau=tau, alpha=0.3, compile=compile)
    ref = log_fidelity_angles(bloch_angles(q.double(), tau), bloch_angles(docs.double(), tau))
    torch.testing.assert_close(s.log_fidelity.double(), ref, rtol=1e-4, atol=1e-5)
    assert float(s.log_fidelity[3]) == pytest.approx(0.0, abs=1e-5)
    cos = torch.nn.functional.cosine_similarity(q[None], docs, dim=-1)
    torch.testing.assert_close(s.cosine, cos, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        s.hybrid, hybrid_scores(s.cosine, s.log_fidelity, 0.3, 96), rtol=1e-5, atol=1e-6
    )


def test_compiled_and_eager_candidates_agree_at_other_lengths(gen: torch.Generator) -> None:
    q = _unit(gen, 64)
    for n_docs in (2, 17, 300):  # one graph serves every length (a symbolic size)
        docs = _unit(gen, n_docs, 64)
        a = candidate_signals(q, docs, tau=0.2, compile=True)
        b = candidate_signals(q, docs, tau=0.2, compile=False)
        torch.testing.assert_close(a.log_fidelity, b.log_fidelity, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a.hybrid, b.hybrid, rtol=1e-5, atol=1e-5)


def test_candidate_signals_keep_gradients_and_single_candidates(gen: torch.Generator) -> None:
    q = _unit(gen, 32).requires_grad_()
    docs = _unit(gen, 5, 32)
    s = candidate_signals(q, docs, tau=0.5, compile=True)  # with gradients: the eager ops
    s.log_fidelity.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    one = candidate_signals(q.detach(), docs[:1], tau=0.5, compile=True)
    assert one.hybrid.shape == (1,)
    with pytest.raises(ValueError, match="alpha"):
        candidate_signals(q.detach(), docs, alpha=1.5)


def test_cosine_ranking_computes_fidelity_only_for_returned_rows(
    gen: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    q, docs = _unit(gen, 48), _unit(gen, 50, 48)
    seen: list[int] = []
    real = scoring.log_fidelity_candidates

    def spy(theta_q: torch.Tensor, theta_d: torch.Tensor) -> torch.Tensor:
        seen.append(theta_d.shape[0])
        return real(theta_q, theta_d)

    monkeypatch.setattr(scoring, "log_fidelity_candidates", spy)
    scores = scoring.score_candidates(q, docs, method="cosine", tau=0.4)
    assert seen == []  # ranking by cosine computed no fidelity
    hits = ranked([Document(text=str(i)) for i in range(50)], scores, 3)
    assert seen == [3]
    full = scoring.score_candidates(q, docs, method="fidelity", tau=0.4)
    want = full.quantum[[h.index for h in hits]]
    assert [h.quantum for h in hits] == pytest.approx(want.tolist(), rel=1e-6)
    assert [h.index for h in hits] == torch.argsort(scores.score, descending=True)[:3].tolist()


def test_compiled_score_candidates_equal_eager(gen: torch.Generator) -> None:
    q, docs = _unit(gen, 64), _unit(gen, 30, 64)
    for method in METHODS:
        a = scoring.score_candidates(q, docs, method=method, tau=0.25, alpha=0.7, compile=True)
        b = scoring.score_candidates(q, docs, method=method, tau=0.25, alpha=0.7)
        torch.testing.assert_close(a.score, b.score, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a.quantum, b.quantum, rtol=1e-5, atol=1e-5)


class _Fixed:
    """Signals with fixed vectors, to check which signal each method reads."""

    n_qubits = 4

    def __init__(self) -> None:
        self.v = {
            "cosine": torch.tensor([0.9, 0.1, 0.5]),
            "quantum": torch.tensor([-3.0, -1.0, -2.0]),
            "lexical": torch.tensor([0.0, 4.0, 1.0]),
            "first": torch.tensor([1.0, 3.0, 2.0]),
        }

    def cosine(self) -> torch.Tensor:
        return self.v["cosine"]

    def quantum(self, tau: float | None) -> torch.Tensor:
        return self.v["quantum"]

    def hybrid(self, tau: float | None, alpha: float, normalize: str) -> torch.Tensor:
        return hybrid_scores(self.v["cosine"], self.v["quantum"], alpha, 4, normalize)  # type: ignore[arg-type]

    def lexical(self) -> torch.Tensor:
        return self.v["lexical"]

    def first(self) -> torch.Tensor:
        return self.v["first"]

    def head(self, key: str) -> torch.Tensor:
        return torch.tensor([float(len(key)), 0.0, 1.0])


def test_method_scores_read_the_right_signals() -> None:
    s = _Fixed()
    order = {}
    for name in PLAIN_METHODS:
        spec = MethodSpec(kind=Method(name), tau=0.1, alpha=0.5, weight=1.0)
        order[name] = torch.argsort(method_scores(spec, s), descending=True).tolist()
    assert order["cosine"] == [0, 2, 1]
    assert order["fidelity"] == [1, 2, 0]
    assert order["bm25"] == order["convex"] == order["convex-fidelity"] == [1, 2, 0]  # weight 1: BM25 only
    assert order["first"] == [1, 2, 0]
    assert order["fused-run"] == [0, 2, 1]  # 0.3 minmax(first) + 0.7 minmax(cos) = [0.7, 0.3, 0.5]
    assert method_scores(MethodSpec(kind=Method.HEAD, arg="abcd"), s)[0] == 4.0
    with pytest.raises(ValueError, match="not scored"):
        method_scores(MethodSpec(kind=Method.RUN, arg="bm25"), s)


def test_parse_method_takes_rerank_methods_only() -> None:
    assert parse_method("hybrid") is Method.HYBRID
    for bad in ("bm25", "nope"):
        with pytest.raises(ValueError, match="cosine, fidelity, hybrid"):
            parse_method(bad)


def test_tune_tau_alpha_picks_first_best_and_alpha_at_that_tau() -> None:
    calls: list[tuple[Method, float, float | None]] = []

    def evaluate(method: Method, tau: float, alpha: float | None) -> dict[str, float]:
        calls.append((method, tau, alpha))
        if method is Method.FIDELITY:
            return {"m": -abs(math.log(tau / 0.5))}  # best at tau = 0.5
        return {"m": 1.0 if alpha in (0.2, 0.4) else 0.0}  # tie: the first wins

    tuned = tune_tau_alpha(evaluate, [0.25, 0.5, 1.0], [0.0, 0.2, 0.4], "m")
    assert (tuned.tau, tuned.alpha) == (0.5, 0.2)
    assert all(t == 0.5 for m, t, _ in calls if m is Method.HYBRID)
    assert list(tuned.tau_curve) == [0.25, 0.5, 1.0]
    assert best({1.0: {"m": 2.0}, 0.5: {"m": 2.0}}, "m") == 1.0


def test_reranker_compiled_ranks_like_eager() -> None:
    from qrerank.embed.hashing import HashingEncoder
    from qrerank.rerank.reranker import Reranker

    docs = [f"alpha beta {i} gamma {i % 4}" for i in range(12)]
    for method in METHODS:
        eager = Reranker(HashingEncoder(64), method=method).rank("beta gamma 3", docs)
        fast = Reranker(HashingEncoder(64), method=method, compile=True).rank("beta gamma 3", docs)
        # Same scores per document (near-ties may swap places by a rounding).
        by_doc = {h.index: (h.score, h.quantum) for h in eager}
        for h in fast:
            assert (h.score, h.quantum) == pytest.approx(by_doc[h.index], rel=1e-5, abs=1e-5)
