"""Bloch-sphere encoding of embeddings (arXiv 2501.04591, Sec. 3).

Each dimension u_i becomes one qubit

    theta_i = tanh(u_i / tau) * pi/2 + pi/2,   phi_i = pi
    |u_i>   = cos(theta_i/2) |0> + e^{i phi_i} sin(theta_i/2) |1>
            = cos(theta_i/2) |0> - sin(theta_i/2) |1>        (real amplitudes)

so the n-dimensional embedding is the separable n-qubit state |u_1> (x) ... (x) |u_n>.

The temperature tau sets how far tanh spreads the angles. The paper encodes unnormalised
mean-pooled outputs (|u_i| ~ 0.1..1); unit-normalised embeddings have |u_i| ~ 1/sqrt(d), where
tau = 1 keeps tanh linear and fidelity ranks almost exactly like cosine. ``default_tau`` therefore
scales tau to the embedding's dimension: tau = 1/sqrt(d) gives u_i/tau unit variance for a unit
vector.
"""

from __future__ import annotations

import math

import torch


def default_tau(dim: int) -> float:
    """tau = 1/sqrt(d): u_i / tau has unit variance for a random unit vector in R^d."""
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    return 1.0 / math.sqrt(dim)


def bloch_angles(u: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
    """Polar angles theta = tanh(u / tau) * pi/2 + pi/2, in (0, pi).

    Args:
        u: embeddings ``[..., d]``.
        tau: positive temperature, a float or a tensor broadcastable to ``u`` (learnable).

    Returns:
        ``[..., d]`` angles, same dtype as ``u``.
    """
    if isinstance(tau, (int, float)) and tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    return torch.tanh(u / tau) * (math.pi / 2) + (math.pi / 2)


def bloch_states(theta: torch.Tensor) -> torch.Tensor:
    """Real single-qubit amplitudes for phi = pi: ``[..., d] -> [..., d, 2]``."""
    half = theta / 2
    return torch.stack((torch.cos(half), -torch.sin(half)), dim=-1)
