"""Brute-force inner-product index: no extras, exact, the ground truth for the FAISS backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from qrerank.index.base import check_vectors


class ExactIndex:
    """Exact top-k by matrix product; ties broken by lower row id (stable sort)."""

    kind = "exact"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._vectors = np.zeros((0, dim), dtype=np.float32)

    @property
    def ntotal(self) -> int:
        return int(self._vectors.shape[0])

    def add(self, vectors: np.ndarray) -> None:
        self._vectors = np.concatenate([self._vectors, check_vectors(vectors, self.dim)])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = check_vectors(queries, self.dim)
        k = min(k, self.ntotal)
        scores = q @ self._vectors.T
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, ids, axis=1), ids.astype(np.int64)

    def save(self, path: Path) -> None:
        save_file({"vectors": self._vectors}, str(path))

    @classmethod
    def load(cls, path: Path, dim: int) -> ExactIndex:
        index = cls(dim)
        index.add(load_file(str(path))["vectors"])
        return index
