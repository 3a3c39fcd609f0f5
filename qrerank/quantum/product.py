"""Product states on simulators: qubit blocks, full statevectors and shot statistics (torch only).

A separable n-qubit state |a> = |a_1> (x) ... (x) |a_n> has

    <a|b> = prod_i <a_i|b_i>,   F(a, b) = |<a|b>|^2 = prod_k F_k(a, b)

for any partition of the qubits into blocks k. Simulators therefore never need the 2^n-amplitude
state: each block of at most ``block_size`` qubits is simulated on its own and log F is the sum
of the blocks' log-fidelities. With shots, each block is an independent experiment and the
product of the block estimates is an unbiased estimate of F (independent factors).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Qubits per simulated block. A statevector of b qubits holds 2^b complex128 amplitudes
# (16 * 2^b bytes); 8 keeps every circuit tiny and the shot variance low (see ShotEstimate).
DEFAULT_BLOCK = 8
# Largest block the adapters accept: 2^20 amplitudes = 16 MiB, a fraction of a second per state.
MAX_BLOCK = 20
# Floor of a fidelity estimate before its log: a block with zero "all zeros" counts would give
# log 0 = -inf. The backends work in float64, so this is the closed form's float64 per-qubit
# floor (machine epsilon, ~2.2e-16) and exact backends agree with it.
FLOOR = torch.finfo(torch.float64).eps


def blocks(n: int, block_size: int = DEFAULT_BLOCK) -> list[slice]:
    """Consecutive qubit ranges ``[0, b), [b, 2b), ...`` covering ``n`` qubits."""
    if n <= 0:
        raise ValueError(f"need at least one qubit, got {n}")
    if not 1 <= block_size <= MAX_BLOCK:
        raise ValueError(f"block_size must be in [1, {MAX_BLOCK}], got {block_size}")
    return [slice(i, min(i + block_size, n)) for i in range(0, n, block_size)]


def product_statevector(states: torch.Tensor, little_endian: bool) -> torch.Tensor:
    """``[n, 2]`` per-qubit amplitudes -> ``[2^n]`` amplitudes of their tensor product.

    Qiskit indexes basis states little-endian (qubit 0 is the least significant bit), so its
    vector is kron(s_{n-1}, ..., s_0); PennyLane is big-endian: kron(s_0, ..., s_{n-1}).
    """
    order = reversed(states.unbind(0)) if little_endian else states.unbind(0)
    out = torch.ones(1, dtype=states.dtype)
    for s in order:
        out = torch.kron(out, s)
    return out


@dataclass(frozen=True)
class ShotEstimate:
    """Shot-based fidelity estimates with plug-in standard errors, each ``[D]``.

    ``fidelity`` = prod_k f_k over blocks, ``stderr`` = sqrt(prod_k (f_k^2 + v_k) - prod_k f_k^2),
    the exact standard deviation of a product of independent estimators with variances v_k,
    evaluated at the estimates (0 where every block saw only "all zeros" or none).
    """

    fidelity: torch.Tensor
    stderr: torch.Tensor
    shots: int
    n_blocks: int

    def log_fidelity(self, floor: float = FLOOR) -> torch.Tensor:
        """log max(F_hat, floor): a zero estimate maps to log(floor) (about -36.0), not -inf."""
        return self.fidelity.clamp(min=floor).log()


def combine_blocks(f_hat: torch.Tensor, var: torch.Tensor, shots: int) -> ShotEstimate:
    """Per-block estimates ``[D, K]`` and their variances ``[D, K]`` -> :class:`ShotEstimate`."""
    f_hat = f_hat.clamp(0.0, 1.0)
    mean = f_hat.prod(dim=-1)
    second = (f_hat.square() + var).prod(dim=-1)
    stderr = (second - mean.square()).clamp(min=0.0).sqrt()
    return ShotEstimate(mean, stderr, shots, f_hat.shape[-1])


def bernoulli_variance(p_hat: torch.Tensor, shots: int) -> torch.Tensor:
    """Variance p(1 - p) / S of the frequency of an outcome with probability p in S shots."""
    check_shots(shots)
    return p_hat * (1 - p_hat) / shots


def check_shots(shots: int) -> None:
    """Raise ValueError unless ``shots`` is a positive int (bool is not)."""
    if isinstance(shots, bool) or not isinstance(shots, int) or shots <= 0:
        raise ValueError(f"shots must be a positive int, got {shots!r}")


def check_pair(theta_q: torch.Tensor, theta_d: torch.Tensor) -> None:
    """A query ``[n]`` against documents ``[D, n]``."""
    if theta_q.dim() != 1 or theta_d.dim() != 2 or theta_d.shape[1] != theta_q.shape[0]:
        raise ValueError(
            f"expected query [n] and documents [D, n], got {tuple(theta_q.shape)} and {tuple(theta_d.shape)}"
        )


def statevector_bytes(n_qubits: int) -> int:
    """Memory of one complex128 statevector: 16 * 2^n bytes (n = 30 -> 16 GiB)."""
    return 16 * (1 << n_qubits)
