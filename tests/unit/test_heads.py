"""Trainable heads: parameter counts, valid states, the QBEC step against its explicit circuit, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from qrerank.core import AngleHead, BlochHead, LinearHead, QuantumCompressionHead, log_fidelity_matrix
from qrerank.core.compression import controlled_step, squash, su2


def test_parameter_counts_match_the_paper() -> None:
    qbec = QuantumCompressionHead(768, 256, learn_tau=False)
    assert qbec.num_parameters() == 3 * 4 * 2 * 256 == 6144
    assert LinearHead(768, 256).num_parameters() == 196_864
    assert LinearHead(768, 256).num_parameters() / qbec.num_parameters() == pytest.approx(32.04, abs=0.01)
    assert QuantumCompressionHead(768, 256).num_parameters() == 6145  # + learnable tau


def test_su2_is_unitary_with_the_documented_decomposition(gen: torch.Generator) -> None:
    angles = squash(torch.randn(5, 4, generator=gen, dtype=torch.float64))
    u = su2(angles)
    eye = torch.eye(2, dtype=torch.complex128).expand(5, 2, 2)
    assert torch.allclose(u @ u.conj().transpose(-1, -2), eye, atol=1e-12)
    a, b, c, d = angles[0]

    def rz(x: torch.Tensor) -> torch.Tensor:
        return torch.diag(
            torch.stack(
                [
                    torch.polar(torch.tensor(1.0, dtype=torch.float64), -x / 2),
                    torch.polar(torch.tensor(1.0, dtype=torch.float64), x / 2),
                ]
            )
        )

    ry = torch.tensor(
        [[math.cos(c / 2), -math.sin(c / 2)], [math.sin(c / 2), math.cos(c / 2)]], dtype=torch.complex128
    )
    expected = torch.polar(torch.tensor(1.0, dtype=torch.float64), a) * rz(b) @ ry @ rz(d)
    assert torch.allclose(u[0], expected, atol=1e-12)
    assert torch.all((angles > 0) & (angles < 4 * math.pi))


def test_controlled_step_equals_explicit_two_qubit_circuit(gen: torch.Generator) -> None:
    n = 4
    c = torch.nn.functional.normalize(torch.randn(n, 2, generator=gen, dtype=torch.float64), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(n, 2, generator=gen, dtype=torch.float64), dim=-1)
    u_c, u_t, u_cu = (su2(squash(torch.randn(n, 4, generator=gen, dtype=torch.float64))) for _ in range(3))
    out = controlled_step(c, t, u_c, u_t, u_cu)
    for k in range(n):
        psi = torch.kron(u_c[k] @ c[k].to(torch.complex128), u_t[k] @ t[k].to(torch.complex128))  # |c>|t>
        cu = torch.zeros(4, 4, dtype=torch.complex128)
        cu[:2, :2] = torch.eye(2)
        cu[2:, 2:] = u_cu[k]  # diag(I, U_cu): acts on the target when the control is |1>
        psi = (cu @ psi).reshape(2, 2)  # [control, target]
        p = psi.abs().square().sum(0)  # marginal of the target
        assert torch.allclose(out[k], p.sqrt(), atol=1e-12)


def test_compression_output_is_a_valid_separable_state(gen: torch.Generator) -> None:
    for d_in, d_out in [(768, 256), (384, 128), (384, 256), (10, 3)]:
        head = QuantumCompressionHead(d_in, d_out)
        out = head(torch.randn(4, d_in, generator=gen))
        assert out.shape == (4, d_out, 2) and not out.is_complex()
        assert torch.allclose(out.square().sum(-1), torch.ones(4, d_out), atol=1e-5)
        assert head.n_blocks == math.ceil(d_in / d_out)
    with pytest.raises(ValueError):
        QuantumCompressionHead(256, 256)


def test_compression_cascade_order_for_three_blocks(gen: torch.Generator) -> None:
    # 6 -> 2: blocks a, b, c; c controls b, then the new b controls a; a is the output.
    head = QuantumCompressionHead(6, 2, tau=0.7).double()
    u = torch.randn(6, generator=gen, dtype=torch.float64)
    from qrerank.core import bloch_angles, bloch_states

    a, b, c = bloch_states(bloch_angles(u, 0.7)).unflatten(0, (3, 2))
    g = head.gates()
    new_b = controlled_step(c, b, *g[0].unbind(0))
    expected = controlled_step(new_b, a, *g[1].unbind(0))
    assert torch.allclose(head(u), expected, atol=1e-12)


@pytest.mark.parametrize(
    "head",
    [
        BlochHead(6),
        LinearHead(6, 3),
        QuantumCompressionHead(6, 2),
        QuantumCompressionHead(5, 2),
        AngleHead(6, 3, hidden=8),
    ],
    ids=lambda h: h.name,
)
def test_gradcheck_float64(head: torch.nn.Module, gen: torch.Generator) -> None:
    head = head.double()
    x = torch.randn(2, head.in_dim, generator=gen, dtype=torch.float64, requires_grad=True)

    def score(inp: torch.Tensor) -> torch.Tensor:
        out = head(inp)
        if head.kind == "vector":
            return torch.nn.functional.cosine_similarity(out[:1], out[1:])
        return log_fidelity_matrix(out[:1], out[1:])

    assert torch.autograd.gradcheck(score, (x,), eps=1e-6, atol=1e-5)
    # and through the parameters
    loss = score(x).sum()
    loss.backward()
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters() if p.requires_grad
    )


def test_angle_head_ranges_and_states(gen: torch.Generator) -> None:
    head = AngleHead(32, 8, hidden=16)
    theta, gamma = head.angles(torch.randn(5, 32, generator=gen) * 10)
    assert torch.all((theta >= 0) & (theta <= math.pi)) and torch.all((gamma >= 0) & (gamma <= 2 * math.pi))
    states = head(torch.randn(5, 32, generator=gen))
    assert states.shape == (5, 8, 2) and states.is_complex()
    assert torch.allclose(states.abs().square().sum(-1), torch.ones(5, 8), atol=1e-6)
    # Xavier init: weight variance 2 / (fan_in + fan_out)
    w = head.mlp[0].weight
    assert w.abs().max() <= math.sqrt(6 / (32 + 16)) + 1e-6


def test_bloch_head_learns_tau() -> None:
    head = BlochHead(4, tau=0.5)
    assert head.get_config_dict()["tau"] == pytest.approx(0.5)
    out = head(torch.ones(2, 4))
    log_fidelity_matrix(out[:1], out[1:] * torch.tensor([1.0, -1.0])).sum().backward()
    assert head.tau.log_tau.grad is not None
