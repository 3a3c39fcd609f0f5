"""Classical compression baseline (BEC in arXiv 2501.04591): tanh(Linear(d, k)), cosine scored.

768 -> 256 has 768 * 256 + 256 = 196,864 parameters, 32x the quantum head's 6,144.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from qrerank.core.head import Head


class LinearHead(Head):
    """``[..., in_dim] -> [..., out_dim]``: y = tanh(W u + b)."""

    name = "linear"
    kind = "vector"

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"dims must be positive, got {in_dim} -> {out_dim}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(u))

    def get_config_dict(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "out_dim": self.out_dim}
