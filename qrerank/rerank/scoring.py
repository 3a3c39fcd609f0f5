"""Score one query's candidates by cosine, fidelity or hybrid (pure torch, no I/O).

The method's formula comes from :func:`qrerank.rerank.methods.method_scores`, the one dispatch
every scoring path shares; this module holds one query's signals and computes each only when
asked: ranking by cosine never computes fidelity for every candidate, only for the documents a
caller reads it from (:meth:`Scores.quantum_at`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from qrerank.core.candidates import candidate_signals
from qrerank.core.encoding import bloch_angles, default_tau
from qrerank.core.fidelity import log_fidelity_candidates
from qrerank.core.fusion import Normalize
from qrerank.core.head import Head
from qrerank.core.similarity import cosine_matrix
from qrerank.rerank.methods import Method, MethodSpec, hybrid_of, method_scores, parse_method
from qrerank.types import QuantumKind


class Scores:
    """Per-candidate scores ``[D]``: the ranking key and both raw signals.

    ``quantum`` is log-fidelity of the Bloch states, or with a head its similarity (log-fidelity
    for state heads, cosine of the projections for vector heads). It may be computed on first
    use: :meth:`quantum_at` then computes only the rows asked for. ``quantum_kind`` says which
    of the two it is.
    """

    __slots__ = ("_quantum", "_rows", "cosine", "quantum_kind", "score")

    def __init__(
        self,
        *,
        score: torch.Tensor,
        cosine: torch.Tensor,
        quantum: torch.Tensor | Callable[[], torch.Tensor],
        quantum_rows: Callable[[torch.Tensor], torch.Tensor] | None = None,
        quantum_kind: QuantumKind = "log_fidelity",
    ) -> None:
        self.score, self.cosine = score, cosine
        self._quantum = quantum
        self._rows = quantum_rows
        self.quantum_kind: QuantumKind = quantum_kind

    @property
    def quantum(self) -> torch.Tensor:
        """``[D]`` quantum signal of every candidate."""
        if callable(self._quantum):
            self._quantum = self._quantum()
        return self._quantum

    def quantum_at(self, rows: torch.Tensor) -> torch.Tensor:
        """The quantum signal of candidates ``rows`` only, ``[len(rows)]``."""
        if callable(self._quantum) and self._rows is not None:
            return self._rows(rows)
        return self.quantum[rows]

    def with_score(self, score: torch.Tensor) -> Scores:
        """The same signals under another ranking key (a fusion of this one with BM25)."""
        return Scores(
            score=score,
            cosine=self.cosine,
            quantum=self._quantum,
            quantum_rows=self._rows,
            quantum_kind=self.quantum_kind,
        )


class _Candidates:
    """:class:`~qrerank.rerank.methods.Signals` of one ``[d]`` query's ``[D, d]`` candidates."""

    def __init__(
        self,
        query: torch.Tensor,
        docs: torch.Tensor,
        *,
        tau: float | None,
        head: Head | None,
        doc_angles: torch.Tensor | None,
        quantum: torch.Tensor | None,
        compile: bool,
    ) -> None:
        self.query, self.docs, self.head_, self.compile = query, docs, head, compile
        self.tau = tau if tau is not None else default_tau(query.shape[0])
        self.doc_angles = doc_angles
        self._cos: torch.Tensor | None = None
        self._quantum = quantum
        self._fused: dict[float, torch.Tensor] = {}  # alpha -> hybrid of the fused pass
        self.quantum_kind: QuantumKind = (
            "head_cosine" if head is not None and head.kind == "vector" else "log_fidelity"
        )

    @property
    def n_qubits(self) -> int:
        return self.head_.out_dim if self.head_ is not None and self._quantum is None else self.query.shape[0]

    @property
    def plain(self) -> bool:
        """Whether the quantum signal is the closed-form log F of the Bloch states."""
        return self.head_ is None and self._quantum is None

    def cosine(self) -> torch.Tensor:
        if self._cos is None:
            self._cos = cosine_matrix(self.query[None], self.docs)[0]
        return self._cos

    def quantum(self, tau: float | None = None) -> torch.Tensor:
        # ``tau`` is the one this holder was made with (score_candidates passes it through).
        if self._quantum is None and self.compile and self.plain:
            self._fuse(0.5)  # the compiled pass gives log F with cosine at no extra cost
        if self._quantum is None:
            self._quantum = self.quantum_rows(None)
        return self._quantum

    def quantum_rows(self, rows: torch.Tensor | None) -> torch.Tensor:
        """The quantum signal of ``rows`` (None: all), computed for those rows only."""
        docs = self.docs if rows is None else self.docs[rows]
        if self.head_ is not None:
            with torch.no_grad():
                return self.head_.similarity(self.query[None], docs)
        if self.doc_angles is None:
            theta_d = bloch_angles(docs, self.tau)
        else:
            theta_d = self.doc_angles if rows is None else self.doc_angles[rows]
        return log_fidelity_candidates(bloch_angles(self.query, self.tau), theta_d)

    def hybrid(self, tau: float | None, alpha: float, normalize: Normalize) -> torch.Tensor:
        if not (self.plain and normalize == "minmax"):
            return hybrid_of(self, tau, alpha, normalize)
        if alpha not in self._fused:
            self._fuse(alpha)
        return self._fused[alpha]

    def _fuse(self, alpha: float) -> None:
        """Cosine, log F and their hybrid at ``alpha`` in one pass (:mod:`qrerank.core.candidates`)."""
        s = candidate_signals(
            self.query, self.docs, tau=self.tau, alpha=alpha, doc_angles=self.doc_angles, compile=self.compile
        )
        self._cos, self._quantum = s.cosine, s.log_fidelity
        self._fused[alpha] = s.hybrid

    def scores(self, score: torch.Tensor) -> Scores:
        """``score`` with these signals; the quantum one stays lazy if no method computed it."""
        kind = self.quantum_kind
        if self._quantum is not None:
            return Scores(score=score, cosine=self.cosine(), quantum=self._quantum, quantum_kind=kind)
        return Scores(
            score=score,
            cosine=self.cosine(),
            quantum=self.quantum,
            quantum_rows=self.quantum_rows,
            quantum_kind=kind,
        )

    def lexical(self) -> torch.Tensor:
        raise ValueError(
            "score_candidates has no lexical signal: use SearchPipeline's lexical or fused methods"
        )

    def first(self) -> torch.Tensor:
        raise ValueError("score_candidates has no first-stage scores")

    def head(self, key: str) -> torch.Tensor:
        raise ValueError("pass the head to score_candidates(head=...) and rank by fidelity")


