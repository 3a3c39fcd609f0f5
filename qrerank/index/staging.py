"""Chunked, resumable encoding: finished chunks are kept in ``OUT/.staging`` until a publish.

A build encodes its documents ``chunk_size`` at a time. Each finished chunk is written to
``OUT/.staging/<key>.safetensors`` (tensor "embeddings" ``[m, d]`` float32; written to a temp
name, fsynced, renamed, so a chunk file is whole or absent), where ``key`` is a digest of the
encoder's full identity (:func:`~qrerank.embed.cache.cache_key`) and the chunk's texts. A rerun
after a kill or an encoder error finds the finished chunks by key and encodes only the others;
the published index is the same as an uninterrupted build's. A successful publish deletes the
staging folder (so chunks of abandoned builds do not pile up); a second build of the same
``OUT`` running at that moment re-encodes any of its chunks that went with it.

This works without the embedding cache (``--no-cache``, an unwritable cache dir, another
machine's cache); with the cache on, re-encoded chunks are cache hits anyway. Memory: one
chunk of vectors is in memory at a time, and :meth:`Staged.blocks` maps the files back one by one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from qrerank.embed.base import Encoder, ShardedEncoder
from qrerank.embed.cache import cache_key
from qrerank.errors import IndexFormatError, InputError
from qrerank.index.formats import check_finite, map_tensors
from qrerank.index.versions import STAGING

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 4096  # documents per chunk: 6 MB of float32 at d = 384; the unit of resume
PROGRESS_STEP = 256  # texts per encoder call within a chunk, so the progress bar moves


@dataclass
class Staged:
    """The chunk files of one build, in document order, and how many were encoded or reused.

    ``texts`` and ``encoder`` stay with it so that a chunk file removed before it was read back
    (a concurrent build of the same ``OUT`` published and cleared the folder) is encoded again
    instead of failing the build.
    """

    texts: Sequence[str]
    encoder: Encoder
    batch_size: int
    chunks: list[tuple[Path, int, int]] = field(default_factory=list)  # (file, first row, rows)
    encoded: int = 0
    reused: int = 0

    def blocks(self) -> Iterator[np.ndarray]:
        """The chunks' ``[m, d]`` float32 vectors, one memory-mapped file at a time."""
        dim = self.encoder.dim
        for path, start, rows in self.chunks:
            try:
                yield _read_chunk(path, rows, dim)
                continue
            except (IndexFormatError, OSError) as exc:
                log.warning("staged chunk %s cannot be read back (%s); encoding it again", path, exc)
            yield _encode(self.encoder, self.texts[start : start + rows], self.batch_size)


def clear_staging(out: Path) -> None:
    """Remove ``out/.staging`` after a publish: chunks of abandoned builds go with it."""
    shutil.rmtree(out / STAGING, ignore_errors=True)


def chunk_key(identity: str, texts: Sequence[str]) -> str:
    """Digest of the encoder identity and a chunk's texts (each length-prefixed, so unambiguous)."""
    h = hashlib.sha256(identity.encode("utf-8", "surrogatepass"))
    for t in texts:
        raw = t.encode("utf-8", "surrogatepass")
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    return h.hexdigest()[:32]


def _read_chunk(path: Path, rows: int, dim: int) -> np.ndarray:
    vectors = map_tensors(path, {"embeddings": ((rows, dim), "F32")})["embeddings"]
    check_finite(path, "embeddings", vectors)
    return vectors


def _reusable(path: Path, rows: int, dim: int) -> bool:
    if not path.is_file():
        return False
    try:
        _read_chunk(path, rows, dim)
    except (IndexFormatError, OSError) as exc:
        log.warning("staged chunk %s is unusable (%s); encoding it again", path, exc)
        return False
    return True


def _is_sharded(encoder: Encoder) -> bool:
    """A sharded encoder (Ray), also inside a CachedEncoder: each call is a job with a fixed cost."""
    return isinstance(encoder, ShardedEncoder) or isinstance(
        getattr(encoder, "encoder", None), ShardedEncoder
    )


def _encode(encoder: Encoder, texts: Sequence[str], batch_size: int, bar: Any = None) -> np.ndarray:
    """``[len(texts), dim]`` float32 from ``encoder``; InputError for a wrong shape or non-finite values.

    With a progress ``bar``, a local encoder gets the texts PROGRESS_STEP at a time so the bar
    (rate, ETA) moves within a chunk; a sharded one gets the chunk in one call.
    """
    step = len(texts) if bar is None or _is_sharded(encoder) else max(PROGRESS_STEP, batch_size)
    parts = []
    for i in range(0, len(texts), step):
        part = texts[i : i + step]
        parts.append(
            np.asarray(encoder.encode(part, batch_size=batch_size, show_progress=False), dtype=np.float32)
        )
        if bar is not None:
            bar.update(len(part))
    vectors = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if vectors.shape != (len(texts), encoder.dim) or not np.isfinite(vectors).all():
        raise InputError(
            f"encoder {encoder.name} returned {vectors.shape} vectors (finite: "
            f"{bool(np.isfinite(vectors).all())}) for {len(texts)} texts, expected [{len(texts)}, {encoder.dim}]"
        )
    return vectors


def _save_chunk(path: Path, vectors: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        save_file({"embeddings": np.ascontiguousarray(vectors, dtype=np.float32)}, str(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def encode_staged(
    texts: Sequence[str],
    encoder: Encoder,
    out: Path,
    *,
    batch_size: int = 64,
    chunk_size: int = DEFAULT_CHUNK,
    show_progress: bool = False,
) -> Staged:
    """Encode ``texts`` chunk by chunk into ``out/.staging``, reusing chunks already there.

    The progress bar counts documents (rate and ETA); resumed chunks are counted at once.
    An encoder that returns the wrong shape or non-finite values is an InputError naming it.
    """
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
    stage = out / STAGING
    stage.mkdir(parents=True, exist_ok=True)
    identity = cache_key(encoder)
    staged = Staged(texts, encoder, batch_size)
    with tqdm(total=len(texts), desc=f"encode {encoder.name}", unit="doc", disable=not show_progress) as bar:
        for start in range(0, len(texts), chunk_size):
            chunk = texts[start : start + chunk_size]
            path = stage / f"{chunk_key(identity, chunk)}.safetensors"
            if _reusable(path, len(chunk), encoder.dim):
                staged.reused += len(chunk)
                bar.update(len(chunk))
            else:
                _save_chunk(path, _encode(encoder, chunk, batch_size, bar))  # moves the bar
                staged.encoded += len(chunk)
            staged.chunks.append((path, start, len(chunk)))
            if staged.reused:
                bar.set_postfix(resumed=staged.reused, refresh=False)
    if staged.reused:
        log.info("resumed %d of %d documents from %s", staged.reused, len(texts), stage)
    return staged
