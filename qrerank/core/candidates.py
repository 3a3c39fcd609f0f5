"""One query against its reranking candidates, every dense signal in one pass.

For a query embedding q ``[d]`` and candidate embeddings D ``[D, d]``:

    cos(q, d)    = <q, d> / (|q| |d|)
    log F(q, d)  = sum_i log cos^2((theta_q,i - theta_d,i) / 2),   theta = tanh(u / tau) pi/2 + pi/2
    hybrid(q, d) = alpha minmax(cos) + (1 - alpha) minmax(log F)     (min-max over the D candidates)

This is the reranking stage's shape: 10^2..10^3 candidates, too few for the tiled matrix kernel
of :mod:`qrerank.core.fidelity` to pay for its tiles. Eagerly each signal is a chain of small
torch ops whose fixed costs (a few microseconds each) dominate at 100 candidates; compiled,
the whole chain is one loop over the candidates (``compile=True``, a one-off compile of seconds
per process, qubit count and dtype; the number of candidates is a symbolic size, so lists of any
length share the graph). Both paths compute the same formulas and refine nearly identical pairs
the same way (:func:`qrerank.core.fidelity.log_fidelity_candidates`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from qrerank.core.compiled import LazyCompiled
from qrerank.core.encoding import bloch_angles, default_tau
from qrerank.core.fidelity import (
    BLOCK,
    log_fidelity_angles,
    log_fidelity_candidates,
    refine_mask,
    refine_threshold,
)
from qrerank.core.fusion import hybrid_scores, minmax
from qrerank.core.similarity import cosine_matrix


@dataclass(frozen=True)
class CandidateSignals:
    """``[D]`` cosine, log-fidelity at one tau, and their min-max hybrid at one alpha."""

    cosine: torch.Tensor
    log_fidelity: torch.Tensor
    hybrid: torch.Tensor


def candidate_signals(
    query: torch.Tensor,
    docs: torch.Tensor,
    *,
    tau: float | None = None,
    alpha: float = 0.5,
    doc_angles: torch.Tensor | None = None,
    compile: bool = False,
) -> CandidateSignals:
    """Cosine, log F and hybrid of ``[D, d]`` candidates for a ``[d]`` query, in one pass.

    ``doc_angles`` (``[D, d]``, the candidates' Bloch angles at ``tau``) skips re-encoding them;
    ``tau`` None is 1/sqrt(d). ``compile`` runs the fused ``torch.compile``'d loop (no gradients,
    at least 2 candidates, a compiler present); otherwise, or when not possible, the eager ops.
    """
    if query.dim() != 1 or docs.dim() != 2 or docs.shape[1] != query.shape[0]:
        raise ValueError(f"expected query [d] and docs [D, d], got {tuple(query.shape)}, {tuple(docs.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    n = query.shape[0]
    tau = default_tau(n) if tau is None else tau
    theta_d = doc_angles if doc_angles is not None else bloch_angles(docs, tau)
    kernel = _kernel(query, docs, theta_d) if compile else None
    if kernel is None:
        cos = cosine_matrix(query[None], docs)[0]
        log_f = log_fidelity_candidates(bloch_angles(query, tau), theta_d)
        return CandidateSignals(cos, log_f, hybrid_scores(cos, log_f, alpha, n))
    floor = math.sqrt(torch.finfo(docs.dtype).eps)
    for x in (docs, theta_d):
        torch._dynamo.mark_dynamic(x, 0)
    threshold = refine_threshold(docs.dtype, n)
    cos, log_f, hybrid, near_any = kernel(query, docs, theta_d, 1.0 / tau, alpha, floor, threshold)
    if bool(near_any):
        near = refine_mask(log_f, n)
        log_f = log_f.clone()
        log_f[near] = log_fidelity_angles(bloch_angles(query, tau), theta_d[near])
        hybrid = hybrid_scores(cos, log_f, alpha, n)
    return CandidateSignals(cos, log_f, hybrid)


def _fused(
    q: torch.Tensor,
    docs: torch.Tensor,
    theta_d: torch.Tensor,
    inv_tau: float,
    alpha: float,
    floor: float,
    threshold: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The eager chain of :func:`candidate_signals` written as one graph for the compiler."""
    cos = (docs @ q) / (torch.linalg.vector_norm(docs, dim=1) * torch.linalg.vector_norm(q)).clamp(min=1e-8)
    theta_q = torch.tanh(q * inv_tau) * (math.pi / 2) + (math.pi / 2)
    o = torch.cos((theta_q - theta_d) * 0.5).abs().clamp(min=floor)
    n = o.shape[-1]
    m = n // BLOCK
    blocks = o[:, :m]
    for k in range(1, BLOCK):  # an explicit product fuses into the log-sum loop (see core.fidelity)
        blocks = blocks * o[:, k * m : (k + 1) * m]
    log_f = 2.0 * (torch.log(blocks).sum(-1) + torch.log(o[:, BLOCK * m :]).sum(-1))
    hybrid = alpha * minmax(cos) + (1.0 - alpha) * minmax(log_f)
    return cos, log_f, hybrid, (log_f > threshold).any()


def _kernel(query: torch.Tensor, docs: torch.Tensor, theta_d: torch.Tensor) -> Any:
    """The compiled fused loop when it applies to these inputs, else None."""
    grad = torch.is_grad_enabled() and any(x.requires_grad for x in (query, docs, theta_d))
    if grad or docs.shape[0] < 2:  # size 1 cannot be a symbolic size
        return None
    return _FUSED.get()


_FUSED = LazyCompiled(_fused, dynamic=False)
