"""The paper's quantum compression head (QBEC, arXiv 2501.04591), re-derived from its math.

Gates. Every trainable single-qubit gate is U = e^{ia} Rz(b) Ry(c) Rz(d), with raw parameters
squashed as 2 pi tanh(p) + 2 pi:

    U = e^{ia} [[ e^{-i(b+d)/2} cos(c/2), -e^{-i(b-d)/2} sin(c/2) ],
                [ e^{ i(b-d)/2} sin(c/2),  e^{ i(b+d)/2} cos(c/2) ]]

Two-qubit step (control c, target t), per qubit position:
    |psi> = diag(I, U_cu) (U_c|c> (x) U_t|t>)
    p_j   = |psi_0j|^2 + |psi_1j|^2 = |c'_0|^2 |t'_j|^2 + |c'_1|^2 |(U_cu t')_j|^2
with c' = U_c c, t' = U_t t. Measuring the target and re-encoding it as the real qubit
[sqrt(p_0), sqrt(p_1)] keeps the output separable, so fidelity stays a per-qubit product.
The closed form above needs no 4-dim statevector; tests check it against the explicit
kron/controlled-gate construction.

Cascade d -> k: the Bloch-encoded input (zero-padded to m = ceil(d/k) blocks of k qubits) is
split into blocks B_0..B_{m-1}; the last block controls the one before it, whose result
controls the next, down to block 0, which is the output. For 768 -> 256 (blocks a, b, c):
c controls b, the new b controls a. Parameters: (m-1) steps x 3 gates x 4 x k = 6,144.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from qrerank.core.encoding import bloch_angles, bloch_states, default_tau
from qrerank.core.head import Head, LearnableTau

# sqrt'(p) = 1/(2 sqrt p) is infinite at p = 0: clamp so a fully measured qubit keeps a finite grad.
_P_MIN = 1e-12


def squash(p: torch.Tensor) -> torch.Tensor:
    """Raw parameter -> angle in (0, 4 pi): 2 pi tanh(p) + 2 pi."""
    return 2 * math.pi * torch.tanh(p) + 2 * math.pi


def su2(angles: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` angles (a, b, c, d) -> ``[..., 2, 2]`` complex U = e^{ia} Rz(b) Ry(c) Rz(d)."""
    a, b, c, d = angles.unbind(dim=-1)
    cos, sin = torch.cos(c / 2), torch.sin(c / 2)
    s, t = (b + d) / 2, (b - d) / 2
    one = torch.ones_like(cos)
    u00 = torch.polar(cos, a - s)
    u01 = torch.polar(-sin * one, a - t)
    u10 = torch.polar(sin * one, a + t)
    u11 = torch.polar(cos, a + s)
    return torch.stack((torch.stack((u00, u01), -1), torch.stack((u10, u11), -1)), -2)


def apply_gate(u: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """Per-position gate ``[n, 2, 2]`` on states ``[..., n, 2]`` -> ``[..., n, 2]`` complex."""
    return torch.einsum("nij,...nj->...ni", u, state.to(u.dtype))


def controlled_step(
    control: torch.Tensor,
    target: torch.Tensor,
    u_c: torch.Tensor,
    u_t: torch.Tensor,
    u_cu: torch.Tensor,
) -> torch.Tensor:
    """One measured two-qubit step per position: ``[..., n, 2] x 2 -> [..., n, 2]`` real target.

    Returns [sqrt(p_0), sqrt(p_1)] of the target's marginal after diag(I, U_cu)(U_c (x) U_t).
    """
    c = apply_gate(u_c, control)
    t = apply_gate(u_t, target)
    t_flipped = apply_gate(u_cu, t)
    pc = c.abs().square()  # [..., n, 2]: probabilities of control |0>, |1>
    p = pc[..., :1] * t.abs().square() + pc[..., 1:] * t_flipped.abs().square()
    return p.clamp(min=_P_MIN).sqrt()


class QuantumCompressionHead(Head):
    """QBEC: ``[..., in_dim]`` embeddings -> ``[..., out_dim, 2]`` separable real qubit states."""

    name = "qbec"
    kind = "state"

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        tau: float | None = None,
        learn_tau: bool = True,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        if out_dim <= 0 or in_dim <= out_dim:
            raise ValueError(f"compression needs in_dim > out_dim > 0, got {in_dim} -> {out_dim}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.n_blocks = math.ceil(in_dim / out_dim)
        self.tau = LearnableTau(tau if tau is not None else default_tau(in_dim), learn_tau)
        self._learn_tau, self._init_std = learn_tau, init_std
        # raw[step, gate (control, target, controlled), position, (a, b, c, d)]
        self.raw = nn.Parameter(init_std * torch.randn(self.n_blocks - 1, 3, out_dim, 4))

    def gates(self) -> torch.Tensor:
        """``[steps, 3, out_dim, 2, 2]`` complex unitaries."""
        return su2(squash(self.raw))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.shape[-1] != self.in_dim:
            raise ValueError(f"expected last dim {self.in_dim}, got {u.shape[-1]}")
        pad = self.n_blocks * self.out_dim - self.in_dim
        if pad:
            # u = 0 encodes to theta = pi/2: an equal superposition, the neutral padding qubit.
            u = torch.nn.functional.pad(u, (0, pad))
        states = bloch_states(bloch_angles(u, self.tau()))
        blocks = torch.unflatten(states, -2, (self.n_blocks, self.out_dim)).unbind(dim=-3)
        gates = self.gates()
        current = blocks[-1]
        for step, j in enumerate(range(self.n_blocks - 2, -1, -1)):
            u_c, u_t, u_cu = gates[step].unbind(0)
            current = controlled_step(current, blocks[j], u_c, u_t, u_cu)
        return current

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "tau": float(self.tau().detach()),
            "learn_tau": self._learn_tau,
            "init_std": self._init_std,
        }
