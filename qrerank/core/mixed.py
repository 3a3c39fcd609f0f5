"""Mixed-state queries for pseudo-relevance feedback (PRF), scored against product states.

The query's qubit i becomes a density matrix that mixes its own pure state with those of its
top-m feedback documents (label-free, from any first stage)::

    rho_i = (1 - beta) |q_i><q_i| + (beta / m) sum_j |f_ji><f_ji|

and a document scores ``sum_i log <d_i| rho_i |d_i>`` (a fidelity with a mixed state, in log
space like ``qrerank.core.fidelity``). For real Bloch states (phi = pi) every qubit lives on
one great circle, so ``rho_i = (1 + r_i . sigma) / 2`` with a Bloch vector in the plane,
``r_i = (1 - beta) n(theta_q) + (beta / m) sum_j n(theta_f)``, ``n(t) = (sin t, cos t)`` up to
the sign convention, and the overlap is ``(1 + r_i . n(theta_d)) / 2`` (|r_i| <= 1: mixing
shrinks the vector). So the mixed query costs what a pure one costs: two numbers per qubit.
beta = 0 gives the pure-state log-fidelity exactly. The classical analogue is Rocchio on the
unit vectors, ``q' = (1 - beta) q + beta mean_j f_j``.
"""

from __future__ import annotations

import torch

__all__ = ["log_fidelity_mixed_matrix", "mixed_bloch_vectors"]

_CHUNK_ELEMENTS = 1 << 21


def mixed_bloch_vectors(
    theta_q: torch.Tensor, theta_fb: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """In-plane Bloch vectors ``(r_cos, r_sin)``, each ``[Q, n]``, of the mixed query states.

    ``theta_q`` is ``[Q, n]``, ``theta_fb`` ``[Q, m, n]`` (the angles of each query's m feedback
    documents), ``beta`` in [0, 1] the weight of the feedback.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if theta_fb.dim() != 3 or theta_fb.shape[0] != theta_q.shape[0] or theta_fb.shape[2] != theta_q.shape[1]:
        raise ValueError(
            f"feedback angles must be [Q, m, n]: got {tuple(theta_fb.shape)} for {tuple(theta_q.shape)}"
        )
    r_cos = (1 - beta) * torch.cos(theta_q) + beta * torch.cos(theta_fb).mean(1)
    r_sin = (1 - beta) * torch.sin(theta_q) + beta * torch.sin(theta_fb).mean(1)
    return r_cos, r_sin


def log_fidelity_mixed_matrix(
    r_cos: torch.Tensor, r_sin: torch.Tensor, theta_d: torch.Tensor, *, chunk: int | None = None
) -> torch.Tensor:
    """``[Q, N]`` scores ``sum_i log <d_i|rho_i|d_i>`` of ``[N, n]`` document angles.

    ``<d_i|rho_i|d_i> = (1 + r_cos cos(theta_d) + r_sin sin(theta_d)) / 2``, floored at the
    dtype's machine epsilon like the pure-state functions (a pure query orthogonal to a qubit).
    ``chunk`` (documents per step) bounds the ``[Q, chunk, n]`` intermediates; by default they
    stay near 2^21 elements, since larger temporaries spend their time in page faults.
    """
    if (
        r_cos.shape != r_sin.shape
        or r_cos.dim() != 2
        or theta_d.dim() != 2
        or theta_d.shape[1] != r_cos.shape[1]
    ):
        raise ValueError(f"shapes do not match: r {tuple(r_cos.shape)}, documents {tuple(theta_d.shape)}")
    c, s = torch.cos(theta_d), torch.sin(theta_d)
    floor = torch.finfo(theta_d.dtype).eps
    if chunk is None:
        chunk = max(1, _CHUNK_ELEMENTS // max(1, r_cos.numel()))
    out = torch.empty(r_cos.shape[0], theta_d.shape[0], dtype=theta_d.dtype, device=theta_d.device)
    for i in range(0, theta_d.shape[0], chunk):
        block = slice(i, i + chunk)
        overlap = (1 + r_cos[:, None, :] * c[None, block] + r_sin[:, None, :] * s[None, block]) / 2
        out[:, block] = torch.log(overlap.clamp_min(floor)).sum(-1)
    return out
