"""Qiskit adapter [qiskit]: the core's states and QBEC steps as circuits, exact and with shots.

Qubit i of a circuit holds dimension i of the vector (Qiskit orders basis states little-endian,
so a statevector is kron(s_{n-1}, ..., s_0); see ``product.product_statevector``).

* Bloch encoding: P(phi) RY(theta)|0> = cos(theta/2)|0> + e^{i phi} sin(theta/2)|1>, phi = pi,
  exactly ``core.bloch_states`` (no global phase).
* Angle head: RZ(gamma) RY(theta)|0>, exactly ``core.angles.rotation_states``.
* Exact fidelity: |<a|b>|^2 from two ``Statevector``s, per block of qubits (``product.blocks``).
* Shots on ``AerSimulator``: compute-uncompute U_b^dagger U_a|0> with P(0...0) = F, or the swap
  test with P(ancilla = 0) = (1 + F)/2; one circuit per (document, block).

Sizes: a block of b qubits needs a 2^b statevector (b = 20: 16 MiB, under a second; the swap
test needs 2b + 1 qubits). Any n works blockwise; a 768-qubit state as one vector cannot exist.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from qrerank._optional import require
from qrerank.core.compression import _P_MIN, QuantumCompressionHead, squash, su2
from qrerank.core.encoding import bloch_angles, bloch_states
from qrerank.quantum.product import (
    DEFAULT_BLOCK,
    FLOOR,
    ShotEstimate,
    bernoulli_variance,
    blocks,
    check_pair,
    check_shots,
    combine_blocks,
)

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

logger = logging.getLogger(__name__)

EXTRA = "qiskit"
Method = Literal["compute-uncompute", "swap"]
METHODS: tuple[str, ...] = ("compute-uncompute", "swap")


def _floats(x: torch.Tensor) -> list[float]:
    return [float(v) for v in x.detach().reshape(-1).tolist()]


def _circuit(n_qubits: int, name: str) -> QuantumCircuit:
    return require("qiskit", EXTRA).QuantumCircuit(n_qubits, name=name)


def bloch_circuit(theta: torch.Tensor, phi: float = math.pi) -> QuantumCircuit:
    """``[n]`` polar angles -> n-qubit circuit P(phi) RY(theta_i) on qubit i."""
    qc = _circuit(theta.numel(), "bloch")
    for i, t in enumerate(_floats(theta)):
        qc.ry(t, i)
        qc.p(phi, i)
    return qc


def encode_circuit(u: torch.Tensor, tau: float) -> QuantumCircuit:
    """``[d]`` embedding -> its Bloch encoding, theta = tanh(u/tau) pi/2 + pi/2 (float64)."""
    return bloch_circuit(bloch_angles(u.detach().double(), tau))


def angle_circuit(theta: torch.Tensor, gamma: torch.Tensor) -> QuantumCircuit:
    """``[n]`` angles -> RY(theta_i) then RZ(gamma_i) on qubit i (the angle head's state)."""
    if theta.shape != gamma.shape:
        raise ValueError(f"theta and gamma shapes differ: {theta.shape} vs {gamma.shape}")
    qc = _circuit(theta.numel(), "angle")
    for i, (t, g) in enumerate(zip(_floats(theta), _floats(gamma), strict=True)):
        qc.ry(t, i)
        qc.rz(g, i)
    return qc


def _prepare(theta: torch.Tensor, gamma: torch.Tensor | None) -> QuantumCircuit:
    return bloch_circuit(theta) if gamma is None else angle_circuit(theta, gamma)


def statevector(circuit: QuantumCircuit) -> torch.Tensor:
    """Exact ``[2^n]`` complex128 amplitudes of ``circuit`` applied to |0...0> (little-endian)."""
    quantum_info = require("qiskit.quantum_info", EXTRA)
    return torch.from_numpy(np.asarray(quantum_info.Statevector(circuit).data, np.complex128))


def compute_uncompute_circuit(
    prep_a: QuantumCircuit, prep_b: QuantumCircuit, measure: bool = True
) -> QuantumCircuit:
    """U_b^dagger U_a |0>: P(0...0) = |<0|U_b^dagger U_a|0>|^2 = |<b|a>|^2."""
    qc = prep_a.compose(prep_b.inverse())
    qc.name = "compute_uncompute"
    if measure:
        qc.measure_all()
    return qc


def swap_test_circuit(prep_a: QuantumCircuit, prep_b: QuantumCircuit) -> QuantumCircuit:
    """Ancilla q0, |a> on q1..qn, |b> on q(n+1)..q2n: P(ancilla = 0) = (1 + |<a|b>|^2) / 2."""
    qiskit = require("qiskit", EXTRA)
    n = prep_a.num_qubits
    if prep_b.num_qubits != n:
        raise ValueError(f"states differ in size: {n} vs {prep_b.num_qubits} qubits")
    qc = qiskit.QuantumCircuit(2 * n + 1, 1, name="swap_test")
    qc.compose(prep_a, qubits=range(1, n + 1), inplace=True)
    qc.compose(prep_b, qubits=range(n + 1, 2 * n + 1), inplace=True)
    qc.h(0)
    for i in range(n):
        qc.cswap(0, 1 + i, 1 + n + i)
    qc.h(0)
    qc.measure(0, 0)
    return qc


def log_fidelity(
    theta_q: torch.Tensor,
    theta_d: torch.Tensor,
    gamma_q: torch.Tensor | None = None,
    gamma_d: torch.Tensor | None = None,
    block_size: int = DEFAULT_BLOCK,
) -> torch.Tensor:
    """Exact log |<q|d>|^2 from statevectors, summed over qubit blocks: ``[n] x [D, n] -> [D]``.

    Bloch states when ``gamma_*`` is None, angle-head states otherwise. float64; each block's
    fidelity is floored at ``FLOOR`` before the log.
    """
    check_pair(theta_q, theta_d)
    if (gamma_q is None) != (gamma_d is None):
        raise ValueError("give gamma for both query and documents, or for neither")
    out = torch.zeros(theta_d.shape[0], dtype=torch.float64)
    for blk in blocks(theta_q.shape[0], block_size):
        sv_q = statevector(_prepare(theta_q[blk], None if gamma_q is None else gamma_q[blk]))
        for j in range(theta_d.shape[0]):
            g = None if gamma_d is None else gamma_d[j, blk]
            sv_d = statevector(_prepare(theta_d[j, blk], g))
            f = torch.vdot(sv_q, sv_d).abs().square()
            out[j] += math.log(max(float(f), FLOOR))
    return out


def _simulator(seed: int | None) -> Any:
    aer = require("qiskit_aer", EXTRA)
    return aer.AerSimulator() if seed is None else aer.AerSimulator(seed_simulator=seed)


def estimate_fidelity(
    theta_q: torch.Tensor,
    theta_d: torch.Tensor,
    shots: int,
    gamma_q: torch.Tensor | None = None,
    gamma_d: torch.Tensor | None = None,
    seed: int | None = None,
    block_size: int = DEFAULT_BLOCK,
    method: Method = "compute-uncompute",
) -> ShotEstimate:
    """Shot estimate of |<q|d>|^2 on ``AerSimulator``, one circuit per (document, block): ``[D]``.

    compute-uncompute: f_k = N(0...0) / S, Var = f(1 - f)/S.
    swap: f_k = 2 N(anc = 0) / S - 1 (clipped to [0, 1]), Var = 4 p(1 - p)/S.
    """
    check_pair(theta_q, theta_d)
    check_shots(shots)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if (gamma_q is None) != (gamma_d is None):
        raise ValueError("give gamma for both query and documents, or for neither")
    parts = blocks(theta_q.shape[0], block_size)
    circuits = []
    for j in range(theta_d.shape[0]):
        for blk in parts:
            prep_q = _prepare(theta_q[blk], None if gamma_q is None else gamma_q[blk])
            prep_d = _prepare(theta_d[j, blk], None if gamma_d is None else gamma_d[j, blk])
            if method == "swap":
                circuits.append(swap_test_circuit(prep_q, prep_d))
            else:
                circuits.append(compute_uncompute_circuit(prep_q, prep_d))
    logger.debug("running %d circuits x %d shots on AerSimulator", len(circuits), shots)
    result = _simulator(seed).run(circuits, shots=shots).result()
    zeros = torch.tensor(
        [
            result.get_counts(i).get("0" * (1 if method == "swap" else qc.num_qubits), 0)
            for i, qc in enumerate(circuits)
        ],
        dtype=torch.float64,
    ).reshape(theta_d.shape[0], len(parts))
    p0 = zeros / shots
    if method == "swap":
        return combine_blocks(2 * p0 - 1, 4 * bernoulli_variance(p0, shots), shots)
    return combine_blocks(p0, bernoulli_variance(p0, shots), shots)


def _real_ry_angle(amplitudes: torch.Tensor) -> float:
    """RY(2 atan2(a_1, a_0))|0> = [a_0, a_1] for a real unit vector (signs included)."""
    if amplitudes.is_complex():
        raise ValueError("QBEC qubits are real ([cos, -sin] inputs, [sqrt p0, sqrt p1] outputs)")
    a0, a1 = _floats(amplitudes)
    return 2 * math.atan2(a1, a0)


def qbec_step_circuit(
    control: torch.Tensor,
    target: torch.Tensor,
    u_c: torch.Tensor,
    u_t: torch.Tensor,
    u_cu: torch.Tensor,
    measure: bool = False,
) -> QuantumCircuit:
    """One QBEC position, q0 = control, q1 = target: diag(I, U_cu) (U_c (x) U_t) after RY preps.

    Args:
        control, target: ``[2]`` real amplitudes; u_c, u_t, u_cu: ``[2, 2]`` unitaries.
        measure: append a measurement of the target into the single classical bit.
    """
    qiskit = require("qiskit", EXTRA)
    library = require("qiskit.circuit.library", EXTRA)
    qc = qiskit.QuantumCircuit(2, 1 if measure else 0, name="qbec_step")
    qc.ry(_real_ry_angle(control), 0)
    qc.ry(_real_ry_angle(target), 1)

    def gate(u: torch.Tensor, label: str) -> Any:
        matrix = u.detach().to(torch.complex128).resolve_conj().numpy()
        return library.UnitaryGate(matrix, label=label)

    qc.append(gate(u_c, "U_c"), [0])
    qc.append(gate(u_t, "U_t"), [1])
    qc.append(gate(u_cu, "U_cu").control(1), [0, 1])
    if measure:
        qc.measure(1, 0)
    return qc


def qbec_step(
    control: torch.Tensor,
    target: torch.Tensor,
    u_c: torch.Tensor,
    u_t: torch.Tensor,
    u_cu: torch.Tensor,
    shots: int | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """``controlled_step`` simulated: ``[n, 2]`` control/target, ``[n, 2, 2]`` gates -> ``[n, 2]``.

    Returns [sqrt p_0, sqrt p_1] of the target's marginal, exact from the statevector or, with
    ``shots``, from measuring the target on ``AerSimulator`` (p_j = N_j / S).
    """
    n = control.shape[0]
    circuits = [
        qbec_step_circuit(control[i], target[i], u_c[i], u_t[i], u_cu[i], measure=shots is not None)
        for i in range(n)
    ]
    if shots is None:
        quantum_info = require("qiskit.quantum_info", EXTRA)
        probs = [quantum_info.Statevector(qc).probabilities([1]) for qc in circuits]
        p = torch.tensor(np.stack(probs), dtype=torch.float64)
    else:
        check_shots(shots)
        qiskit = require("qiskit", EXTRA)
        sim = _simulator(seed)
        # Aer has no native controlled-unitary instruction: decompose to its basis first.
        result = sim.run(qiskit.transpile(circuits, sim), shots=shots).result()
        counts = [result.get_counts(i) for i in range(n)]
        p = torch.tensor([[c.get("0", 0), c.get("1", 0)] for c in counts], dtype=torch.float64)
        p = p / shots
    return p.clamp(min=_P_MIN).sqrt()


def qbec_forward(
    head: QuantumCompressionHead,
    u: torch.Tensor,
    shots: int | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """``head(u)`` step by step on circuits: ``[in_dim] -> [out_dim, 2]`` real (float64).

    The cascade cannot be one circuit: each step measures its target and re-encodes it as
    [sqrt p_0, sqrt p_1], which discards the phases a coherent circuit would keep.
    """
    if u.shape != (head.in_dim,):
        raise ValueError(f"expected a single [{head.in_dim}] vector, got {tuple(u.shape)}")
    u = head.mix(u.detach().double())  # qbec-mix: the fixed classical rotation comes first
    pad = head.n_blocks * head.out_dim - head.in_dim
    u = torch.nn.functional.pad(u, (0, pad))
    states = bloch_states(bloch_angles(u, float(head.tau().detach())))
    parts = states.unflatten(0, (head.n_blocks, head.out_dim)).unbind(0)
    # float64 gates: UnitaryGate checks unitarity to ~1e-8, beyond float32 round-off.
    gates = su2(squash(head.raw.detach().double()))
    current = parts[-1]
    for step, j in enumerate(range(head.n_blocks - 2, -1, -1)):
        u_c, u_t, u_cu = gates[step].unbind(0)
        current = qbec_step(current, parts[j], u_c, u_t, u_cu, shots, seed)
    return current


def example_circuits() -> dict[str, QuantumCircuit]:
    """The circuits drawn in docs/circuits.md (print each with ``qc.draw("text")``)."""
    theta_a = torch.tensor([0.4, 1.3, 2.2], dtype=torch.float64)
    theta_b = torch.tensor([0.9, 1.1, 2.8], dtype=torch.float64)
    prep_a, prep_b = bloch_circuit(theta_a), bloch_circuit(theta_b)
    gate = su2(torch.tensor([[0.1, 0.7, 1.2, -0.3]], dtype=torch.float64))[0]
    return {
        "bloch": encode_circuit(torch.tensor([0.2, -0.5, 0.9]), tau=1.0),
        "compute_uncompute": compute_uncompute_circuit(prep_a, prep_b),
        "swap_test": swap_test_circuit(prep_a, prep_b),
        "qbec_step": qbec_step_circuit(
            torch.tensor([0.8, -0.6]),
            torch.tensor([0.6, 0.8]),
            gate,
            gate.conj().T,
            gate,
            measure=True,
        ),
    }
