"""Pure-tensor core: Bloch encoding, separable-state fidelity, score fusion and trainable heads.

Everything here imports only torch, takes batched tensors and returns tensors; no I/O, no model
loading, no device guessing. Product states of n qubits are tensors of shape ``[..., n, 2]``
(real or complex amplitudes of |0> and |1> per qubit).
"""

from qrerank.core.angles import AngleHead
from qrerank.core.compression import QuantumCompressionHead
from qrerank.core.encoding import bloch_angles, bloch_states, default_tau
from qrerank.core.fidelity import (
    log_fidelity,
    log_fidelity_angles,
    log_fidelity_angles_matrix,
    log_fidelity_matrix,
)
from qrerank.core.fusion import hybrid_scores
from qrerank.core.head import BlochHead, Head, IdentityHead
from qrerank.core.linear import LinearHead
from qrerank.core.rotation import RotationHead
from qrerank.core.similarity import cosine_matrix, similarity_matrix

__all__ = [
    "AngleHead",
    "BlochHead",
    "Head",
    "IdentityHead",
    "LinearHead",
    "QuantumCompressionHead",
    "RotationHead",
    "bloch_angles",
    "bloch_states",
    "cosine_matrix",
    "default_tau",
    "hybrid_scores",
    "log_fidelity",
    "log_fidelity_angles",
    "log_fidelity_angles_matrix",
    "log_fidelity_matrix",
    "similarity_matrix",
]
