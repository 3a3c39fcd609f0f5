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

All-pairs matrices (``[Q, n] x [D, n] -> [Q, D]``) of real states run on a kernel that costs
about a dot product per pair (see :func:`log_fidelity_planes_matrix`): the states are kept as
two planes of amplitudes, so each qubit's overlap is ``a0 b0 + a1 b1`` (no sine or cosine per
pair), and one log serves a block of 8 qubits.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from qrerank.core.compiled import LazyCompiled

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
    """All-pairs log-fidelity of Bloch states: ``[Q, d] x [D, d] -> [Q, D]``, chunked over D.

    Large matrices without gradients (``Q * D * d >= 2^24``) run the compiled kernel of
    :func:`log_fidelity_planes_matrix` on the states' amplitude planes (sines and cosines once per
    state, not per pair); smaller ones, and any with gradients, the pairwise formula.
    """
    _check_matrix(theta_q, theta_d, 2)
    if not _takes_kernel(theta_q, theta_d):
        return _chunked(
            lambda a, b: log_fidelity_angles(a, b, eps), theta_q, theta_d, theta_q.shape[-1], chunk
        )
    return log_fidelity_planes_matrix(bloch_planes(theta_q), bloch_planes(theta_d), eps=eps, chunk=chunk)


def log_fidelity_matrix(
    a: torch.Tensor, b: torch.Tensor, chunk: int | None = None, eps: float | None = None
) -> torch.Tensor:
    """All-pairs log-fidelity of product states: ``[Q, n, 2] x [D, n, 2] -> [Q, D]``.

    Large real matrices without gradients run the compiled kernel of
    :func:`log_fidelity_planes_matrix`; the rest the pairwise formula.
    """
    _check_matrix(a, b, 3)
    if a.is_complex() or b.is_complex() or a.shape[-1] != 2 or not _takes_kernel(a, b):
        return _chunked(lambda x, y: log_fidelity(x, y, eps), a, b, 2 * a.shape[-2], chunk)

    def planes(s: torch.Tensor) -> Planes:
        return s[..., 0].contiguous(), s[..., 1].contiguous()

    return log_fidelity_planes_matrix(planes(a), planes(b), eps=eps, chunk=chunk)


Planes = tuple[torch.Tensor, torch.Tensor]

# A block of this many qubits shares one log. Each factor |<a_i|b_i>| is floored at sqrt(eps),
# so a block's product is >= eps^(B/2): 1.4e-28 in float32 (eps 1.2e-7; smallest normal 1.2e-38,
# so B <= 10 is safe) and 2.6e-63 in float64. Every partial product is >= the full one (all
# factors <= 1), so no order of multiplication underflows.
BLOCK = 8
# Q * D * n at or above which the compiled kernel is worth its one-off compile (seconds).
_COMPILE_MIN = 1 << 24
# Error bound of the blocked kernel. Each overlap a0 b0 + a1 b1 carries <= ~4 ulp of relative
# error (from the planes and two roundings), a block's product of 8 <= 40 ulp, so each block's
# log is off by <= 40 u absolute and log F by <= (n / 8) 40 u = 5 n u (u = eps / 2): 1.1e-4 at
# n = 384 in float32. That is within 1e-4 relative wherever |log F| >= 5e4 n u; pairs above
# -_REFINE n eps (4.6 at n = 384, a 4x margin) are nearly identical states, rare in retrieval,
# and are recomputed with the per-qubit formula, which is precise at both ends.
_REFINE = 1e5


def refine_threshold(dtype: torch.dtype, n: int) -> float:
    """The log F above which a blocked result of ``n`` qubits is refined (see ``_REFINE``)."""
    return -_REFINE * n * torch.finfo(dtype).eps


def refine_mask(log_f: torch.Tensor, n: int) -> torch.Tensor:
    """Pairs whose blocked log F is too close to 0 for its rounding bound (see ``_REFINE``)."""
    return log_f > refine_threshold(log_f.dtype, n)


