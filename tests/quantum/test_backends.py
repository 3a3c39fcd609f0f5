"""The backend registry: closed form without extras, simulators equal to it when exact."""

from __future__ import annotations

import importlib

import pytest
import torch

from qrerank.core import bloch_angles, default_tau, log_fidelity_angles
from qrerank.quantum import BACKENDS, Backend, score_log_fidelity


def installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


SIMULATORS = [
    pytest.param(name, marks=pytest.mark.skipif(not installed(module), reason=f"extra [{name}] missing"))
    for name, module in (("qiskit", "qiskit_aer"), ("pennylane", "pennylane"))
]


def test_registry_lists_the_three_backends() -> None:
    assert list(BACKENDS) == ["closed-form", "qiskit", "pennylane"]


def test_unknown_backend_lists_choices(vectors: tuple[torch.Tensor, torch.Tensor]) -> None:
    q, d = vectors
    with pytest.raises(ValueError, match="closed-form, qiskit, pennylane"):
        score_log_fidelity(q, d, 0.3, "cirq")


def test_closed_form_matches_core(vectors: tuple[torch.Tensor, torch.Tensor]) -> None:
    q, d = vectors
    tau = default_tau(12)
    expected = log_fidelity_angles(bloch_angles(q, tau).unsqueeze(0), bloch_angles(d, tau))
    got = score_log_fidelity(q, d, tau, Backend.CLOSED_FORM)
    torch.testing.assert_close(got, expected)


def test_closed_form_rejects_shots(vectors: tuple[torch.Tensor, torch.Tensor]) -> None:
    q, d = vectors
    with pytest.raises(ValueError, match="exact"):
        score_log_fidelity(q, d, 0.3, "closed-form", shots=100)


def test_shape_checks_and_empty_docs(vectors: tuple[torch.Tensor, torch.Tensor]) -> None:
    q, d = vectors
    with pytest.raises(ValueError, match=r"\[d\]"):
        score_log_fidelity(d, d, 0.3, "closed-form")
    with pytest.raises(ValueError, match=r"\[D, n\]"):
        score_log_fidelity(q, d[:, :5], 0.3, "closed-form")
    assert score_log_fidelity(q, d[:0], 0.3, "closed-form").shape == (0,)


def test_returns_input_dtype(vectors: tuple[torch.Tensor, torch.Tensor]) -> None:
    q, d = vectors
    got = score_log_fidelity(q.float(), d.float(), default_tau(12), "closed-form")
    assert got.dtype == torch.float32 and torch.isfinite(got).all()


@pytest.mark.parametrize("backend", SIMULATORS)
def test_exact_simulators_equal_closed_form(backend: str, vectors: tuple[torch.Tensor, torch.Tensor]) -> None:
    q, d = vectors
    tau = default_tau(12)
    expected = score_log_fidelity(q, d, tau, "closed-form")
    for block_size in (1, 5, 12):
        got = score_log_fidelity(q, d, tau, backend, block_size=block_size)
        torch.testing.assert_close(got, expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("backend", SIMULATORS)
def test_shots_give_a_seeded_estimate(backend: str, vectors: tuple[torch.Tensor, torch.Tensor]) -> None:
    q, d = vectors
    tau = 3 * default_tau(12)  # a wider tau keeps F ~ 0.3..0.9, measurable with few shots
    exact = score_log_fidelity(q, d, tau, "closed-form")
    first = score_log_fidelity(q, d, tau, backend, shots=2048, seed=3, block_size=4)
    again = score_log_fidelity(q, d, tau, backend, shots=2048, seed=3, block_size=4)
    torch.testing.assert_close(first, again)
    assert (first - exact).abs().max() < 0.25
