"""A dependency-free keyword encoder: signed feature hashing of lowercase word tokens.

Deterministic and instant, it is the reference Encoder for tests and a sanity baseline (it
scores lexical overlap, like a crude BM25 without idf).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEncoder:
    """Texts -> ``[n, dim]`` L2-normalised signed token-hash counts."""

    def __init__(self, dim: int = 256, normalized: bool = True) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.normalized = normalized
        self.name = f"hashing-{dim}" + ("" if normalized else "-raw")

    def cache_identity(self) -> dict[str, Any]:
        """Everything the vectors depend on (the token rule is fixed: version 1)."""
        return {"encoder": "hashing", "version": 1, "dim": self.dim, "normalized": self.normalized}

    def _bucket(self, token: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        return h % self.dim, 1.0 if (h >> 63) & 1 else -1.0

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                col, sign = self._bucket(token)
                out[row, col] += sign
        if self.normalized:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.where(norms > 0, norms, 1.0)
        return out
