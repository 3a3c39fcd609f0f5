"""Chunked, resumable encoding: finished chunks are kept in ``OUT/.staging`` until a publish.

A build first streams its documents into ``OUT/.staging/docs-<hex>.sqlite``
(:func:`stage_documents`: one pass over any iterable, ids checked on the way), so that no
later step holds the texts: the encoder, BM25 and the version's own text store read them back
from that file a chunk at a time, and a chunk file lost before it was read back is encoded
again from it. The file goes when the build ends, whether it published or failed; while the
build runs it holds a shared ``flock`` on it, so another build's :func:`clear_staging` leaves it.

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
chunk of texts and vectors is in memory at a time and :meth:`Staged.blocks` maps the files back one
by one; ids are checked by the staging store's UNIQUE index on disk, not by a set in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
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
from qrerank.index.store import DocStore, write_store
from qrerank.index.versions import STAGING
from qrerank.types import Document

log = logging.getLogger(__name__)

_DOCS_FILE = re.compile(r"docs-([0-9a-f]{32})\.sqlite(-journal)?")
DEFAULT_CHUNK = 4096  # documents per chunk: 6 MB of float32 at d = 384; the unit of resume
PROGRESS_STEP = 256  # texts per encoder call within a chunk, so the progress bar moves


@dataclass(frozen=True)
class StagedDocs:
    """The documents of a build, written to a staging store (row i = the i-th document)."""

    store: DocStore
    count: int

    def documents(self, start: int = 0, stop: int | None = None) -> Iterator[Document]:
        """Documents ``start:stop``, read from the file as they are consumed."""
        return self.store.iter_documents(start, stop)

    def contents(self, start: int = 0, stop: int | None = None) -> Iterator[str]:
        """What is encoded and tokenised of documents ``start:stop`` (``Document.content``)."""
        return (d.content for d in self.store.iter_documents(start, stop))

    def reread(self, start: int, rows: int) -> list[str]:
        """The contents of ``rows`` documents from ``start`` (to encode a lost chunk again)."""
        return list(self.contents(start, start + rows))

    def encode(
        self, encoder: Encoder, out: Path, *, batch_size: int, chunk_size: int, show_progress: bool
    ) -> tuple[Staged, float]:
        """These documents' staged embeddings (resuming a killed run's chunks) and the seconds taken."""
        t0 = time.perf_counter()
        staged = encode_staged(
            self.contents(),
            encoder,
            out,
            batch_size=batch_size,
            chunk_size=chunk_size,
            show_progress=show_progress,
            total=self.count,
            texts_of=self.reread,
        )
        return staged, time.perf_counter() - t0


def _counted(docs: Iterable[Document], show_progress: bool) -> Iterator[Document]:
    """``docs`` as they are, with a progress bar of the documents read."""
    with tqdm(desc="read documents", unit="doc", disable=not show_progress, delay=1.0) as bar:
        for d in docs:
            bar.update()
            yield d


def _lock_shared(fd: int) -> None:
    """Mark a staged documents file in use: a shared flock, held until ``fd`` is closed."""
    try:
        import fcntl
    except ImportError:  # Windows: a file open in another process cannot be deleted anyway
        return
    fcntl.flock(fd, fcntl.LOCK_SH)


def _in_use(path: Path) -> bool:
    """Whether a running build holds its shared flock on staged documents file ``path``."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _new_docs_file(stage: Path) -> tuple[Path, int]:
    """A new empty ``docs-<hex>.sqlite`` in ``stage`` and an fd holding its shared flock."""
    while True:
        # A concurrent build's clear_staging may remove the (empty) folder at any moment until
        # this file is in it: make it again and retry.
        stage.mkdir(parents=True, exist_ok=True)
        path = stage / f"docs-{uuid.uuid4().hex}.sqlite"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            continue
        _lock_shared(fd)
        try:
            if os.path.samestat(os.fstat(fd), path.stat()):  # not cleared before it was locked
                return path, fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _remove_unless_in_use(entry: Path) -> None:
    """Remove a staging entry, except a staged documents file (or its journal) a build holds."""
    match = _DOCS_FILE.fullmatch(entry.name)
    if match and _in_use(entry.with_name(f"docs-{match.group(1)}.sqlite")):
        return
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
        return
    with contextlib.suppress(OSError):  # Windows: a file another build has open
        entry.unlink(missing_ok=True)