def bloch_planes(theta: torch.Tensor) -> Planes:
    """The two amplitude planes of Bloch states (phi = pi): ``cos(theta/2)``, ``-sin(theta/2)``.

    Each is ``[..., d]`` and contiguous (:func:`qrerank.core.encoding.bloch_states` stacked).
    """
    half = theta / 2
    return torch.cos(half), -torch.sin(half)


def _per_qubit(
    a0: torch.Tensor, a1: torch.Tensor, b0: torch.Tensor, b1: torch.Tensor, floor: float
) -> torch.Tensor:
    """``[..., n]`` log |<a_i|b_i>|^2 of real unit qubits, precise at both ends.

    overlap o = a0 b0 + a1 b1 and x = a0 b1 - a1 b0 satisfy o^2 + x^2 = 1 (Lagrange's identity):
    log1p(-x^2) near identical qubits, log(o^2) elsewhere, as in :func:`log_fidelity_angles`.
    """
    o = a0 * b0 + a1 * b1
    x2 = (a0 * b1 - a1 * b0).square()
    near = torch.log1p(-x2.clamp(max=1.0 - floor))
    far = torch.log(o.square().clamp(min=floor))
    return torch.where(x2 < 0.5, near, far)


def _blocked_log_fidelity(
    a0: torch.Tensor, a1: torch.Tensor, b0: torch.Tensor, b1: torch.Tensor, floor: float
) -> torch.Tensor:
    """log F of ``[1, Q, 1, n]`` x ``[T, 1, S, n]`` planes -> ``[T, Q, S]``, one log per block.

    Qubit i belongs to block ``i % (n / 8)``: a block's 8 qubits lie n/8 apart, so its product
    runs over an outer axis and the inner one stays contiguous for SIMD. The documents come in
    T groups of S rows so that each group (S x n x 8 bytes, ~200 KB) stays in cache while every
    query of the tile passes over it. Near-identical pairs lose relative precision here; the
    caller refines them (see ``_REFINE``).
    """
    o = (a0 * b0 + a1 * b1).abs().clamp(min=floor)
    m = o.shape[-1] // BLOCK
    # An explicit product of 8 slices fuses into the log-sum loop; .prod over a view of the
    # blocks made the compiler write the [T, Q, S, m] products out and read them back.
    blocks = o[..., :m]
    for k in range(1, BLOCK):
        blocks = blocks * o[..., k * m : (k + 1) * m]
    return 2.0 * torch.log(blocks).sum(dim=-1)


# Static shapes: symbolic sizes (dynamic=True) measured ~10x slower on this kernel, so callers
# pad to the fixed tiles below and each (n, tile) compiles once.
_KERNEL = LazyCompiled(_blocked_log_fidelity, dynamic=False)


def _takes_kernel(q: torch.Tensor, d: torch.Tensor) -> bool:
    """Whether a matrix form runs the compiled planes kernel.

    It does with no gradients and when large enough to be worth it; below that the pairwise
    formula is faster eager than the planes (measured: 0.34 vs 0.53 ms for 1 x 100 x 384).
    """
    if torch.is_grad_enabled() and (q.requires_grad or d.requires_grad):
        return False
    return _compiled_kernel(q.shape[0] * d.shape[0] * q.shape[1], None) is not None


def _compiled_kernel(size: int, compile: bool | None) -> Any:
    """The compiled blocked kernel when asked (``None``: when ``size`` is large), else None."""
    want = compile if compile is not None else size >= _COMPILE_MIN
    return _KERNEL.get() if want else None


# Tiles of the compiled kernel: (queries, document groups T, rows per group S). One query
# streams long document tiles (memory-bound); many queries share each cached group of rows
# (compute-bound). Measured on 2 cores, d = 384: 1 x 100k in 3.1x a cosine mat-vec, 32 x 100k
# in 5.7x a cosine matmul (benchmarks/perf.py).
_TILE_ONE = (1, 64, 256)
_TILE_MANY = (32, 64, 64)
_MAX_GRAPHS = 64


