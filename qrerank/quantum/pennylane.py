"""PennyLane adapter [pennylane]: Bloch and angle-head states as QNodes, fidelity by simulation.

Wire i holds dimension i; PennyLane orders basis states big-endian (wire 0 is the most
significant bit), so ``qml.state()`` is kron(s_0, ..., s_{n-1}).

* Bloch encoding: RY(theta) then PhaseShift(pi): [cos(theta/2), -sin(theta/2)], exactly
  ``core.bloch_states``. Angle head: RY(theta) then RZ(gamma), exactly ``rotation_states``.
* Fidelity: compute-uncompute, F = <0...0| U_b^dagger U_a |0...0> measured as the expectation of
  the projector |0...0><0...0|; with ``shots`` that expectation is the frequency of 0...0.
  Inputs are broadcast over documents, so one QNode call scores a whole block of candidates.
* Differentiation: ``backprop`` on default.qubit, ``adjoint`` on lightning.qubit (neither
  supports shots); with shots, ``parameter-shift`` (unbatched inputs only).
* Optional entanglement (``entangle_layers > 0``): |psi> = R(theta, gamma) W R(theta, gamma)|0>
  with W = ``StronglyEntanglingLayers`` (trainable). A W applied only after the encoding would
  cancel in <a|W^dagger W|b>, so the encoding is uploaded twice around it. The state is then
  entangled: F no longer factorises over qubits, there is no closed form and no blockwise
  simulation, and the head must fit one statevector (``MAX_QUBITS``).

Sizes: default.qubit holds 2^b amplitudes per broadcast row (D documents x 16 * 2^b bytes);
lightning.qubit unrolls the broadcast and its dense |0...0><0...0| observable costs 4^b, so keep
its blocks <= ~10 qubits. Separable scoring is blockwise (``product.blocks``), so any n works.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from qrerank._optional import require
from qrerank.core.angles import AngleHead
from qrerank.quantum.product import (
    DEFAULT_BLOCK,
    FLOOR,
    MAX_BLOCK,
    ShotEstimate,
    bernoulli_variance,
    blocks,
    check_pair,
    check_shots,
    combine_blocks,
)

logger = logging.getLogger(__name__)

EXTRA = "pennylane"
DEVICES: tuple[str, ...] = ("default.qubit", "lightning.qubit")
MAX_QUBITS = MAX_BLOCK


def _qml() -> Any:
    return require("pennylane", EXTRA)


def make_device(name: str, n_qubits: int, seed: int | None = None) -> Any:
    """A PennyLane device from ``DEVICES``; ``seed`` fixes its shot sampling."""
    if name not in DEVICES:
        raise ValueError(f"unknown PennyLane device {name!r}; choose one of {', '.join(DEVICES)}")
    qml = _qml()
    if name == "lightning.qubit":
        # lightning.qubit is a separate package: fail naming the extra, not with a plugin error.
        require("pennylane_lightning", EXTRA)
    return qml.device(name, wires=n_qubits, seed=seed)


def prepare(theta: torch.Tensor, gamma: torch.Tensor | None, wires: range) -> None:
    """Queue RY(theta_i) then PhaseShift(pi) (gamma None: Bloch) or RZ(gamma_i) on each wire.

    ``theta``/``gamma`` are ``[..., n]``; leading dims broadcast into batched gate parameters.
    """
    qml = _qml()
    for i, w in enumerate(wires):
        qml.RY(theta[..., i], wires=w)
        if gamma is None:
            qml.PhaseShift(math.pi, wires=w)
        else:
            qml.RZ(gamma[..., i], wires=w)


def _encode(
    theta: torch.Tensor, gamma: torch.Tensor | None, weights: torch.Tensor | None, wires: range
) -> None:
    prepare(theta, gamma, wires)
    if weights is not None:
        _qml().StronglyEntanglingLayers(weights, wires=wires)
        prepare(theta, gamma, wires)


def _diff_method(device: str, shots: int | None) -> str:
    if shots is not None:
        return "parameter-shift"
    return "adjoint" if device == "lightning.qubit" else "backprop"


def state_qnode(n_qubits: int, device: str = "default.qubit") -> Callable[..., torch.Tensor]:
    """QNode ``(theta [..., n], gamma [..., n] | None, weights | None) -> [..., 2^n]`` complex."""
    qml = _qml()
    wires = range(n_qubits)

    def circuit(
        theta: torch.Tensor, gamma: torch.Tensor | None = None, weights: torch.Tensor | None = None
    ) -> Any:
        _encode(theta, gamma, weights, wires)
        return qml.state()

    # Adjoint differentiation covers expectation values only: a state is differentiable on
    # default.qubit (backprop) and forward-only on lightning.qubit.
    diff_method = "backprop" if device == "default.qubit" else None
    return qml.QNode(circuit, make_device(device, n_qubits), interface="torch", diff_method=diff_method)


def fidelity_qnode(
    n_qubits: int,
    device: str = "default.qubit",
    bloch: bool = True,
    entangle_layers: int = 0,
    shots: int | None = None,
    seed: int | None = None,
) -> Callable[..., torch.Tensor]:
    """Compute-uncompute QNode ``(inputs[, weights]) -> [...]`` fidelity, TorchLayer-compatible.

    ``inputs`` is ``[..., 2n]`` = (theta_a, theta_b) when ``bloch`` else ``[..., 4n]`` =
    (theta_a, gamma_a, theta_b, gamma_b); ``weights`` ([layers, n, 3]) only when entangled.
    """
    qml = _qml()
    wires = range(n_qubits)
    if shots is not None:
        check_shots(shots)

    def split(inputs: torch.Tensor) -> tuple[Any, Any, Any, Any]:
        parts = inputs.split(n_qubits, dim=-1)
        if bloch:
            return parts[0], None, parts[1], None
        return parts[0], parts[1], parts[2], parts[3]

    def overlap(inputs: torch.Tensor, weights: torch.Tensor | None) -> Any:
        theta_a, gamma_a, theta_b, gamma_b = split(inputs)
        _encode(theta_a, gamma_a, weights, wires)
        qml.adjoint(_encode)(theta_b, gamma_b, weights, wires)
        return qml.expval(qml.Projector([0] * n_qubits, wires=wires))

    if entangle_layers:

        def circuit(inputs: torch.Tensor, weights: torch.Tensor) -> Any:
            return overlap(inputs, weights)

    else:

        def circuit(inputs: torch.Tensor) -> Any:  # type: ignore[misc]
            return overlap(inputs, None)

    dev = make_device(device, n_qubits, seed)
    return qml.QNode(circuit, dev, interface="torch", diff_method=_diff_method(device, shots), shots=shots)


def _block_fidelities(
    theta_q: torch.Tensor,
    theta_d: torch.Tensor,
    gamma_q: torch.Tensor | None,
    gamma_d: torch.Tensor | None,
    device: str,
    shots: int | None,
    seed: int | None,
    block_size: int,
) -> torch.Tensor:
    """``[D, K]`` per-block fidelities (exact or frequencies), broadcast over the D documents."""
    check_pair(theta_q, theta_d)
    if (gamma_q is None) != (gamma_d is None):
        raise ValueError("give gamma for both query and documents, or for neither")
    n_docs = theta_d.shape[0]
    parts_k = blocks(theta_q.shape[0], block_size)
    logger.debug("%d documents x %d blocks on %s, shots=%s", n_docs, len(parts_k), device, shots)
    qnodes: dict[int, Callable[..., torch.Tensor]] = {}
    columns = []
    for k, blk in enumerate(parts_k):
        width = blk.stop - blk.start
        if shots is not None or width not in qnodes:
            # A fresh seed per block keeps the blocks' shot noise independent, so the product
            # of block estimates stays unbiased.
            block_seed = None if seed is None else seed + k
            qnodes[width] = fidelity_qnode(width, device, bloch=gamma_q is None, shots=shots, seed=block_seed)
        parts = [theta_q[blk].expand(n_docs, width)]
        if gamma_q is not None and gamma_d is not None:
            parts.append(gamma_q[blk].expand(n_docs, width))
            parts += [theta_d[:, blk], gamma_d[:, blk]]
        else:
            parts.append(theta_d[:, blk])
        columns.append(qnodes[width](torch.cat(parts, dim=-1)).reshape(n_docs))
    return torch.stack(columns, dim=-1)


def log_fidelity(
    theta_q: torch.Tensor,
    theta_d: torch.Tensor,
    gamma_q: torch.Tensor | None = None,
    gamma_d: torch.Tensor | None = None,
    device: str = "default.qubit",
    block_size: int = DEFAULT_BLOCK,
) -> torch.Tensor:
    """Exact, differentiable log |<q|d>|^2 by simulation: ``[n] x [D, n] -> [D]``.

    Bloch states when ``gamma_*`` is None, angle-head states otherwise; each block's fidelity
    is floored at ``FLOOR`` before the log.
    """
    f = _block_fidelities(theta_q, theta_d, gamma_q, gamma_d, device, None, None, block_size)
    return f.clamp(min=FLOOR).log().sum(dim=-1)


def estimate_fidelity(
    theta_q: torch.Tensor,
    theta_d: torch.Tensor,
    shots: int,
    gamma_q: torch.Tensor | None = None,
    gamma_d: torch.Tensor | None = None,
    device: str = "default.qubit",
    seed: int | None = None,
    block_size: int = DEFAULT_BLOCK,
) -> ShotEstimate:
    """Shot estimate of |<q|d>|^2, ``[D]``: per block the frequency of 0...0 in ``shots``."""
    check_shots(shots)
    with torch.no_grad():
        p0 = _block_fidelities(theta_q, theta_d, gamma_q, gamma_d, device, shots, seed, block_size).double()
    return combine_blocks(p0, bernoulli_variance(p0, shots), shots)


class PennyLaneAngleHead(nn.Module):
    """An ``AngleHead`` whose fidelity runs as a PennyLane circuit inside a ``TorchLayer``.

    ``forward(u_a, u_b) -> [...]`` log F of the angle-head states of ``[..., in_dim]`` inputs
    (broadcast). Gradients reach the MLP (and the entangler's weights) through the QNode, so
    the pair trains end to end like the closed form
    ``log_fidelity(head(u_a), head(u_b))``, to which it is equal when ``entangle_layers == 0``.
    """

    def __init__(
        self,
        head: AngleHead,
        device: str = "default.qubit",
        entangle_layers: int = 0,
        shots: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if head.out_dim > MAX_QUBITS:
            raise ValueError(
                f"{head.out_dim} qubits do not fit one statevector (max {MAX_QUBITS}); use the "
                "closed form or blockwise log_fidelity for separable states"
            )
        if entangle_layers < 0:
            raise ValueError(f"entangle_layers must be >= 0, got {entangle_layers}")
        qml = _qml()
        self.head, self.device, self.entangle_layers = head, device, entangle_layers
        qnode = fidelity_qnode(head.out_dim, device, False, entangle_layers, shots, seed)
        shapes = (
            {"weights": qml.StronglyEntanglingLayers.shape(entangle_layers, head.out_dim)}
            if entangle_layers
            else {}
        )
        self.circuit = qml.qnn.TorchLayer(qnode, shapes)

    def forward(self, u_a: torch.Tensor, u_b: torch.Tensor) -> torch.Tensor:
        theta_a, gamma_a = self.head.angles(u_a)
        theta_b, gamma_b = self.head.angles(u_b)
        angles = torch.broadcast_tensors(theta_a, gamma_a, theta_b, gamma_b)
        f = self.circuit(torch.cat(angles, dim=-1))
        return f.clamp(min=FLOOR).log()

    def states(self, u: torch.Tensor) -> torch.Tensor:
        """``[..., in_dim] -> [..., 2^n]`` complex statevectors (big-endian).

        Not through the TorchLayer: it casts outputs to the input dtype, dropping imaginary parts.
        """
        weights = getattr(self.circuit, "weights", None) if self.entangle_layers else None
        qnode = state_qnode(self.head.out_dim, self.device)
        return qnode(*self.head.angles(u), weights)
