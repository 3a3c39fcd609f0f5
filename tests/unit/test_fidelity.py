"""Core math invariants: Bloch encoding and log-fidelity of separable states."""

from __future__ import annotations

import math
from functools import reduce

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qrerank.core import (
    bloch_angles,
    bloch_states,
    default_tau,
    log_fidelity,
    log_fidelity_angles,
    log_fidelity_angles_matrix,
    log_fidelity_matrix,
)
from qrerank.core.angles import rotation_states

vectors = st.integers(1, 10).flatmap(
    lambda n: st.tuples(
        *[st.lists(st.floats(-3, 3, allow_nan=False), min_size=n, max_size=n) for _ in range(2)]
    )
)


def statevector(states: torch.Tensor) -> torch.Tensor:
    """Explicit 2^n amplitudes of a product state ``[n, 2]`` via Kronecker products."""
    return reduce(torch.kron, list(states.to(torch.complex128)))


@settings(max_examples=60, deadline=None)
@given(vectors, st.floats(0.5, 5.0))  # |u/tau| <= 6 keeps every qubit pair above the eps floor
def test_fidelity_is_a_fidelity(pair: tuple[list[float], list[float]], tau: float) -> None:
    a, b = (torch.tensor(v, dtype=torch.float64) for v in pair)
    ta, tb = bloch_angles(a, tau), bloch_angles(b, tau)
    lf_ab, lf_ba = log_fidelity_angles(ta, tb), log_fidelity_angles(tb, ta)
    assert 0.0 <= math.exp(lf_ab) <= 1.0
    assert lf_ab == pytest.approx(float(lf_ba), abs=1e-12)  # symmetric
    assert float(log_fidelity_angles(ta, ta)) == 0.0  # 1 on itself
    # equals the explicit 2^n statevector overlap |<a|b>|^2
    sa, sb = statevector(bloch_states(ta)), statevector(bloch_states(tb))
    exact = torch.vdot(sa, sb).abs().square()
    assert math.exp(lf_ab) == pytest.approx(float(exact), rel=1e-9, abs=1e-300)
    # amplitude form agrees with the angle closed form
    assert float(log_fidelity(bloch_states(ta), bloch_states(tb))) == pytest.approx(float(lf_ab), abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_complex_states_match_statevector_and_are_phase_invariant(n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(2, n, generator=g, dtype=torch.float64) * math.pi
    gamma = torch.rand(2, n, generator=g, dtype=torch.float64) * 2 * math.pi
    a, b = rotation_states(theta[0], gamma[0]), rotation_states(theta[1], gamma[1])
    exact = torch.vdot(statevector(a), statevector(b)).abs().square()
    assert math.exp(log_fidelity(a, b)) == pytest.approx(float(exact), rel=1e-9, abs=1e-300)
    phased = a * torch.polar(
        torch.ones(n, 1, dtype=torch.float64), torch.rand(n, 1, generator=g, dtype=torch.float64)
    )
    assert float(log_fidelity(phased, b)) == pytest.approx(float(log_fidelity(a, b)), abs=1e-9)


def test_bloch_angles_range_and_formula() -> None:
    u = torch.tensor([-100.0, -0.1, 0.0, 0.1, 100.0])
    theta = bloch_angles(u, 0.2)
    assert torch.all((theta >= 0) & (theta <= math.pi))
    assert theta[2] == pytest.approx(math.pi / 2)
    assert theta[3] == pytest.approx(math.tanh(0.5) * math.pi / 2 + math.pi / 2)
    states = bloch_states(theta)
    assert torch.allclose(states.square().sum(-1), torch.ones(5))
    assert torch.all(states[:, 1] <= 0)  # phi = pi: e^{i pi} sin(theta/2) = -sin(theta/2)
    with pytest.raises(ValueError):
        bloch_angles(u, 0.0)
    assert default_tau(384) == pytest.approx(1 / math.sqrt(384))


def test_no_underflow_at_768_dims_in_float32(gen: torch.Generator) -> None:
    u, v = torch.randn(2, 768, generator=gen)
    lf = log_fidelity_angles(bloch_angles(u, 1.0), bloch_angles(v, 1.0))
    assert torch.isfinite(lf) and lf < -87  # exp(lf) underflows float32, the log does not


def test_orthogonal_qubits_hit_the_documented_floor() -> None:
    theta = torch.tensor([0.0, math.pi], dtype=torch.float64)
    lf = log_fidelity_angles(theta[:1], theta[1:])
    assert float(lf) == pytest.approx(math.log(torch.finfo(torch.float64).eps), rel=1e-6)
    lf32 = log_fidelity_angles(theta[:1].float(), theta[1:].float())
    assert torch.isfinite(lf32) and float(lf32) == pytest.approx(
        math.log(torch.finfo(torch.float32).eps), rel=1e-3
    )


def test_precision_for_nearly_identical_states() -> None:
    theta = torch.full((384,), 1.0)
    lf = log_fidelity_angles(theta, theta + 1e-5)
    # log cos^2(x) ~ -x^2 per qubit with x = 5e-6: 1 - cos^2 would round to 0 in float32
    assert float(lf) == pytest.approx(-384 * (5e-6) ** 2, rel=1e-2)  # float32 rounding of theta + 1e-5


def test_finite_gradients_at_identical_and_orthogonal_qubits() -> None:
    a = torch.tensor([0.3, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.3, math.pi, 1.0 + 1e-12], dtype=torch.float64)  # identical, orthogonal, ~identical
    lf = log_fidelity_angles(a, b)
    lf.backward()
    assert torch.isfinite(lf) and torch.isfinite(a.grad).all()
    sa = bloch_states(a.detach()).requires_grad_(True)
    lf2 = log_fidelity(sa, bloch_states(b))
    lf2.backward()
    assert torch.isfinite(lf2) and torch.isfinite(sa.grad).all()


def test_matrix_forms_match_pairwise_and_chunking(gen: torch.Generator) -> None:
    q, d = (
        torch.randn(3, 16, generator=gen, dtype=torch.float64),
        torch.randn(7, 16, generator=gen, dtype=torch.float64),
    )
    tq, td = bloch_angles(q, 0.5), bloch_angles(d, 0.5)
    expected = torch.stack([log_fidelity_angles(tq[i], td) for i in range(3)])
    assert torch.allclose(log_fidelity_angles_matrix(tq, td), expected, atol=1e-9)
    assert torch.allclose(log_fidelity_angles_matrix(tq, td, chunk=2), expected, atol=1e-9)
    assert torch.allclose(
        log_fidelity_matrix(bloch_states(tq), bloch_states(td), chunk=3), expected, atol=1e-9
    )
    with pytest.raises(ValueError, match="qubit dimensions differ"):
        log_fidelity_angles_matrix(tq, td[:, :8])
    assert log_fidelity_angles_matrix(tq, td[:0]).shape == (3, 0)


def test_tau_one_on_unit_vectors_ranks_like_cosine(gen: torch.Generator) -> None:
    # The observation: |u_i| ~ 0.05 at d=384 keeps tanh linear, so fidelity ~ cosine order.
    docs = torch.nn.functional.normalize(torch.randn(50, 384, generator=gen), dim=-1)
    q = torch.nn.functional.normalize(docs[0] + 0.5 * torch.randn(384, generator=gen), dim=-1)
    lf = log_fidelity_angles(bloch_angles(q, 1.0)[None], bloch_angles(docs, 1.0))
    cos = docs @ q
    assert torch.equal(torch.argsort(lf, descending=True)[:10], torch.argsort(cos, descending=True)[:10])


def _reference(tq: torch.Tensor, td: torch.Tensor) -> torch.Tensor:
    """The pairwise closed form in float64: the oracle every fast path is held against."""
    return torch.stack([log_fidelity_angles(tq[i].double(), td.double()) for i in range(tq.shape[0])])


def _hard_angles(gen: torch.Generator, n_docs: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and docs whose qubit pairs include identical, nearly identical (1e-4..1e-2 apart),
    nearly orthogonal (theta 0 vs pi - 1e-3) and exactly orthogonal (floor) pairs."""
    q = torch.rand(3, n, generator=gen, dtype=torch.float64) * math.pi
    d = torch.rand(n_docs, n, generator=gen, dtype=torch.float64) * math.pi
    d[0] = q[0]  # identical state: log F = 0
    d[1] = q[0] + 1e-4 * torch.randn(n, generator=gen, dtype=torch.float64)  # nearly identical
    d[2] = (q[1] + 1e-2).clamp(max=math.pi)
    q[2, :4], d[3, :4] = 1e-3, math.pi - 1e-3  # nearly orthogonal qubits
    q[2, 4:6], d[4, 4:6] = 0.0, math.pi  # orthogonal: the floor
    return q.clamp(0, math.pi), d.clamp(0, math.pi)


@pytest.mark.parametrize("n", [384, 21, 5])  # a multiple of the block, a remainder, no full block
@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_planes_kernel_matches_the_float64_reference(gen: torch.Generator, n: int, compile: bool) -> None:
    from qrerank.core.fidelity import bloch_planes, log_fidelity_planes_matrix

    tq, td = _hard_angles(gen, 40, n)
    ref = _reference(tq, td)
    # float64: the same formula, to rounding.
    got64 = log_fidelity_planes_matrix(bloch_planes(tq), bloch_planes(td), compile=compile)
    assert torch.allclose(got64, ref, rtol=1e-10, atol=1e-12)
    # float32 against the float64 reference on the same float32 angles, 1e-4 relative; the
    # identical pair is exactly 0, and the floored pairs sit at float32's own floor.
    tq32, td32 = tq.float(), td.float()
    ref32 = _reference_floored(tq32, td32, torch.finfo(torch.float32).eps)
    got32 = log_fidelity_planes_matrix(bloch_planes(tq32), bloch_planes(td32), compile=compile).double()
    assert torch.isclose(got32, ref32, rtol=1e-4, atol=1e-7).all(), (got32 - ref32).abs().max()
    assert got32[0, 0] == pytest.approx(0.0, abs=1e-6)
    # One query takes the other tile; its nearly identical pair (d[2], log F ~ -n 2.5e-5) is
    # below the blocked products' precision and must come out refined, like the rest.
    one = log_fidelity_planes_matrix(bloch_planes(tq32[1:2]), bloch_planes(td32), compile=compile).double()
    assert torch.isclose(one, ref32[1:2], rtol=1e-4, atol=1e-7).all(), (one - ref32[1:2]).abs().max()


def _reference_floored(tq: torch.Tensor, td: torch.Tensor, floor: float) -> torch.Tensor:
    """float64 reference with float32's per-qubit floor (what a float32 path must reproduce)."""
    half = (tq.double()[:, None] - td.double()[None]) / 2
    return torch.log(torch.cos(half).square().clamp(min=floor)).sum(-1)


def test_matrix_forms_match_the_reference_and_keep_gradients(gen: torch.Generator) -> None:
    tq, td = _hard_angles(gen, 12, 24)
    ref = _reference(tq, td)
    assert torch.allclose(log_fidelity_angles_matrix(tq, td), ref, rtol=1e-10, atol=1e-12)
    assert torch.allclose(
        log_fidelity_matrix(bloch_states(tq), bloch_states(td)), ref, rtol=1e-10, atol=1e-12
    )
    # Sign-flipped amplitudes are the same state up to a global phase of each qubit.
    flipped = bloch_states(td) * torch.tensor([-1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(log_fidelity_matrix(bloch_states(tq), flipped), ref, rtol=1e-10, atol=1e-12)
    # With gradients the matrix forms take the differentiable pairwise formula.
    a = tq.clone().requires_grad_(True)
    out = log_fidelity_angles_matrix(a, td)
    out.sum().backward()
    assert out.grad_fn is not None and torch.isfinite(a.grad).all()


def test_tiles_cover_every_pair_and_lift_the_recompile_limit(gen: torch.Generator) -> None:
    """The tile walk (overlapping last tiles, padding below one tile) fills every pair exactly
    once with the kernel's value, with dynamo's recompile limit raised for the kernel's graphs."""
    from qrerank.core import fidelity

    seen: list[int] = []

    def kernel(a0: torch.Tensor, a1: torch.Tensor, b0: torch.Tensor, b1: torch.Tensor, floor: float) -> torch.Tensor:
        seen.append(torch._dynamo.config.recompile_limit)
        return (a0 * b0).sum(-1)  # [T, Q, S]: a stand-in with a value per pair

    for n_q, n_d in [(1, 5), (1, 40_000), (3, 9000), (45, 4096 + 7)]:
        q0, q1 = torch.rand(n_q, 8, generator=gen), torch.zeros(n_q, 8)
        d0, d1 = torch.rand(n_d, 8, generator=gen), torch.zeros(n_d, 8)
        got = fidelity._tiled(kernel, q0, q1, d0, d1, 0.0)
        assert torch.allclose(got, q0 @ d0.T, rtol=1e-5)
    assert seen and min(seen) == fidelity._MAX_GRAPHS > 8


@pytest.mark.parametrize("n", [384, 21, 5])
def test_candidates_form_matches_the_float64_reference(gen: torch.Generator, n: int) -> None:
    """The reranking stage's one-query form, on identical, nearly identical, nearly orthogonal
    and orthogonal qubit pairs: 1e-4 relative in float32 (the identical pair exactly 0), and
    the differentiable formula, with its gradients, when a gradient is asked for."""
    from qrerank.core.fidelity import log_fidelity_candidates

    tq, td = _hard_angles(gen, 40, n)
    for row in range(3):
        ref = _reference(tq[row : row + 1], td)[0]
        assert torch.allclose(log_fidelity_candidates(tq[row], td), ref, rtol=1e-10, atol=1e-12)
        q32, d32 = tq[row].float(), td.float()
        ref32 = _reference_floored(q32[None], d32, torch.finfo(torch.float32).eps)[0]
        got = log_fidelity_candidates(q32, d32).double()
        assert torch.isclose(got, ref32, rtol=1e-4, atol=1e-7).all(), (got - ref32).abs().max()
    assert log_fidelity_candidates(tq[0].float(), td.float())[0] == 0.0
    a = tq[0].clone().requires_grad_(True)
    out = log_fidelity_candidates(a, td)
    out.sum().backward()
    assert out.grad_fn is not None and torch.isfinite(a.grad).all()
    with pytest.raises(ValueError, match="expected"):
        log_fidelity_candidates(tq, td)
