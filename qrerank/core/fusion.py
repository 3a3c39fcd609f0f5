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
"""

from __future__ import annotations

from typing import Literal

import torch

Normalize = Literal["minmax", "none"]


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
