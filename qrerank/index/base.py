"""The vector-index protocol; its implementations, and where each index kind is built.

``exact.ExactIndex`` (brute force, the ground truth in tests), ``matrix.MatrixIndex`` (the
``flat`` and ``exact`` kinds: the stored embeddings searched in place) and ``faiss.FaissIndex``,
which builds each FAISS kind through the registry ``faiss.FAISS_KINDS`` (kind -> factory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VectorIndex(Protocol):
    """Inner-product top-k search over row vectors (callers normalise for cosine)."""

    kind: str
    dim: int

    @property
    def ntotal(self) -> int: ...

    def add(self, vectors: np.ndarray) -> None:
        """Append ``[n, dim]`` float32 rows; row ids continue from ``ntotal``."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``[Q, dim]`` -> (scores ``[Q, k']``, row ids ``[Q, k']``), k' = min(k, ntotal), best first."""

    def save(self, path: Path) -> None: ...


def check_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Validate ``[n, dim]`` and return a C-contiguous float32 copy-or-view."""
    arr = np.asarray(vectors)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"expected vectors of shape [n, {dim}], got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("vectors contain NaN or inf")
    return np.ascontiguousarray(arr, dtype=np.float32)
