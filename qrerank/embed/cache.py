"""On-disk embedding cache, keyed by encoder identity and text, so nothing is encoded twice.

One SQLite file per encoder identity under the cache dir; rows map sha256(text) to float32 bytes.
SQLite gives atomic commits and safe concurrent readers for free. The file name is a readable
label plus a digest of the full identity (:func:`cache_key`), so two models never share a file.

The cache is only an accelerator: a corrupt file or entry is a miss (re-encoded, rewritten,
logged as a warning), and a cache that cannot be written is skipped, never a failed command.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from qrerank.embed.base import CacheIdentity, Encoder, ShardedEncoder

log = logging.getLogger(__name__)

_SCHEMA = "CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)"
# SQLite primary result codes that mean "this file is damaged", not "busy" or "disk full".
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def default_cache_dir() -> Path:
    """``$QRERANK_CACHE_DIR`` or ``~/.cache/qrerank``."""
    return Path(os.environ.get("QRERANK_CACHE_DIR") or Path.home() / ".cache" / "qrerank")


def cache_key(encoder: Encoder) -> str:
    """Canonical JSON of everything ``encoder``'s vectors depend on (see :class:`CacheIdentity`)."""
    if isinstance(encoder, CacheIdentity):
        identity = encoder.cache_identity()
    else:
        identity = {"name": encoder.name, "dim": encoder.dim, "normalized": bool(encoder.normalized)}
    return json.dumps(identity, sort_keys=True, default=str)


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _is_corrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # very old sqlite3 module: plain DatabaseError is how corruption shows
        return type(exc) is sqlite3.DatabaseError
    return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def file_label(name: str) -> str:
    """A short file-name-safe label: the last path component of ``name``, for humans only."""
    tail = name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", tail).strip("._")[:60] or "encoder"


class EmbeddingCache:
    """Persistent map text -> vector for one encoder identity ``name`` and ``dim``.

    ``name`` may be any string (prefer :func:`cache_key`, via :meth:`for_encoder`); the file is
    named by its sha256, so names that differ in any character (``org/m`` vs ``org_m``) never
    share a file. ``label`` only makes the file name readable.
    """

    def __init__(
        self,
        name: str,
        dim: int,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        label: str | None = None,
    ) -> None:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        root = root / "embeddings"
        root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(f"{name}\0{dim}".encode("utf-8", "surrogatepass")).hexdigest()[:24]
        self.path = root / f"{file_label(label if label is not None else name)}-{digest}.sqlite"
        self.dim = dim
        self._write_failed = False
        self._conn = self._open()

    @classmethod
    def for_encoder(cls, encoder: Encoder, cache_dir: str | os.PathLike[str] | None = None) -> EmbeddingCache:
        """The cache file of ``encoder``'s full identity (:func:`cache_key`)."""
        return cls(cache_key(encoder), encoder.dim, cache_dir, label=encoder.name)

    def _open(self, *, retry: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            conn.commit()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if not (retry and _is_corrupt(exc)):
                raise
            log.warning("embedding cache %s is corrupt (%s); starting it afresh", self.path, exc)
            self._replace_with_empty()
            return self._open(retry=False)
        return conn

    def _replace_with_empty(self) -> None:
        """Swap a damaged file for an empty database in one rename (readers see old or new)."""
        tmp = self.path.with_name(f".{self.path.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            conn = sqlite3.connect(tmp)
            try:
                conn.execute(_SCHEMA)
                conn.commit()
            finally:
                conn.close()
            # A stale write-ahead log of the damaged file must not be replayed into the new one.
            for side in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.path}{side}")
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _recover(self, exc: sqlite3.Error) -> None:
        """Reopen on an empty file after ``exc`` showed the current one to be damaged."""
        log.warning("embedding cache %s is corrupt (%s); starting it afresh", self.path, exc)
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        self._replace_with_empty()
        self._conn = self._open(retry=False)

    def get_many(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Cached vectors (or None) in the order of ``texts``; damaged entries are misses."""
        keys = [_key(t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        bad = 0
        try:
            for i in range(0, len(keys), 900):  # SQLite caps bound parameters per statement
                chunk = keys[i : i + 900]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk)
                for key, blob in rows:
                    vec = self._decode(blob)
                    if vec is None:
                        bad += 1
                    else:
                        found[key] = vec
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                self._recover(exc)
            else:  # locked for longer than the timeout, I/O error: encode instead
                log.warning("embedding cache %s not read (%s); encoding instead", self.path, exc)
            return [None] * len(keys)
        if bad:
            log.warning("embedding cache %s: %d damaged entries, re-encoding them", self.path, bad)
        return [found.get(k) for k in keys]

    def _decode(self, blob: object) -> np.ndarray | None:
        """The stored vector, or None when the bytes cannot be one of this cache's vectors."""
        if not isinstance(blob, bytes) or len(blob) != 4 * self.dim:
            return None
        vec = np.frombuffer(blob, dtype=np.float32)
        return vec if np.isfinite(vec).all() else None

    def put_many(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store (or overwrite) vectors in one transaction; a failed write only logs a warning."""
        if self._write_failed:
            return
        rows = [
            (_key(t), np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for t, v in zip(texts, vectors, strict=True)
        ]
        for attempt in (1, 2):
            try:
                with self._conn:
                    self._conn.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)", rows)
                return
            except sqlite3.DatabaseError as exc:
                if attempt == 1 and _is_corrupt(exc):
                    self._recover(exc)
                    continue
                # Disk full, read-only or locked too long: the vectors are still returned.
                log.warning("embedding cache %s not written (%s); continuing without it", self.path, exc)
                self._write_failed = True
                return

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM emb").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


class CachedEncoder:
    """An Encoder that looks texts up in an EmbeddingCache and encodes only the misses."""

    def __init__(self, encoder: Encoder, cache: EmbeddingCache | None = None, chunk_size: int = 512) -> None:
        self.encoder = encoder
        self.chunk_size = chunk_size
        self.cache = cache if cache is not None else EmbeddingCache.for_encoder(encoder)
        self.name, self.dim, self.normalized = encoder.name, encoder.dim, encoder.normalized
        self.runtime = getattr(encoder, "runtime", None)  # shown through: an index records it

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
            # A sharded encoder (Ray) runs its shards concurrently and hands each over when done.
            shards = (
                self.encoder.encode_shards(unique, batch_size=batch_size)
                if isinstance(self.encoder, ShardedEncoder)
                else self._chunks(unique, batch_size)
            )
            with tqdm(
                total=len(unique), desc=f"encode {self.name}", unit="text", disable=not show_progress
            ) as bar:
                for chunk, vecs in shards:
                    self.cache.put_many(chunk, vecs)
                    lookup.update(zip(chunk, vecs, strict=True))
                    bar.update(len(chunk))
            for i in missing:
                out[i] = lookup[texts[i]]
        return out

    def _chunks(self, texts: list[str], batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """``texts`` encoded ``chunk_size`` at a time, in order."""
        for start in range(0, len(texts), self.chunk_size):
            chunk = texts[start : start + self.chunk_size]
            yield chunk, self.encoder.encode(chunk, batch_size=batch_size, show_progress=False)