@contextmanager
def stage_documents(
    docs: Iterable[Document], out: Path, *, show_progress: bool = False
) -> Iterator[StagedDocs]:
    """``docs`` streamed into a new ``out/.staging/docs-<hex>.sqlite``, ids checked; opened for reading.

    One pass over ``docs`` (any iterable); a repeated id or an empty corpus is an InputError.
    The file is removed when the block exits, and ``out`` and its staging folder too if this
    made them and they are still empty (so a refused first build leaves nothing behind). Its
    shared flock, held meanwhile, keeps another build's :func:`clear_staging` from removing it.
    """
    stage = out / STAGING
    made = [p for p in (out, stage) if not p.exists()]
    stage.mkdir(parents=True, exist_ok=True)
    path, fd = _new_docs_file(stage)
    try:
        count = write_store(path, _counted(docs, show_progress))  # ids unique by its UNIQUE index
        if not count:
            raise InputError("cannot index an empty corpus")
        store = DocStore(path, count=count)
        try:
            yield StagedDocs(store, count)
        finally:
            store.close()
    finally:
        os.close(fd)  # first: Windows deletes no open file
        path.unlink(missing_ok=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):  # not empty: chunks kept for a rerun, or the index
                folder.rmdir()


@dataclass
class Staged:
    """The chunk files of one build, in document order, and how many were encoded or reused.

    ``texts_of(start, rows)`` (the texts again, e.g. from the staged documents) and ``encoder``
    stay with it so that a chunk file removed before it was read back (a concurrent build of
    the same ``OUT`` published and cleared the folder) is encoded again instead of failing the
    build; without ``texts_of`` that is an IndexFormatError.
    """

    texts_of: Callable[[int, int], Sequence[str]] | None
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
                if self.texts_of is None:
                    raise IndexFormatError(f"staged chunk {path} cannot be read back ({exc})") from exc
                log.warning("staged chunk %s cannot be read back (%s); encoding it again", path, exc)
            yield _encode(self.encoder, self.texts_of(start, rows), self.batch_size)


def clear_staging(out: Path) -> None:
    """Empty and remove ``out/.staging`` after a publish: chunks of abandoned builds go with it.

    The staged documents of a build still running (its flock held) stay, and so does the folder.
    """
    stage = out / STAGING
    try:
        entries = list(stage.iterdir())
    except OSError:
        return
    for entry in entries:
        _remove_unless_in_use(entry)
    with contextlib.suppress(OSError):
        stage.rmdir()


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


def _slicer(texts: Sequence[str]) -> Callable[[int, int], Sequence[str]]:
    def texts_of(start: int, rows: int) -> Sequence[str]:
        return texts[start : start + rows]

    return texts_of


def encode_staged(
    texts: Iterable[str],
    encoder: Encoder,
    out: Path,
    *,
    batch_size: int = 64,
    chunk_size: int = DEFAULT_CHUNK,
    show_progress: bool = False,
    total: int | None = None,
    texts_of: Callable[[int, int], Sequence[str]] | None = None,
) -> Staged:
    """Encode ``texts`` chunk by chunk into ``out/.staging``, reusing chunks already there.

    ``texts`` is read ``chunk_size`` at a time (any iterable). The progress bar counts
    documents, with rate and ETA when ``total`` is known (default ``len(texts)`` where it has
    one); resumed chunks are counted at once. ``texts_of(start, rows)`` gives a chunk's texts
    again (default: slicing ``texts`` when it is a sequence), see :class:`Staged`. An encoder
    that returns the wrong shape or non-finite values is an InputError naming it.
    """
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
    if total is None and isinstance(texts, Sized):
        total = len(texts)
    if texts_of is None and isinstance(texts, Sequence):
        texts_of = _slicer(texts)
    stage = out / STAGING
    stage.mkdir(parents=True, exist_ok=True)
    identity = cache_key(encoder)
    staged = Staged(texts_of, encoder, batch_size)
    it, start = iter(texts), 0
    with tqdm(total=total, desc=f"encode {encoder.name}", unit="doc", disable=not show_progress) as bar:
        while chunk := list(itertools.islice(it, chunk_size)):
            path = stage / f"{chunk_key(identity, chunk)}.safetensors"
            if _reusable(path, len(chunk), encoder.dim):
                staged.reused += len(chunk)
                bar.update(len(chunk))
            else:
                _save_chunk(path, _encode(encoder, chunk, batch_size, bar))  # moves the bar
                staged.encoded += len(chunk)
            staged.chunks.append((path, start, len(chunk)))
            start += len(chunk)
            if staged.reused:
                bar.set_postfix(resumed=staged.reused, refresh=False)
    if staged.reused:
        log.info("resumed %d of %d documents from %s", staged.reused, start, stage)
    return staged
