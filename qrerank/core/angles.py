"""Angle head: an MLP predicting per-qubit rotation angles, simulated as product states.

``[..., in_dim] -> [..., n, 2]`` complex: for each qubit the circuit RY(theta) then RZ(gamma)
on |0>, i.e. the state RZ(gamma) RY(theta)|0> = [e^{-i gamma/2} cos(theta/2),
e^{i gamma/2} sin(theta/2)], with theta = pi * sigmoid(.) in [0, pi] and
gamma = 2 pi * sigmoid(.) in [0, 2 pi]. (Applying RZ first would make gamma a global phase.)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from qrerank.core.head import Head


def rotation_states(theta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``[..., n]`` angles -> ``[..., n, 2]`` complex amplitudes of RZ(gamma) RY(theta)|0>."""
    half = gamma / 2
    return torch.stack(
        (torch.polar(torch.cos(theta / 2), -half), torch.polar(torch.sin(theta / 2), half)), -1
    )


class AngleHead(Head):
    """MLP (Xavier init) -> theta, gamma per qubit -> product state of ``out_dim`` qubits."""

    name = "angle"
    kind = "state"

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512) -> None:
        super().__init__()
        if min(in_dim, out_dim, hidden) <= 0:
            raise ValueError(f"dims must be positive, got {in_dim}, {out_dim}, {hidden}")
        self.in_dim, self.out_dim, self.hidden = in_dim, out_dim, hidden
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 2 * out_dim))
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def angles(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """theta in [0, pi], gamma in [0, 2 pi], each ``[..., out_dim]``."""
        raw_theta, raw_gamma = self.mlp(u).chunk(2, dim=-1)
        return math.pi * torch.sigmoid(raw_theta), 2 * math.pi * torch.sigmoid(raw_gamma)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return rotation_states(*self.angles(u))

    def get_config_dict(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "hidden": self.hidden}