def score_candidates(
    query: torch.Tensor,
    docs: torch.Tensor,
    *,
    method: Method | str = Method.HYBRID,
    alpha: float = 0.5,
    tau: float | None = None,
    head: Head | None = None,
    doc_angles: torch.Tensor | None = None,
    normalize: Normalize = "minmax",
    quantum: torch.Tensor | None = None,
    compile: bool = False,
) -> Scores:
    """Score ``[D, d]`` candidate embeddings against a ``[d]`` query embedding.

    ``doc_angles`` (``[D, d]``, precomputed at the same ``tau``) skips re-encoding the docs;
    ``quantum`` (``[D]`` log-fidelities from another backend, e.g. a circuit simulator) replaces
    the closed form. ``compile`` fuses the closed form into one compiled loop (a one-off compile
    of seconds per process; see :mod:`qrerank.core.candidates`).
    """
    method = parse_method(method)
    if query.dim() != 1 or docs.dim() != 2 or docs.shape[1] != query.shape[0]:
        raise ValueError(f"expected query [d] and docs [D, d], got {tuple(query.shape)}, {tuple(docs.shape)}")
    signals = _Candidates(
        query, docs, tau=tau, head=head, doc_angles=doc_angles, quantum=quantum, compile=compile
    )
    return signals.scores(
        method_scores(MethodSpec(kind=method, tau=tau, alpha=alpha), signals, normalize=normalize)
    )


def rank_order(score: torch.Tensor) -> torch.Tensor:
    """Indices sorting ``[D]`` scores descending; ties keep input order (stable)."""
    return torch.sort(score, descending=True, stable=True).indices


def top_order(score: torch.Tensor, k: int) -> torch.Tensor:
    """``rank_order(score)[:k]`` without sorting all ``D`` scores (an eval ranks whole corpora).

    Every score tied with the k-th best is kept before the stable sort, so ties still keep
    input order at the cut.
    """
    if k >= score.numel():
        return rank_order(score)
    kth = torch.topk(score, k).values[-1]
    if torch.isnan(kth):  # NaN ranks first in both; keep the full sort's order exactly
        return rank_order(score)[:k]
    pool = torch.nonzero(score >= kth).squeeze(1)  # ascending input order
    return pool[rank_order(score[pool])][:k]
