"""Every ranking method's name, and its one formula over a candidate list's signals.

=================  ==========================================================================
method             score of a candidate (each signal is a ``[c]`` vector over the candidates)
=================  ==========================================================================
cosine             cos(q, d) of the encoder's embeddings
fidelity           log F of the Bloch states at temperature tau (arXiv 2501.04591; ranks like F);
                   with a head, the similarity of its outputs (log F for state heads)
hybrid             alpha * minmax(cos) + (1 - alpha) * minmax(log F), min-max over the candidates
bm25               Okapi BM25 (``qrerank.index.lexical``)
rrf                reciprocal-rank fusion of bm25 and cosine: 1/(60 + rank_bm25) + 1/(60 + rank_cos)
convex             w * minmax(bm25) + (1 - w) * minmax(cos), w the BM25 weight
convex-fidelity    the same with log F in place of cos
first              the first-stage score the candidates came with (a run file's, an index's)
rrf-run            reciprocal-rank fusion of first and cosine
fused-run          w * minmax(first) + (1 - w) * minmax(cos), w = FUSED_RUN_WEIGHT unless given
head               similarity of a trained head's outputs (log F for state heads, cosine for
                   vector heads); ``MethodSpec.arg`` names the head
run                an external run as is (its own candidates: not scored here)
=================  ==========================================================================

:func:`method_scores` is the one dispatch from a method to its formula; the formulas live in
:mod:`qrerank.core.fusion`. Whoever holds the signals (``score_candidates`` for one query's
tensors, ``qrerank.eval.methods.CandidateScorer`` for matrices over a whole split) implements
:class:`Signals`, computing each signal only when a method asks for it.

The Reranker and the service rank by ``RERANK_METHODS``; ``SearchPipeline.search`` by
``SearchMethod``, whose ``fused`` joins BM25 candidates with ``Fusion``. ``Protocol`` names the
ways ``qrerank eval`` builds candidate lists.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import torch

from qrerank.core.fusion import RRF_K, Normalize, convex_fusion, hybrid_scores, reciprocal_rank_fusion
from qrerank.errors import InputError

FUSED_RUN_WEIGHT = 0.3  # weight of the run's scores in fused-run, until tuned on a held-out split


class Method(StrEnum):
    """Every ranking method (see the module docstring)."""

    COSINE = "cosine"
    FIDELITY = "fidelity"
    HYBRID = "hybrid"
    BM25 = "bm25"
    RRF = "rrf"
    CONVEX = "convex"
    CONVEX_FIDELITY = "convex-fidelity"
    FIRST = "first"
    RRF_RUN = "rrf-run"
    FUSED_RUN = "fused-run"
    HEAD = "head"
    RUN = "run"


class RerankMethod(StrEnum):
    """The methods the Reranker and the service rank by: the ones one query's embeddings give."""

    COSINE = "cosine"
    FIDELITY = "fidelity"
    HYBRID = "hybrid"


RERANK_METHODS = tuple(Method(m) for m in RerankMethod)
METHODS = tuple(m.value for m in RERANK_METHODS)  # the names the Reranker and the service take
# The methods named without an argument (``head:PATH`` and ``run:NAME`` take one).
PLAIN_METHODS = tuple(m.value for m in Method if m not in (Method.HEAD, Method.RUN))
# What ``qrerank eval`` scores unless told otherwise.
EVAL_METHODS = (Method.BM25, Method.COSINE, Method.FIDELITY, Method.HYBRID, Method.RRF)
CONVEX_METHODS = frozenset({Method.CONVEX, Method.CONVEX_FIDELITY})
NEEDS_BM25 = frozenset({Method.BM25, Method.RRF, *CONVEX_METHODS})
NEEDS_RUN_SCORES = frozenset({Method.FIRST, Method.RRF_RUN, Method.FUSED_RUN})
NEEDS_ENCODER = frozenset(Method) - {Method.BM25, Method.FIRST, Method.RUN}


class SearchMethod(StrEnum):
    """``SearchPipeline.search`` methods: the rerank methods, lexical (BM25) and fused."""

    COSINE = "cosine"
    FIDELITY = "fidelity"
    HYBRID = "hybrid"
    LEXICAL = "lexical"
    FUSED = "fused"


class Fusion(StrEnum):
    """How ``fused`` search combines its dense and BM25 scores: reciprocal rank or convex."""

    RRF = "rrf"
    CONVEX = "convex"


SEARCH_METHODS = tuple(m.value for m in SearchMethod)
FUSIONS = tuple(f.value for f in Fusion)


class Protocol(StrEnum):
    """How ``qrerank eval`` builds each query's candidate list (``qrerank.eval.evaluator``).

    full: the whole corpus; rerank: the top k of a run file; judged: the judged documents.
    """

    FULL = "full"
    RERANK = "rerank"
    JUDGED = "judged"


# ``qrerank eval --protocol`` also takes sts: sentence pairs, scored by correlation (eval.sts).
PROTOCOLS = (*(p.value for p in Protocol), "sts")


