"""Blending cosine and quantum scores: alpha * cosine + (1 - alpha) * quantum.

The two signals live on different scales. Cosine is in [-1, 1]; log-fidelity is in (-inf, 0]
and its spread grows with the number of qubits and shrinks with tau. A raw blend would let
whichever has the larger spread decide the order, so alpha would not mean what it says.

``normalize="minmax"`` (default) rescales each signal to [0, 1] over the candidates of each
query before blending, so alpha is the weight of each ranking signal and alpha = 1 / alpha = 0
reproduce the pure cosine / pure fidelity orders exactly. This is the usual choice for fusing
scores of one candidate list (e.g. relative-score fusion in hybrid search).

``normalize="none"`` maps log-fidelity to the geometric-mean per-qubit fidelity
g = F^(1/n) = exp(log F / n) in [0, 1] and then to 2g - 1 in [-1, 1], cosine's range. For one
qubit 2|<a|b>|^2 - 1 = cos(theta_a - theta_b), so this is a mean "cosine of angle differences";
scores are comparable across queries but the blend weight depends on tau.

Lexical + dense fusion (the search pipeline's ``fused`` method, eval's ``rrf``):

- :func:`reciprocal_rank_fusion`: RRF(d) = sum_s 1 / (k + rank_s(d)), 1-based ranks per signal,
  k = 60 (Cormack, Clarke and Buettcher, SIGIR 2009). Uses only the orders, so the scales of
  BM25 and of the dense score never meet.
- :func:`convex_fusion`: w * minmax(lexical) + (1 - w) * minmax(dense), the scores of one
  candidate list rescaled to [0, 1] first (convex combination, Bruch et al., TOIS 2023).
"""

from __future__ import annotations

from typing import Literal

import torch

Normalize = Literal["minmax", "none"]
RRF_K = 60


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Rescale ``[..., n]`` to [0, 1] along the last dim; a constant row maps to zeros."""
    lo = x.amin(dim=-1, keepdim=True)
    span = x.amax(dim=-1, keepdim=True) - lo
    return torch.where(span > 0, (x - lo) / span.clamp(min=torch.finfo(x.dtype).tiny), 0.0)


def quantum_score(log_f: torch.Tensor, n_qubits: int) -> torch.Tensor:
    """2 * F^(1/n) - 1 in [-1, 1]: log-fidelity on cosine's scale."""
    return 2 * torch.exp(log_f / n_qubits) - 1


def hybrid_scores(
    cosine: torch.Tensor,
    log_f: torch.Tensor,
    alpha: float,
    n_qubits: int,
    normalize: Normalize = "minmax",
) -> torch.Tensor:
    """alpha * cosine + (1 - alpha) * quantum, for ``[..., n_candidates]`` score tensors."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if cosine.shape != log_f.shape:
        raise ValueError(f"shape mismatch: {tuple(cosine.shape)} vs {tuple(log_f.shape)}")
    if normalize == "minmax":
        return alpha * minmax(cosine) + (1 - alpha) * minmax(log_f)
    if normalize == "none":
        return alpha * cosine + (1 - alpha) * quantum_score(log_f, n_qubits)
    raise ValueError(f"unknown normalize {normalize!r}; choose 'minmax' or 'none'")


def reciprocal_rank_fusion(*scores: torch.Tensor, k: int = RRF_K) -> torch.Tensor:
    """RRF(d) = sum_s 1 / (k + rank_s(d)) over ``[c]`` score vectors of the same candidates.

    rank_s is the 1-based position of d when signal s is sorted descending; ties keep input
    order (stable sort), so equal scores get distinct, deterministic ranks. Returns ``[c]``
    float64 (so the sum of reciprocals does not round ties together). Each term is in
    (0, 1 / (k + 1)], the sum at most len(scores) / (k + 1).
    """
    if not scores:
        raise ValueError("reciprocal_rank_fusion needs at least one score vector")
    if any(s.shape != scores[0].shape or s.dim() != 1 for s in scores):
        raise ValueError(f"expected score vectors of one shape [c], got {[tuple(s.shape) for s in scores]}")
    if k < 0:
        raise ValueError(f"RRF k must be >= 0, got {k}")
    fused = torch.zeros_like(scores[0], dtype=torch.float64)
    positions = torch.arange(1, scores[0].shape[0] + 1, dtype=torch.float64, device=scores[0].device)
    for s in scores:
        ranks = torch.empty_like(positions)
        ranks[torch.sort(s, descending=True, stable=True).indices] = positions
        fused += 1.0 / (k + ranks)
    return fused


def convex_fusion(lexical: torch.Tensor, dense: torch.Tensor, weight: float) -> torch.Tensor:
    """w * minmax(lexical) + (1 - w) * minmax(dense) for ``[..., c]`` scores of one candidate list.

    Min-max runs over the last dim (a constant signal maps to zeros, see :func:`minmax`), so
    ``weight`` is the share of each signal whatever their scales: w = 1 ranks by ``lexical``,
    w = 0 by ``dense``. The result is in [0, 1] and relative to the candidates.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"lexical weight must be in [0, 1], got {weight}")
    if lexical.shape != dense.shape:
        raise ValueError(f"shape mismatch: {tuple(lexical.shape)} vs {tuple(dense.shape)}")
    return weight * minmax(lexical.double()) + (1 - weight) * minmax(dense.double())
