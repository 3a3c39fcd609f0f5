"""Fidelity of separable (product) states, in log space.

    F(a, b) = |<a|b>|^2 = prod_i |<a_i|b_i>|^2,   log F = sum_i log |<a_i|b_i>|^2

At d = 384..768 qubits F underflows float32 (a typical per-qubit overlap of 0.9 gives 0.9^768
~ 1e-35), so every function returns log F, in (-inf, 0].

For Bloch states with phi = pi the per-qubit overlap is cos((theta_a - theta_b)/2); log cos^2(x)
is computed as log1p(-sin^2 x) for nearly identical qubits (where cos^2 rounds to 1) and as
log(cos^2 x) for nearly orthogonal ones (where 1 - sin^2 cancels), so it keeps full relative
precision at both ends. Per-qubit fidelities are floored at ``eps`` (default: the dtype's machine
epsilon, ~1.2e-7 in float32, ~2.2e-16 in float64; the largest floor 1 - sin^2 can represent) so
orthogonal qubits give a finite log and a finite (zero) gradient instead of -inf and NaN.
"""

from __future__ import annotations

import torch

# Elements per chunk of a [Q, chunk, d] intermediate: 2^24 floats = 64 MiB in float32.
_CHUNK_ELEMENTS = 1 << 24


def log_fidelity_angles(
    theta_a: torch.Tensor, theta_b: torch.Tensor, eps: float | None = None
) -> torch.Tensor:
    """Log-fidelity of Bloch states given by polar angles (phi = pi), pairwise.

    Args:
        theta_a, theta_b: ``[..., d]`` angles, broadcastable against each other.
    Returns:
        ``[...]``: sum_i log cos^2((theta_a_i - theta_b_i) / 2).
    """
    half = (theta_a - theta_b) / 2
    s2, c2 = torch.sin(half).square(), torch.cos(half).square()
    floor = _floor(s2.dtype, eps)
    # log1p(-sin^2) is exact near identical qubits, log(cos^2) near orthogonal ones (where
    # 1 - sin^2 cancels); both branches are clamped so neither leaks an inf/NaN gradient.
    near = torch.log1p(-s2.clamp(max=1.0 - floor))
    far = torch.log(c2.clamp(min=floor))
    return torch.where(s2 < 0.5, near, far).sum(dim=-1)


def log_fidelity(a: torch.Tensor, b: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Log-fidelity of product states given by amplitudes, pairwise.

    Args:
        a, b: ``[..., n, 2]`` real or complex amplitudes (each qubit normalised), broadcastable.
    Returns:
        ``[...]``: sum_i log |<a_i|b_i>|^2.
    """
    overlap = (a.conj() * b).sum(dim=-1) if a.is_complex() or b.is_complex() else (a * b).sum(-1)
    per_qubit = overlap.abs().square() if overlap.is_complex() else overlap.square()
    return torch.log(per_qubit.clamp(min=_floor(per_qubit.dtype, eps), max=1.0)).sum(dim=-1)


def _floor(dtype: torch.dtype, eps: float | None) -> float:
    return torch.finfo(dtype).eps if eps is None else eps


def _chunked(fn: object, q: torch.Tensor, d: torch.Tensor, per_row: int, chunk: int | None) -> torch.Tensor:
    """Evaluate ``fn(q[:, None], d[None, chunk])`` over doc chunks and concatenate: [Q, D]."""
    n_q, n_d = q.shape[0], d.shape[0]
    if chunk is None:
        chunk = max(1, _CHUNK_ELEMENTS // max(1, n_q * per_row))
    parts = [fn(q.unsqueeze(1), d[i : i + chunk].unsqueeze(0)) for i in range(0, n_d, chunk)]  # type: ignore[operator]
    if not parts:
        return q.new_zeros((n_q, 0), dtype=q.real.dtype if q.is_complex() else q.dtype)
    return torch.cat(parts, dim=1)


def log_fidelity_angles_matrix(
    theta_q: torch.Tensor, theta_d: torch.Tensor, chunk: int | None = None, eps: float | None = None
) -> torch.Tensor:
    """All-pairs log-fidelity of Bloch states: ``[Q, d] x [D, d] -> [Q, D]``, chunked over D."""
    _check_matrix(theta_q, theta_d, 2)
    return _chunked(lambda a, b: log_fidelity_angles(a, b, eps), theta_q, theta_d, theta_q.shape[-1], chunk)


def log_fidelity_matrix(
    a: torch.Tensor, b: torch.Tensor, chunk: int | None = None, eps: float | None = None
) -> torch.Tensor:
    """All-pairs log-fidelity of product states: ``[Q, n, 2] x [D, n, 2] -> [Q, D]``."""
    _check_matrix(a, b, 3)
    return _chunked(lambda x, y: log_fidelity(x, y, eps), a, b, 2 * a.shape[-2], chunk)


def _check_matrix(a: torch.Tensor, b: torch.Tensor, ndim: int) -> None:
    if a.dim() != ndim or b.dim() != ndim:
        raise ValueError(f"expected {ndim}-d inputs, got shapes {tuple(a.shape)}, {tuple(b.shape)}")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"qubit dimensions differ: {tuple(a.shape)} vs {tuple(b.shape)}")
