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

Which inputs reach which output. Output qubit i is built from input dimensions
i, i + k, ..., i + (m-1) k only (one qubit per block, same position): the cascade never mixes
positions, so 384 -> 128 gives each output qubit 3 of the 384 dimensions, and changing one input
dimension moves exactly one output qubit. ``mixing="orthogonal"`` (the ``qbec-mix`` kind) first
rotates the embedding by a fixed random orthogonal matrix R (``[d, d]``, no parameters):

    u -> u R,   R = Q diag(sign(diag(r))),   Q r = G,   G_ij ~ N(0, 1) drawn from ``mixing_seed``

so each rotated coordinate is a combination of every input dimension and each output qubit
depends on all of them. R is orthogonal, so |u R| = |u| and the per-coordinate scale that
``default_tau`` assumes (1/sqrt d for a unit vector) is unchanged. The sign fix makes Q unique
(Haar-distributed and the same on every platform's QR); R is a buffer, saved with the weights, so
a loaded head uses the exact matrix it was trained with.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import nn

from qrerank.core.encoding import bloch_angles, bloch_states, default_tau
from qrerank.core.head import Head, LearnableTau

# sqrt'(p) = 1/(2 sqrt p) is infinite at p = 0: clamp so a fully measured qubit keeps a finite grad.
_P_MIN = 1e-12

Mixing = Literal["none", "orthogonal"]
MIXINGS: tuple[str, ...] = get_args(Mixing)


def random_orthogonal(dim: int, seed: int) -> torch.Tensor:
    """``[dim, dim]`` float32 Haar-random orthogonal matrix, the same for the same ``seed``.

    QR of a float64 Gaussian drawn on the CPU from its own generator (the global RNG is left
    alone), each column's sign flipped where the QR's r_jj is negative, so R is unique.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    g = torch.randn(dim, dim, generator=gen, dtype=torch.float64, device="cpu")
    q, r = torch.linalg.qr(g)
    signs = torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(torch.float64)
    rotation: torch.Tensor = (q * signs).float()  # column j of Q times the sign of r_jj
    return rotation


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
    """QBEC: ``[..., in_dim]`` embeddings -> ``[..., out_dim, 2]`` separable real qubit states.

    Args:
        in_dim: embedding dimension d.
        out_dim: output qubits k (< d).
        tau: initial Bloch temperature (default 1/sqrt(d)).
        learn_tau: whether tau trains.
        init_std: std of the raw gate parameters at initialisation.
        mixing: ``"none"`` (the paper's head) or ``"orthogonal"`` (a fixed random rotation of
            the embedding first, so every output qubit sees every input dimension); None: the
            kind's ``default_mixing``.
        mixing_seed: seed of the rotation (``mixing="orthogonal"`` only).
    """

    name = "qbec"
    kind = "state"
    default_mixing: ClassVar[Mixing] = "none"  # what ``mixing=None`` means for this kind
    rotation: torch.Tensor | None  # [in_dim, in_dim] buffer R, None without mixing

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        tau: float | None = None,
        learn_tau: bool = True,
        init_std: float = 0.1,
        mixing: Mixing | str | None = None,
        mixing_seed: int = 0,
    ) -> None:
        super().__init__()
        mixing = self.default_mixing if mixing is None else mixing
        if out_dim <= 0 or in_dim <= out_dim:
            raise ValueError(f"compression needs in_dim > out_dim > 0, got {in_dim} -> {out_dim}")
        if mixing not in MIXINGS:
            raise ValueError(f"unknown mixing {mixing!r}; choose one of {', '.join(MIXINGS)}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.n_blocks = math.ceil(in_dim / out_dim)
        self.tau = LearnableTau(tau if tau is not None else default_tau(in_dim), learn_tau)
        self._learn_tau, self._init_std = learn_tau, init_std
        self.mixing, self.mixing_seed = str(mixing), mixing_seed
        # raw[step, gate (control, target, controlled), position, (a, b, c, d)]
        self.raw = nn.Parameter(init_std * torch.randn(self.n_blocks - 1, 3, out_dim, 4))
        rotation = None
        if mixing == "orthogonal":
            # Under torch.device("meta") (load_head's shape check) only the shape is needed:
            # no d x d QR before the config's size has been checked.
            meta = torch.empty(0).device.type == "meta"
            rotation = torch.empty(in_dim, in_dim) if meta else random_orthogonal(in_dim, mixing_seed)
        # a None buffer is left out of state_dict: an unmixed head saves exactly what it did before
        self.register_buffer("rotation", rotation)

    def mix(self, u: torch.Tensor) -> torch.Tensor:
        """``[..., in_dim] -> [..., in_dim]``: ``u R`` with ``mixing="orthogonal"``, else ``u`` itself."""
        return u if self.rotation is None else u @ self.rotation.to(u.dtype)

    def gates(self) -> torch.Tensor:
        """``[steps, 3, out_dim, 2, 2]`` complex unitaries."""
        return su2(squash(self.raw))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.shape[-1] != self.in_dim:
            raise ValueError(f"expected last dim {self.in_dim}, got {u.shape[-1]}")
        u = self.mix(u)
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
            "mixing": self.mixing,
            "mixing_seed": self.mixing_seed,
        }


class MixingCompressionHead(QuantumCompressionHead):
    """``qbec-mix``: QBEC after a fixed random orthogonal rotation (``mixing="orthogonal"``).

    The same head and cascade as ``qbec`` (the same ~3k parameters for 384 -> 128; R is a
    buffer, not a parameter); only the default of ``mixing`` differs, so ``--head qbec-mix``
    trains it and its config.json reloads as this kind.
    """

    name = "qbec-mix"
    default_mixing = "orthogonal"