def parse_method(method: Method | str) -> Method:
    """``method`` as one of ``RERANK_METHODS``; another name is a ValueError listing them."""
    try:
        parsed = Method(method)
    except ValueError:
        parsed = None
    if parsed is None or parsed not in RERANK_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return parsed


def parse_search_method(method: SearchMethod | Method | str) -> SearchMethod:
    """``method`` as a SearchMethod; an unknown name is an InputError listing the choices."""
    try:
        return SearchMethod(method)
    except ValueError:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(SEARCH_METHODS)}") from None


def parse_fusion(fusion: Fusion | str | None, lexical_weight: float | None) -> Fusion:
    """The fusion to use: as given, else convex (measured best: ``qrerank.rerank.pipeline.LEXICAL_WEIGHT``)."""
    if fusion is None:
        return Fusion.CONVEX
    try:
        parsed = Fusion(fusion)
    except ValueError:
        raise InputError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}") from None
    if parsed is Fusion.RRF and lexical_weight is not None:
        raise InputError("a lexical weight applies to convex fusion only; rrf has no weight")
    return parsed


@dataclass(frozen=True, kw_only=True)
class MethodSpec:
    """A method with its parameters.

    ``arg`` is the head's path or the run's name (or the weight of ``fused-run:W``); ``tau``,
    ``alpha`` and ``weight`` (the BM25 or run weight of the convex methods) its parameters;
    ``label`` overrides :attr:`name`.
    """

    kind: Method
    arg: str = ""
    tau: float | None = None
    alpha: float | None = None
    weight: float | None = None
    label: str = ""

    @property
    def name(self) -> str:
        """Key in metrics.json and the run file stem."""
        if self.label:
            return self.label
        if self.kind is Method.RUN:
            return f"run:{self.arg}"
        if self.kind is Method.HEAD:
            return f"head:{Path(self.arg).name}"
        if self.kind is Method.FUSED_RUN and self.arg:
            return f"fused-run:{self.arg}"
        return self.kind.value


class Signals(typing.Protocol):
    """The signals of one query's candidate list, each ``[c]``, computed when first asked for."""

    @property
    def n_qubits(self) -> int:
        """Qubits of the quantum signal (its scale in ``normalize="none"`` hybrids)."""
        ...

    def cosine(self) -> torch.Tensor:
        """cos(q, d) of the encoder's embeddings."""
        ...

    def quantum(self, tau: float | None) -> torch.Tensor:
        """log F of the Bloch states at ``tau`` (None: the holder's default), or a head's similarity."""
        ...

    def hybrid(self, tau: float | None, alpha: float, normalize: Normalize) -> torch.Tensor:
        """:func:`qrerank.core.fusion.hybrid_scores` of cosine and quantum."""
        ...

    def lexical(self) -> torch.Tensor:
        """BM25 of the candidates."""
        ...

    def first(self) -> torch.Tensor:
        """The first-stage scores the candidates came with."""
        ...

    def head(self, key: str) -> torch.Tensor:
        """Similarity of head ``key``'s outputs."""
        ...


def hybrid_of(signals: Signals, tau: float | None, alpha: float, normalize: Normalize) -> torch.Tensor:
    """The hybrid blend from a holder's cosine and quantum signals (``Signals.hybrid``'s default)."""
    return hybrid_scores(signals.cosine(), signals.quantum(tau), alpha, signals.n_qubits, normalize)


def method_scores(
    spec: MethodSpec, signals: Signals, *, normalize: Normalize = "minmax", rrf_k: int = RRF_K
) -> torch.Tensor:
    """``[c]`` scores of a candidate list under ``spec`` (the formulas: module docstring)."""
    kind = spec.kind
    if kind is Method.COSINE:
        return signals.cosine()
    if kind is Method.FIDELITY:
        return signals.quantum(spec.tau)
    if kind is Method.HYBRID:
        return signals.hybrid(spec.tau, _need(spec.alpha, "alpha"), normalize)
    if kind is Method.BM25:
        return signals.lexical()
    if kind is Method.RRF:
        return reciprocal_rank_fusion(signals.lexical(), signals.cosine(), k=rrf_k)
    if kind in CONVEX_METHODS:
        dense = signals.cosine() if kind is Method.CONVEX else signals.quantum(spec.tau)
        return convex_fusion(signals.lexical(), dense, _need(spec.weight, "weight"))
    if kind is Method.FIRST:
        return signals.first()
    if kind is Method.RRF_RUN:
        return reciprocal_rank_fusion(signals.first(), signals.cosine(), k=rrf_k)
    if kind is Method.FUSED_RUN:
        weight = float(spec.arg) if spec.arg else FUSED_RUN_WEIGHT
        return convex_fusion(signals.first(), signals.cosine(), weight)
    if kind is Method.HEAD:
        return signals.head(spec.arg)
    raise ValueError(f"{spec.name} is not scored on candidates")


def _need(value: float | None, what: str) -> float:
    if value is None:
        raise ValueError(f"method needs {what}")
    return value