def _tiled(
    kernel: Any, q0: torch.Tensor, q1: torch.Tensor, d0: torch.Tensor, d1: torch.Tensor, floor: float
) -> torch.Tensor:
    """``kernel`` over fixed tiles: [Q, D].

    A short last tile is shifted back to overlap the one before it (padding it would copy the
    whole tile); only an input smaller than one tile is padded, with |0> qubits whose results
    are dropped.
    """
    n_q, n_d, n = q0.shape[0], d0.shape[0], q0.shape[1]
    tq, groups, rows = _TILE_ONE if n_q == 1 else _TILE_MANY
    td = groups * rows
    out = q0.new_empty((n_q, n_d))
    # Each (n, tile, dtype) is its own static-shape graph; dynamo's default of 8 per function
    # would silently drop a process using several qubit counts back to eager (~40x slower).
    with torch._dynamo.config.patch(recompile_limit=_MAX_GRAPHS):
        for i in _starts(n_q, tq):
            a = [_pad(x[i : i + tq], tq, f).reshape(1, tq, 1, n) for x, f in ((q0, 1.0), (q1, 0.0))]
            for j in _starts(n_d, td):
                b = [
                    _pad(x[j : j + td], td, f).reshape(groups, 1, rows, n) for x, f in ((d0, 1.0), (d1, 0.0))
                ]
                tile = kernel(a[0], a[1], b[0], b[1], floor).transpose(0, 1).reshape(tq, td)
                out[i : i + tq, j : j + td] = tile[: n_q - i, : n_d - j]
    return out


def _starts(total: int, size: int) -> list[int]:
    """Tile starts covering ``range(total)``, the last one moved back to end at ``total``."""
    return [min(i, max(0, total - size)) for i in range(0, total, size)]


def _pad(x: torch.Tensor, size: int, fill: float) -> torch.Tensor:
    """``x`` grown to ``size`` rows with ``fill`` (|0> qubits: 1, 0) when it has fewer."""
    return x if x.shape[0] == size else torch.cat([x, x.new_full((size - x.shape[0], x.shape[1]), fill)])


def _refine(out: torch.Tensor, q: Planes, d: Planes, floor: float) -> None:
    """Recompute in place, by the per-qubit formula, the pairs the blocked kernel is too coarse for."""
    n = q[0].shape[1]
    rows, cols = torch.nonzero(refine_mask(out, n), as_tuple=True)
    for k in range(0, rows.numel(), 4096):
        r, c = rows[k : k + 4096], cols[k : k + 4096]
        out[r, c] = _per_qubit(q[0][r], q[1][r], d[0][c], d[1][c], floor).sum(-1)


