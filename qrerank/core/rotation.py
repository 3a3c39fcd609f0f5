"""Qubit-wise rotation head: the Bloch encoding with a learned temperature and offset per qubit.

``[..., d] -> [..., d, 2]`` real amplitudes, one qubit per embedding dimension (in_dim == out_dim):

    theta_i = tanh((u_i - mu_i) / tau_i) * pi/2 + pi/2,   phi_i = pi
    |u_i>   = cos(theta_i/2) |0> - sin(theta_i/2) |1>

with 2d parameters: ``log_tau`` ``[d]`` (tau_i = exp(log_tau_i) > 0 whatever the gradient step)
and ``mu`` ``[d]``. Initialised at tau_i = 1/sqrt(d) (``default_tau``) and mu_i = 0, the
untrained head is exactly the parameter-free Bloch encoding of ``qrerank.core.encoding``.

Why the offset sits inside the tanh: fidelity compares two states qubit by qubit,
log F = sum_i log cos^2((theta_a,i - theta_b,i)/2), so an offset added to theta after the tanh
(the same for query and document) cancels in the difference and would be a dead parameter.
Inside the nonlinearity, mu_i moves where on the tanh a dimension's values fall: it changes how
much a difference in u_i costs (tanh is steepest at u_i = mu_i), while tau_i sets how fast the
cost saturates. Each qubit is still rotated independently (a product state), so this is
the paper's per-dimension encoding made learnable, not a projection.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from qrerank.core.encoding import bloch_states, default_tau
from qrerank.core.head import Head


class RotationHead(Head):
    """Per-qubit learned temperature and offset on the Bloch encoding (2d parameters).

    Args:
        in_dim: embedding dimension d (also the number of qubits).
        tau: initial temperature of every qubit (default 1/sqrt(d)); the learned values live in
            the weights (``log_tau``), so this only sets the architecture's starting point.
    """

    name = "rotation"
    kind = "state"

    def __init__(self, in_dim: int, tau: float | None = None) -> None:
        super().__init__()
        if in_dim <= 0:
            raise ValueError(f"in_dim must be positive, got {in_dim}")
        tau0 = default_tau(in_dim) if tau is None else tau
        if not tau0 > 0:
            raise ValueError(f"tau must be positive, got {tau0}")
        self.in_dim = self.out_dim = in_dim
        self._tau0 = float(tau0)
        self.log_tau = nn.Parameter(torch.full((in_dim,), math.log(tau0)))
        self.mu = nn.Parameter(torch.zeros(in_dim))

    def tau(self) -> torch.Tensor:
        """``[d]`` per-qubit temperatures, all positive."""
        return self.log_tau.exp()

    def angles(self, u: torch.Tensor) -> torch.Tensor:
        """``[..., d]`` polar angles theta_i = tanh((u_i - mu_i) / tau_i) pi/2 + pi/2, in (0, pi)."""
        return torch.tanh((u - self.mu) / self.tau()) * (math.pi / 2) + (math.pi / 2)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return bloch_states(self.angles(u))

    def get_config_dict(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "tau": self._tau0}
