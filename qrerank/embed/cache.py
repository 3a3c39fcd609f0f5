"""On-disk embedding cache, keyed by encoder name and text, so nothing is encoded twice.

One SQLite file per encoder name under the cache dir; rows map sha256(text) to float32 bytes.
SQLite gives atomic commits and safe concurrent readers for free.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from qrerank.embed.base import Encoder


def default_cache_dir() -> Path:
    """``$QRERANK_CACHE_DIR`` or ``~/.cache/qrerank``."""
    return Path(os.environ.get("QRERANK_CACHE_DIR") or Path.home() / ".cache" / "qrerank")


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Persistent map text -> vector for one encoder ``name`` and ``dim``."""

    def __init__(self, name: str, dim: int, cache_dir: str | os.PathLike[str] | None = None):
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        root = root / "embeddings"
        root.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:120]
        self.path = root / f"{slug}.sqlite"
        self.dim = dim
        self._conn = sqlite3.connect(self.path, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")
        self._conn.commit()

    def get_many(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Cached vectors (or None) in the order of ``texts``."""
        keys = [_key(t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        for i in range(0, len(keys), 900):  # SQLite caps bound parameters per statement
            chunk = keys[i : i + 900]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._conn.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk):
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == self.dim:
                    found[key] = vec
        return [found.get(k) for k in keys]

    def put_many(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        rows = [
            (_key(t), np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for t, v in zip(texts, vectors, strict=True)
        ]
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM emb").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


class CachedEncoder:
    """An Encoder that looks texts up in an EmbeddingCache and encodes only the misses."""

    def __init__(self, encoder: Encoder, cache: EmbeddingCache | None = None, chunk_size: int = 512) -> None:
        self.encoder = encoder
        self.chunk_size = chunk_size
        self.cache = cache if cache is not None else EmbeddingCache(encoder.name, encoder.dim)
        self.name, self.dim, self.normalized = encoder.name, encoder.dim, encoder.normalized

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        cached = self.cache.get_many(texts)
        missing = [i for i, v in enumerate(cached) if v is None]
        for i, v in enumerate(cached):
            if v is not None:
                out[i] = v
        if missing:
            # Encode each distinct missing text once, even if it repeats in the input, and commit
            # to the cache chunk by chunk so an interrupted long job keeps what it encoded.
            unique = list(dict.fromkeys(texts[i] for i in missing))
            lookup: dict[str, np.ndarray] = {}
            with tqdm(
                total=len(unique), desc=f"encode {self.name}", unit="text", disable=not show_progress
            ) as bar:
                for start in range(0, len(unique), self.chunk_size):
                    chunk = unique[start : start + self.chunk_size]
                    vecs = self.encoder.encode(chunk, batch_size=batch_size, show_progress=False)
                    self.cache.put_many(chunk, vecs)
                    lookup.update(zip(chunk, vecs, strict=True))
                    bar.update(len(chunk))
            for i in missing:
                out[i] = lookup[texts[i]]
        return out
