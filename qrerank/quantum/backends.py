"""Backend registry: score documents by Bloch-state log-fidelity, closed form or simulated.

    score_log_fidelity(query [d], docs [D, d], tau, backend, shots) -> [D] log F

``"closed-form"`` is the core's sum_i log cos^2((theta_q_i - theta_d_i)/2) and needs no extras;
``"qiskit"`` and ``"pennylane"`` simulate the same circuits blockwise (``product.blocks``):
exact from statevectors when ``shots`` is None (equal to the closed form to ~1e-12 in float64),
otherwise the log of a shot estimate, with each block's estimate floored at ``product.FLOOR``
(float64 machine epsilon) so a block that never measured 0...0 gives about -36.0 instead of -inf.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from enum import StrEnum

import torch

from qrerank.core.encoding import bloch_angles
from qrerank.core.fidelity import log_fidelity_angles
from qrerank.quantum.product import DEFAULT_BLOCK, FLOOR, check_pair

# (theta_q [n], theta_d [D, n], shots, seed, block_size) -> log F [D]
ScoreFn = Callable[[torch.Tensor, torch.Tensor, int | None, int | None, int], torch.Tensor]


class Backend(StrEnum):
    """Fidelity backends: the closed form, or a circuit simulated by Qiskit or PennyLane."""

    CLOSED_FORM = "closed-form"
    QISKIT = "qiskit"
    PENNYLANE = "pennylane"


def _closed_form(
    theta_q: torch.Tensor,
    theta_d: torch.Tensor,
    shots: int | None,
    seed: int | None,
    block_size: int,
) -> torch.Tensor:
    if shots is not None:
        raise ValueError("the closed-form backend is exact; shots apply to 'qiskit'/'pennylane'")
    return log_fidelity_angles(theta_q.unsqueeze(0), theta_d)


def _simulator(module: str) -> ScoreFn:
    """Scorer backed by the adapter ``qrerank.quantum.<module>`` (imported on first use)."""

    def score(
        theta_q: torch.Tensor, theta_d: torch.Tensor, shots: int | None, seed: int | None, block_size: int
    ) -> torch.Tensor:
        adapter = importlib.import_module(f"qrerank.quantum.{module}")
        if shots is None:
            return adapter.log_fidelity(theta_q, theta_d, block_size=block_size)
        estimate = adapter.estimate_fidelity(theta_q, theta_d, shots, seed=seed, block_size=block_size)
        return estimate.log_fidelity(FLOOR)

    return score


BACKENDS: dict[str, ScoreFn] = {
    Backend.CLOSED_FORM.value: _closed_form,
    Backend.QISKIT.value: _simulator("qiskit"),
    Backend.PENNYLANE.value: _simulator("pennylane"),
}


def score_log_fidelity(
    query_vec: torch.Tensor,
    doc_vecs: torch.Tensor,
    tau: float,
    backend: str | Backend,
    shots: int | None = None,
    *,
    seed: int | None = None,
    block_size: int = DEFAULT_BLOCK,
) -> torch.Tensor:
    """Log-fidelity of the Bloch encodings of one query and D documents: ``[d], [D, d] -> [D]``.

    Args:
        query_vec: ``[d]`` embedding; doc_vecs: ``[D, d]`` embeddings.
        tau: Bloch temperature, theta = tanh(u / tau) pi/2 + pi/2.
        backend: "closed-form" | "qiskit" | "pennylane".
        shots: None for exact simulation; a positive int for a shot estimate (simulators only).
        seed: fixes the simulators' sampling. block_size: qubits simulated per circuit.

    Returns:
        ``[D]`` log F in the inputs' floating dtype (computed in float64).
    """
    name = backend.value if isinstance(backend, Backend) else backend
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if query_vec.dim() != 1:
        raise ValueError(f"query_vec must be [d], got shape {tuple(query_vec.shape)}")
    dtype = torch.promote_types(query_vec.dtype, doc_vecs.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    # float64 for every backend: in float32 tanh saturates, theta hits exactly 0 or pi and the
    # closed form's float32 floor is coarse (1.2e-7); float64 also makes backends comparable.
    theta_q = bloch_angles(query_vec.to(torch.float64), tau)
    theta_d = bloch_angles(doc_vecs.to(torch.float64), tau)
    check_pair(theta_q, theta_d)
    if doc_vecs.shape[0] == 0:
        return torch.zeros(0, dtype=dtype)
    return BACKENDS[name](theta_q, theta_d, shots, seed, block_size).to(dtype)
