"""Adapters import without their extras and raise ImportError naming the extra when called.

The packages are hidden by mapping them to None in ``sys.modules`` (``import x`` then raises
ImportError), so these tests run whether or not the extras are installed.
"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

import qrerank.quantum

THETA = torch.tensor([0.3, 1.2], dtype=torch.float64)


def hide(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Make ``packages`` and their submodules unimportable for the rest of the test."""
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") for p in packages):
            monkeypatch.setitem(sys.modules, name, None)
    for p in packages:
        monkeypatch.setitem(sys.modules, p, None)


def fresh_import(monkeypatch: pytest.MonkeyPatch, module: str) -> object:
    """Import ``qrerank.quantum.<module>`` anew; the cached module comes back after the test."""
    monkeypatch.delitem(sys.modules, f"qrerank.quantum.{module}", raising=False)
    if hasattr(qrerank.quantum, module):
        monkeypatch.setattr(qrerank.quantum, module, getattr(qrerank.quantum, module))
    return importlib.import_module(f"qrerank.quantum.{module}")


def test_qiskit_adapter_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "qiskit", "qiskit_aer")
    qk = fresh_import(monkeypatch, "qiskit")
    with pytest.raises(ImportError, match=r"qrerank\[qiskit\]"):
        qk.bloch_circuit(THETA)  # type: ignore[attr-defined]
    with pytest.raises(ImportError, match=r"qrerank\[qiskit\]"):
        qk.log_fidelity(THETA, THETA.unsqueeze(0))  # type: ignore[attr-defined]


def test_aer_alone_missing_names_the_qiskit_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("qiskit")
    hide(monkeypatch, "qiskit_aer")
    qk = fresh_import(monkeypatch, "qiskit")
    with pytest.raises(ImportError, match=r"qrerank\[qiskit\]"):
        qk.estimate_fidelity(THETA, THETA.unsqueeze(0), shots=8)  # type: ignore[attr-defined]


def test_pennylane_adapter_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "pennylane", "pennylane_lightning")
    pq = fresh_import(monkeypatch, "pennylane")
    with pytest.raises(ImportError, match=r"qrerank\[pennylane\]"):
        pq.log_fidelity(THETA, THETA.unsqueeze(0))  # type: ignore[attr-defined]


def test_lightning_missing_names_the_pennylane_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pennylane")
    hide(monkeypatch, "pennylane_lightning")
    pq = fresh_import(monkeypatch, "pennylane")
    with pytest.raises(ImportError, match=r"qrerank\[pennylane\]"):
        pq.make_device("lightning.qubit", 2)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("backend", "packages"), [("qiskit", ("qiskit", "qiskit_aer")), ("pennylane", ("pennylane",))]
)
def test_registry_without_extras(
    monkeypatch: pytest.MonkeyPatch, backend: str, packages: tuple[str, ...]
) -> None:
    hide(monkeypatch, *packages)
    fresh_import(monkeypatch, backend)
    q, d = torch.randn(3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    assert qrerank.quantum.score_log_fidelity(q, d, 0.5, "closed-form").shape == (2,)
    with pytest.raises(ImportError, match=rf"qrerank\[{backend}\]"):
        qrerank.quantum.score_log_fidelity(q, d, 0.5, backend)
