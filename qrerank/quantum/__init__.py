"""Circuit backends for the core's states: Qiskit [qiskit] and PennyLane [pennylane].

``score_log_fidelity(query, docs, tau, backend, shots)`` scores with "closed-form" (no extras),
"qiskit" or "pennylane". The adapter modules ``qrerank.quantum.qiskit`` and
``qrerank.quantum.pennylane`` import without their extras; their functions raise ImportError
naming the extra to install. See docs/circuits.md for the circuits and the sizes they handle.
"""

from qrerank.quantum.backends import BACKENDS, Backend, score_log_fidelity
from qrerank.quantum.product import ShotEstimate

__all__ = ["BACKENDS", "Backend", "ShotEstimate", "score_log_fidelity"]