def log_fidelity_planes_matrix(
    q: Planes,
    d: Planes,
    *,
    eps: float | None = None,
    chunk: int | None = None,
    compile: bool | None = None,
) -> torch.Tensor:
    """All-pairs log-fidelity of real product states given as amplitude planes.

        log F(a, b) = sum_i log (a0_i b0_i + a1_i b1_i)^2

    Args:
        q, d: ``(amp0, amp1)`` planes, ``[Q, n]`` and ``[D, n]`` each, every qubit unit-norm
            (:func:`bloch_planes` of the angles, or ``states[..., 0]``, ``states[..., 1]``).
        eps: per-qubit fidelity floor (default: the dtype's machine epsilon).
        chunk: documents per block of work (default: bounded intermediates, ~64 MiB).
        compile: run the ``torch.compile``'d kernel (True), the eager one (False) or decide by
            size (None: compiled from ``Q * D * n >= 2^24``; compiling costs seconds once per
            process, qubit count and dtype).

    Returns:
        ``[Q, D]`` log F, equal to :func:`log_fidelity_angles` on every pair: to 1e-4 relative
        in float32, to ~1e-12 in float64; tested at identical, nearly identical and orthogonal
        qubits.

    Cost: one multiply-add per qubit pair for the overlap and one log per block of 8 qubits
    (see ``BLOCK`` for the no-underflow bound); the rare nearly identical pairs, whose
    log F is too small for the blocked products' rounding, are recomputed per qubit
    (``_REFINE``).
    """
    (q0, q1), (d0, d1) = q, d
    if q0.dim() != 2 or d0.dim() != 2 or q0.shape[1] != d0.shape[1]:
        raise ValueError(f"expected planes [Q, n] and [D, n], got {tuple(q0.shape)}, {tuple(d0.shape)}")
    n_q, n = q0.shape
    n_d = d0.shape[0]
    floor = _floor(q0.dtype, eps)
    if n_q == 0 or n_d == 0 or n == 0:
        return q0.new_zeros((n_q, n_d))
    kernel = _compiled_kernel(n_q * n_d * n, compile)
    # Compiled (tiles): blocks of 8 qubits, the last n % 8 one log each. Eager: one log
    # per qubit (a product over a strided axis is slow in eager torch, the log is not).
    main = n - n % BLOCK if kernel is not None else 0
    if main:
        a0, a1, b0, b1 = (x[:, :main] for x in (q0, q1, d0, d1))
        out = _tiled(kernel, a0, a1, b0, b1, math.sqrt(floor))
    else:
        out = q0.new_zeros((n_q, n_d))
    if main < n:
        if chunk is None:
            chunk = max(1, _CHUNK_ELEMENTS // max(1, n_q * (n - main)))
        rest_q0, rest_q1 = (x[:, None, main:] for x in (q0, q1))
        for i in range(0, n_d, chunk):
            block = slice(i, i + chunk)
            rest_d0, rest_d1 = (x[None, block, main:] for x in (d0, d1))
            out[:, block] += _per_qubit(rest_q0, rest_q1, rest_d0, rest_d1, floor).sum(-1)
    if main:
        _refine(out, q, d, floor)
    return out


def log_fidelity_candidates(
    theta_q: torch.Tensor, theta_d: torch.Tensor, eps: float | None = None
) -> torch.Tensor:
    """Log-fidelity of one query against its candidates: ``[n] x [D, n] -> [D]``, eager.

    The reranking stage's form (10^2..10^3 candidates, too few for the compiled kernel's
    tiles): one cosine per qubit pair, ``cos((theta_q - theta_d) / 2)`` (>= 0 on Bloch angles),
    floored at sqrt(eps), multiplied in blocks of 8 with one log per block, as in
    :func:`log_fidelity_planes_matrix`, and nearly identical pairs recomputed by
    :func:`log_fidelity_angles` (``_REFINE``). With gradients, :func:`log_fidelity_angles`.
    """
    if theta_q.dim() != 1 or theta_d.dim() != 2 or theta_d.shape[1] != theta_q.shape[0]:
        raise ValueError(
            f"expected [n] and [D, n] angles, got {tuple(theta_q.shape)}, {tuple(theta_d.shape)}"
        )
    if torch.is_grad_enabled() and (theta_q.requires_grad or theta_d.requires_grad):
        return log_fidelity_angles(theta_q, theta_d, eps)
    n_d, n = theta_d.shape
    floor = _floor(theta_d.dtype, eps)
    main = n - n % BLOCK
    o = torch.sub(theta_q, theta_d).mul_(0.5).cos_().abs_().clamp_(min=math.sqrt(floor))
    blocks = o[:, :main].reshape(n_d, BLOCK, main // BLOCK).prod(dim=1)
    out = blocks.log_().sum(-1).add_(o[:, main:].log().sum(-1)).mul_(2.0)
    near = refine_mask(out, n)
    if bool(near.any()):
        out[near] = log_fidelity_angles(theta_q, theta_d[near], eps)
    return out


def _check_matrix(a: torch.Tensor, b: torch.Tensor, ndim: int) -> None:
    if a.dim() != ndim or b.dim() != ndim:
        raise ValueError(f"expected {ndim}-d inputs, got shapes {tuple(a.shape)}, {tuple(b.shape)}")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"qubit dimensions differ: {tuple(a.shape)} vs {tuple(b.shape)}")
