"""Rotation head: untrained == Bloch encoding, 2d parameters, live offset, gradcheck, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qrerank.core import RotationHead, bloch_angles, default_tau, log_fidelity, log_fidelity_angles
from qrerank.heads.io import load_head, save_head
from qrerank.train.trainer import build_head


def _unit(gen: torch.Generator, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(*shape, generator=gen, dtype=dtype), dim=-1)


def test_untrained_head_is_the_parameter_free_bloch_encoding(gen: torch.Generator) -> None:
    d = 384
    a, b = _unit(gen, 6, d), _unit(gen, 6, d)
    head = RotationHead(d)
    tau = default_tau(d)
    assert torch.allclose(head.angles(a), bloch_angles(a, tau), atol=1e-6)
    expected = log_fidelity_angles(bloch_angles(a, tau), bloch_angles(b, tau))
    got = log_fidelity(head(a), head(b))
    assert got.shape == (6,)
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_parameter_count_is_two_per_qubit() -> None:
    head = RotationHead(384)
    assert head.num_parameters() == 2 * 384 == 768
    assert (head.in_dim, head.out_dim, head.kind, head.name) == (384, 384, "state", "rotation")
    assert head(torch.zeros(2, 5, 384)).shape == (2, 5, 384, 2)


def test_offset_is_not_dead(gen: torch.Generator) -> None:
    d = 16
    a, b = _unit(gen, d), _unit(gen, d)
    head = RotationHead(d)
    with torch.no_grad():
        before = log_fidelity(head(a), head(b))
        head.mu.fill_(0.1)
        after = log_fidelity(head(a), head(b))
        assert not torch.allclose(before, after, atol=1e-4)
        assert torch.allclose(log_fidelity(head(a), head(a)), torch.zeros(()), atol=1e-6)


def test_gradients_reach_tau_and_offset(gen: torch.Generator) -> None:
    d = 5
    head = RotationHead(d).double()
    with torch.no_grad():  # away from the initial point so every entry is generic
        head.mu.copy_(0.1 * torch.randn(d, generator=gen, dtype=torch.float64))
        head.log_tau.add_(0.2 * torch.randn(d, generator=gen, dtype=torch.float64))
    a, b = _unit(gen, 3, d, dtype=torch.float64), _unit(gen, 3, d, dtype=torch.float64)

    def score(log_tau: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(head, {"log_tau": log_tau, "mu": mu}, (torch.cat([a, b]),))
        return log_fidelity(out[:3], out[3:])

    params = (head.log_tau.detach().clone().requires_grad_(), head.mu.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(score, params)
    log_fidelity(head(a), head(b)).sum().backward()
    assert head.log_tau.grad is not None and head.log_tau.grad.abs().min() > 0
    assert head.mu.grad is not None and head.mu.grad.abs().min() > 0


def test_save_load_round_trip(tmp_path: Path, gen: torch.Generator) -> None:
    head = RotationHead(12, tau=0.3)
    with torch.no_grad():
        head.mu.copy_(0.05 * torch.randn(12, generator=gen))
        head.log_tau.add_(0.1 * torch.randn(12, generator=gen))
    save_head(head, tmp_path / "rot")
    cfg = json.loads((tmp_path / "rot" / "config.json").read_text())
    assert (
        cfg["head"] == "rotation" and cfg["config"] == {"in_dim": 12, "tau": 0.3} and cfg["parameters"] == 24
    )
    loaded = load_head(tmp_path / "rot", in_dim=12)
    assert isinstance(loaded, RotationHead)
    u = _unit(gen, 4, 12)
    assert torch.equal(loaded(u), head.eval()(u))


def test_trainer_builds_it_square_and_bad_tau_is_refused() -> None:
    head = build_head("rotation", 10, 3)
    assert isinstance(head, RotationHead) and head.out_dim == 10
    with pytest.raises(ValueError, match="tau"):
        RotationHead(4, tau=0.0)
