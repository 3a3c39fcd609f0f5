"""Qiskit circuits reproduce the core's states, fidelities and QBEC steps."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

pytest.importorskip("qiskit")
pytest.importorskip("qiskit_aer")

from qrerank.core import AngleHead, QuantumCompressionHead, bloch_states, log_fidelity_angles
from qrerank.core.angles import rotation_states
from qrerank.core.compression import controlled_step, squash, su2
from qrerank.quantum import qiskit as qk
from qrerank.quantum.product import product_statevector

AnglesFactory = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@pytest.mark.parametrize("n", [1, 3, 7, 12])
def test_bloch_circuit_state_equals_core(n: int, make_angles: AnglesFactory) -> None:
    theta, _ = make_angles(n, 1, seed=n)
    expected = product_statevector(bloch_states(theta).to(torch.complex128), little_endian=True)
    torch.testing.assert_close(qk.statevector(qk.bloch_circuit(theta)), expected, atol=1e-12, rtol=0)


def test_encode_circuit_uses_bloch_angles() -> None:
    u = torch.tensor([0.2, -0.5, 0.9], dtype=torch.float64)
    theta = torch.tanh(u / 0.5) * math.pi / 2 + math.pi / 2
    torch.testing.assert_close(
        qk.statevector(qk.encode_circuit(u, 0.5)), qk.statevector(qk.bloch_circuit(theta))
    )


def test_angle_head_state_equals_core() -> None:
    torch.manual_seed(0)
    head = AngleHead(5, 4, hidden=8).double()
    theta, gamma = head.angles(torch.randn(5, dtype=torch.float64))
    expected = product_statevector(rotation_states(theta, gamma), little_endian=True)
    got = qk.statevector(qk.angle_circuit(theta, gamma))
    torch.testing.assert_close(got, expected.to(torch.complex128), atol=1e-12, rtol=0)


@pytest.mark.parametrize("n", [1, 5, 12])
@pytest.mark.parametrize("block_size", [1, 4, 12])
def test_exact_log_fidelity_equals_closed_form(n: int, block_size: int, make_angles: AnglesFactory) -> None:
    theta_q, theta_d = make_angles(n, 4, seed=10 + n)
    expected = log_fidelity_angles(theta_q.unsqueeze(0), theta_d)
    got = qk.log_fidelity(theta_q, theta_d, block_size=block_size)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_exact_angle_fidelity_equals_closed_form(
    make_angles: AnglesFactory, make_gammas: AnglesFactory
) -> None:
    theta_q, theta_d = make_angles(6, 3, seed=2)
    gamma_q, gamma_d = make_gammas(6, 3, seed=3)
    states_q, states_d = rotation_states(theta_q, gamma_q), rotation_states(theta_d, gamma_d)
    overlap = (states_q.conj() * states_d).sum(-1).abs().square()
    got = qk.log_fidelity(theta_q, theta_d, gamma_q, gamma_d, block_size=4)
    torch.testing.assert_close(got, overlap.log().sum(-1), atol=1e-6, rtol=0)


def test_compute_uncompute_statevector_gives_fidelity_as_p0(make_angles: AnglesFactory) -> None:
    theta_q, theta_d = make_angles(4, 1, seed=5)
    circuit = qk.compute_uncompute_circuit(
        qk.bloch_circuit(theta_q), qk.bloch_circuit(theta_d[0]), measure=False
    )
    p0 = qk.statevector(circuit)[0].abs().square()
    expected = log_fidelity_angles(theta_q, theta_d[0]).exp()
    torch.testing.assert_close(p0, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", qk.METHODS)
def test_shot_estimate_within_four_standard_errors(method: str, make_angles: AnglesFactory) -> None:
    theta_q, theta_d = make_angles(6, 5, seed=11, spread=0.5)
    exact = log_fidelity_angles(theta_q.unsqueeze(0), theta_d).exp()
    est = qk.estimate_fidelity(theta_q, theta_d, 1024, seed=1234, block_size=3, method=method)
    assert est.n_blocks == 2 and est.shots == 1024
    assert ((est.fidelity - exact).abs() <= 4 * est.stderr).all()
    assert (est.stderr > 0).all()


def test_shot_estimate_rejects_bad_arguments(make_angles: AnglesFactory) -> None:
    theta_q, theta_d = make_angles(2, 1, seed=0)
    with pytest.raises(ValueError, match="shots"):
        qk.estimate_fidelity(theta_q, theta_d, 0)
    with pytest.raises(ValueError, match="compute-uncompute, swap"):
        qk.estimate_fidelity(theta_q, theta_d, 10, method="hadamard")  # type: ignore[arg-type]


def _random_step(n: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    control = bloch_states(math.pi * torch.rand(n, generator=g, dtype=torch.float64))
    target = bloch_states(math.pi * torch.rand(n, generator=g, dtype=torch.float64))
    gates = su2(squash(torch.randn(3, n, 4, generator=g, dtype=torch.float64)))
    return control, target, *gates.unbind(0)


def test_qbec_step_circuit_equals_controlled_step() -> None:
    args = _random_step(3, seed=4)
    torch.testing.assert_close(qk.qbec_step(*args), controlled_step(*args), atol=1e-10, rtol=0)


def test_qbec_step_with_shots_measures_the_target() -> None:
    args = _random_step(2, seed=6)
    exact = controlled_step(*args).square()
    p = qk.qbec_step(*args, shots=4000, seed=9).square()
    stderr = (exact * (1 - exact) / 4000).sqrt()
    assert ((p - exact).abs() <= 4 * stderr + 1e-12).all()


@pytest.mark.parametrize("mixing", ["none", "orthogonal"])
@pytest.mark.parametrize(("in_dim", "out_dim"), [(4, 2), (6, 2), (5, 2), (9, 3)])
def test_qbec_forward_equals_head(in_dim: int, out_dim: int, mixing: str) -> None:
    torch.manual_seed(in_dim)
    head = QuantumCompressionHead(in_dim, out_dim, init_std=1.0, mixing=mixing).double()
    u = torch.randn(in_dim, dtype=torch.float64)
    torch.testing.assert_close(qk.qbec_forward(head, u), head(u).detach(), atol=1e-9, rtol=0)


def test_example_circuits_build_and_draw() -> None:
    circuits = qk.example_circuits()
    assert set(circuits) == {"bloch", "compute_uncompute", "swap_test", "qbec_step"}
    assert circuits["swap_test"].num_qubits == 7
    assert "U_cu" in str(circuits["qbec_step"].draw("text"))
