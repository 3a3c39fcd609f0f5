"""Score one query's candidates by cosine, fidelity or hybrid (pure torch, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import torch

from qrerank.core.encoding import bloch_angles, default_tau
from qrerank.core.fidelity import log_fidelity_candidates
from qrerank.core.fusion import Normalize, hybrid_scores
from qrerank.core.head import Head
from qrerank.core.similarity import cosine_matrix, similarity


class Method(StrEnum):
    """Rerank methods: cosine, fidelity, or their min-max blend (hybrid)."""

    COSINE = "cosine"
    FIDELITY = "fidelity"
    HYBRID = "hybrid"


METHODS = tuple(m.value for m in Method)


def parse_method(method: Method | str) -> Method:
    """``method`` as a Method; an unknown name is a ValueError listing the choices."""
    try:
        return Method(method)
    except ValueError:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}") from None


@dataclass(frozen=True)
class Scores:
    """Per-candidate scores ``[D]``: the ranking key and both raw signals.

    ``quantum`` is log-fidelity of the Bloch states, or with a head its similarity (log-fidelity
    for state heads, cosine of the projections for vector heads).
    """

    score: torch.Tensor
    cosine: torch.Tensor
    quantum: torch.Tensor


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
) -> Scores:
    """Score ``[D, d]`` candidate embeddings against a ``[d]`` query embedding.

    ``doc_angles`` (``[D, d]``, precomputed at the same ``tau``) skips re-encoding the docs;
    ``quantum`` (``[D]`` log-fidelities from another backend, e.g. a circuit simulator) replaces
    the closed form.
    """
    method = parse_method(method)
    if query.dim() != 1 or docs.dim() != 2 or docs.shape[1] != query.shape[0]:
        raise ValueError(f"expected query [d] and docs [D, d], got {tuple(query.shape)}, {tuple(docs.shape)}")
    cos = cosine_matrix(query[None], docs)[0]
    if quantum is not None:
        n_qubits = query.shape[0]
    elif head is not None:
        with torch.no_grad():
            hq, hd = head(query[None]), head(docs)
        quantum = similarity(hq, hd, head.kind)
        n_qubits = head.out_dim
    else:
        tau = tau if tau is not None else default_tau(query.shape[0])
        theta_q = bloch_angles(query, tau)
        theta_d = doc_angles if doc_angles is not None else bloch_angles(docs, tau)
        quantum = log_fidelity_candidates(theta_q, theta_d)
        n_qubits = query.shape[0]
    if method is Method.COSINE:
        score = cos
    elif method is Method.FIDELITY:
        score = quantum
    else:
        score = hybrid_scores(cos, quantum, alpha, n_qubits, normalize)
    return Scores(score=score, cosine=cos, quantum=quantum)


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
