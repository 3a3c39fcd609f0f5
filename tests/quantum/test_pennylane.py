"""PennyLane QNodes reproduce the core's states, fidelities and gradients."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

pytest.importorskip("pennylane")
pytest.importorskip("pennylane_lightning")

from qrerank.core import AngleHead, bloch_states, log_fidelity, log_fidelity_angles
from qrerank.core.angles import rotation_states
from qrerank.quantum import pennylane as pq
from qrerank.quantum.product import product_statevector

AnglesFactory = Callable[..., tuple[torch.Tensor, torch.Tensor]]
DEVICES = pq.DEVICES


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 4, 12])
def test_bloch_state_equals_core(device: str, n: int, make_angles: AnglesFactory) -> None:
    theta, _ = make_angles(n, 1, seed=n)
    expected = product_statevector(bloch_states(theta).to(torch.complex128), little_endian=False)
    got = pq.state_qnode(n, device)(theta)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_angle_state_equals_core(device: str) -> None:
    torch.manual_seed(1)
    head = AngleHead(5, 4, hidden=8).double()
    theta, gamma = head.angles(torch.randn(5, dtype=torch.float64))
    expected = product_statevector(rotation_states(theta, gamma).detach(), little_endian=False)
    got = pq.state_qnode(4, device)(theta.detach(), gamma.detach())
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("device", "n", "block_size"),
    [
        ("default.qubit", 1, 8),
        ("default.qubit", 5, 2),
        ("default.qubit", 12, 12),
        ("lightning.qubit", 5, 2),
        # lightning's dense |0..0><0..0| observable costs 4^b: a 12-qubit block takes seconds.
        ("lightning.qubit", 12, 6),
    ],
)
def test_exact_log_fidelity_equals_closed_form(
    device: str, n: int, block_size: int, make_angles: AnglesFactory
) -> None:
    theta_q, theta_d = make_angles(n, 4, seed=20 + n)
    expected = log_fidelity_angles(theta_q.unsqueeze(0), theta_d)
    got = pq.log_fidelity(theta_q, theta_d, device=device, block_size=block_size)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_exact_angle_fidelity_equals_closed_form(
    make_angles: AnglesFactory, make_gammas: AnglesFactory
) -> None:
    theta_q, theta_d = make_angles(6, 3, seed=2)
    gamma_q, gamma_d = make_gammas(6, 3, seed=3)
    expected = log_fidelity(rotation_states(theta_q, gamma_q), rotation_states(theta_d, gamma_d))
    got = pq.log_fidelity(theta_q, theta_d, gamma_q, gamma_d, block_size=4)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_fidelity_gradients_equal_closed_form(device: str, make_angles: AnglesFactory) -> None:
    theta_q, theta_d = make_angles(5, 3, seed=8)

    def grads(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        q, d = theta_q.clone().requires_grad_(), theta_d.clone().requires_grad_()
        fn(q, d).sum().backward()
        return [q.grad, d.grad]  # type: ignore[list-item]

    expected = grads(lambda q, d: log_fidelity_angles(q.unsqueeze(0), d))
    got = grads(lambda q, d: pq.log_fidelity(q, d, device=device, block_size=3))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_angle_head_layer_trains_like_closed_form(device: str) -> None:
    torch.manual_seed(0)
    head = AngleHead(6, 3, hidden=8).double()
    layer = pq.PennyLaneAngleHead(head, device=device)
    u_a, u_b = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)

    layer(u_a, u_b).sum().backward()
    got = [p.grad.clone() for p in head.parameters()]  # type: ignore[union-attr]
    head.zero_grad()
    log_fidelity(head(u_a), head(u_b)).sum().backward()
    for g, p in zip(got, head.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, atol=1e-8, rtol=1e-6)


def test_angle_head_states_match_core() -> None:
    torch.manual_seed(2)
    head = AngleHead(6, 3, hidden=8).double()
    u = torch.randn(2, 6, dtype=torch.float64)
    states = pq.PennyLaneAngleHead(head).states(u)
    for row, s in zip(head(u).detach(), states, strict=True):
        torch.testing.assert_close(s, product_statevector(row, little_endian=False))


def test_entangled_head_leaves_the_closed_form() -> None:
    torch.manual_seed(3)
    head = AngleHead(6, 3, hidden=8).double()
    layer = pq.PennyLaneAngleHead(head, entangle_layers=2).double()
    u_a, u_b = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    log_f = layer(u_a, u_b)
    assert (log_f <= 1e-9).all()
    torch.testing.assert_close(layer(u_b, u_a), log_f)  # symmetric
    torch.testing.assert_close(layer(u_a, u_a), torch.zeros(5, dtype=torch.float64))
    assert (log_f - log_fidelity(head(u_a), head(u_b))).abs().max() > 1e-3
    log_f.sum().backward()
    assert layer.circuit.weights.grad is not None and layer.circuit.weights.grad.abs().sum() > 0
    states = layer.states(u_a)
    torch.testing.assert_close(states.abs().square().sum(-1), torch.ones(5, dtype=torch.float64))


def test_head_too_wide_for_one_statevector() -> None:
    with pytest.raises(ValueError, match="statevector"):
        pq.PennyLaneAngleHead(AngleHead(4, pq.MAX_QUBITS + 1, hidden=4))


@pytest.mark.parametrize("device", DEVICES)
def test_shot_estimate_within_four_standard_errors(device: str, make_angles: AnglesFactory) -> None:
    theta_q, theta_d = make_angles(6, 5, seed=11, spread=0.5)
    exact = log_fidelity_angles(theta_q.unsqueeze(0), theta_d).exp()
    est = pq.estimate_fidelity(theta_q, theta_d, 1024, device=device, seed=42, block_size=3)
    assert est.n_blocks == 2
    assert ((est.fidelity - exact).abs() <= 4 * est.stderr).all()
    again = pq.estimate_fidelity(theta_q, theta_d, 1024, device=device, seed=42, block_size=3)
    torch.testing.assert_close(again.fidelity, est.fidelity)


def test_shot_angle_head_layer_runs_with_shots() -> None:
    torch.manual_seed(4)
    head = AngleHead(6, 3, hidden=8).double()
    layer = pq.PennyLaneAngleHead(head, shots=256, seed=0)
    u = torch.randn(3, 6, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(layer(u, u), torch.zeros(3, dtype=torch.float64))


def test_unknown_device() -> None:
    with pytest.raises(ValueError, match=r"default\.qubit, lightning\.qubit"):
        pq.make_device("braket.local.qubit", 2)
