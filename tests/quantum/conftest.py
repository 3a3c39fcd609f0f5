"""Seeded float64 inputs shared by the quantum adapter tests."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch


def random_angles(n: int, n_docs: int, seed: int, spread: float = 1.0) -> tuple[torch.Tensor, ...]:
    """Query ``[n]`` and documents ``[D, n]`` polar angles around pi/2, in (0, pi), float64.

    ``spread`` < 1 keeps documents near the query so fidelities stay well above shot noise.
    """
    g = torch.Generator().manual_seed(seed)
    theta_q = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    noise = spread * (torch.rand(n_docs, n, generator=g, dtype=torch.float64) - 0.5) * math.pi
    theta_d = (theta_q + noise).clamp(1e-3, math.pi - 1e-3)
    return theta_q, theta_d


def random_gammas(n: int, n_docs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64),
        2 * math.pi * torch.rand(n_docs, n, generator=g, dtype=torch.float64),
    )


AnglesFactory = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@pytest.fixture
def make_angles() -> AnglesFactory:
    """``make_angles(n, n_docs, seed, spread=1.0)`` -> (theta_q [n], theta_d [D, n])."""
    return random_angles


@pytest.fixture
def make_gammas() -> AnglesFactory:
    """``make_gammas(n, n_docs, seed)`` -> (gamma_q [n], gamma_d [D, n])."""
    return random_gammas


@pytest.fixture
def vectors() -> tuple[torch.Tensor, torch.Tensor]:
    """A unit query ``[12]`` and 6 unit documents ``[6, 12]``, float64."""
    g = torch.Generator().manual_seed(7)
    q = torch.nn.functional.normalize(torch.randn(12, generator=g, dtype=torch.float64), dim=0)
    d = torch.nn.functional.normalize(torch.randn(6, 12, generator=g, dtype=torch.float64), dim=1)
    return q, d
