"""Changing an index without re-encoding it: append new documents, delete documents by id.

Both publish a new version through :func:`~qrerank.index.versions.publish` (writer lock,
pointer swap), so readers see the old documents or the new ones, and an error leaves the old
version current with nothing written. Under the lock they re-read the live version, so a
writer that published meanwhile is extended, not overwritten.

What is reused and what is rebuilt:

* embeddings: the stored rows are copied block by block (float16 stays float16, bit for bit);
  an append encodes only its new documents (chunked and resumable like a build,
  ``qrerank.index.staging``), with the index's own model, runtime, normalisation and tau;
* ``flat``/``exact``: nothing else (they search the embeddings; a ``flat`` index of space
  ``angles`` is extended or rebuilt like ``hnsw``); ``hnsw``: an append adds the
  new vectors to the stored graph, a delete builds the graph again from the stored vectors
  (FAISS's HNSW cannot remove); ``ivf``: the trained lists are kept, an append adds, a delete
  re-adds the remaining vectors (row numbers shift), neither retrains;
* texts: SQLite copies the kept rows (renumbered from 0, order kept) and appends the new ones;
* BM25: rebuilt from the stored texts of the new version (its IDF depends on every document),
  read from the stores a chunk at a time.

An append reads its documents (any iterable) once, into a staging store like a build
(``qrerank.index.staging.stage_documents``), so neither the new texts nor the stored ones are
held in memory.

So an append or delete of ``flat``/``exact`` gives the same index as a fresh build of the
resulting documents in the same order; hnsw/ivf give equivalent ANN structures, not identical.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from qrerank.embed.base import Encoder
from qrerank.embed.runtime import encoder_runtime
from qrerank.errors import InputError
from qrerank.index.build import LEGACY_FILES, IndexSpec, open_published, write_version
from qrerank.index.directory import DocumentIndex
from qrerank.index.faiss import FaissIndex
from qrerank.index.lexical import bm25_matrix
from qrerank.index.manifest import DOCS_FILE, vector_file
from qrerank.index.matrix import iter_blocks
from qrerank.index.staging import DEFAULT_CHUNK, StagedDocs, clear_staging, stage_documents
from qrerank.index.store import copy_store
from qrerank.index.versions import STAGING, publish
from qrerank.types import Document

log = logging.getLogger(__name__)


def spec_of(index: DocumentIndex) -> IndexSpec:
    """The build settings of a loaded index, to write its next version with."""
    m = index.manifest
    return IndexSpec(
        model=index.model,
        runtime=index.runtime,
        dim=index.dim,
        normalized=bool(m["normalized"]),
        tau=index.tau,
        kind=m["index"]["kind"],
        params=dict(m["index"].get("params", {})),
        dtype=index.dtype,
        lexical=index.lexical is not None,
        space=index.space,
    )


def _check_encoder(index: DocumentIndex, encoder: Encoder) -> None:
    """The encoder must be the one the index was built with (name, dim, normalisation, runtime)."""
    runtime = encoder_runtime(encoder)
    same = (
        encoder.name == index.model
        and encoder.dim == index.dim
        and bool(encoder.normalized) == index.normalized
        and (index.runtime is None or runtime is None or runtime == index.runtime)
    )
    if not same:
        raise InputError(
            f"index {index.path} was built with {index.model} ({index.dim}-d, "
            f"{'normalised' if index.manifest['normalized'] else 'raw'}, runtime {index.runtime or 'torch'}); "
            f"the new documents would be encoded with {encoder.name} ({encoder.dim}-d, "
            f"{'normalised' if encoder.normalized else 'raw'}, runtime {runtime or 'torch'}): "
            "append with the index's own model"
        )


def _check_new_ids(index: DocumentIndex, docs: StagedDocs) -> None:
    """No id of ``docs`` may be in ``index`` (looked up a chunk at a time); InputError naming the first."""
    first, taken = None, 0
    it = docs.documents()
    while chunk := [d.doc_id for d in itertools.islice(it, DEFAULT_CHUNK)]:
        found = index.store.rows_of(chunk)
        if found:
            first = first or next(i for i in chunk if i in found)
            taken += len(found)
    if first is not None:
        more = f" (and {taken - 1} more of the new ids)" if taken > 1 else ""
        raise InputError(
            f"document id {first!r} is already in the index {index.path}{more}; nothing was written"
        )


def append_documents(
    out: str | os.PathLike[str],
    docs: Iterable[Document],
    encoder: Encoder,
    *,
    batch_size: int = 64,
    show_progress: bool = False,
    lock_timeout: float = 60.0,
    chunk_size: int = DEFAULT_CHUNK,
) -> DocumentIndex:
    """Add ``docs`` (ids new to the index) at the end of the index at ``out``; return it loaded.

    ``docs`` is any iterable, read once (into a staging store). Only ``docs`` are encoded. A
    repeated or existing id is an InputError naming it, raised before any encoding and checked
    again under the lock.
    """
    out = Path(out)
    _check_encoder_of(out, encoder)
    with stage_documents(docs, out, show_progress=show_progress) as new:
        base = DocumentIndex.load(out)
        try:
            _check_new_ids(base, new)
        finally:
            base.close()
        staged, encode_s = new.encode(
            encoder, out, batch_size=batch_size, chunk_size=chunk_size, show_progress=show_progress
        )
        with publish(out, lock_timeout=lock_timeout, legacy_files=LEGACY_FILES) as draft:
            _write_appended(draft.tmp, out, encoder, new, staged.blocks, encode_s)
    clear_staging(out)
    log.info("appended %d docs to %s -> %s", new.count, out, draft.version)
    return open_published(out, draft)


def _check_encoder_of(out: Path, encoder: Encoder) -> None:
    base = DocumentIndex.load(out)
    try:
        _check_encoder(base, encoder)
    finally:
        base.close()


def _write_appended(
    tmp: Path,
    out: Path,
    encoder: Encoder,
    new: StagedDocs,
    blocks: Callable[[], Iterator[np.ndarray]],
    encode_s: float,
) -> None:
    """Write into draft ``tmp`` the live version of ``out`` (re-read under the lock) plus ``new``."""
    base = DocumentIndex.load(out)  # the live version, now that no writer can change it
    try:
        _check_encoder(base, encoder)
        _check_new_ids(base, new)
        spec = spec_of(base)
        bm25 = None
        if spec.lexical:
            texts = (d.content for d in itertools.chain(base.store.iter_documents(), new.documents()))
            bm25 = bm25_matrix(texts, spill=out / STAGING)
        ann = base.vectors if vector_file(spec.kind, space=spec.space) is not None else None
        assert ann is None or isinstance(ann, FaissIndex)
        write_version(
            tmp,
            spec,
            len(base) + new.count,
            lambda: itertools.chain(iter_blocks(base.embeddings), blocks()),
            lambda path: _copy_docs(base, path, append=new.documents()),
            bm25,
            encode_s,
            ann=ann,
            ann_from=len(base),
        )
    finally:
        base.close()


def delete_documents(
    out: str | os.PathLike[str], doc_ids: Iterable[str], *, lock_timeout: float = 60.0
) -> DocumentIndex:
    """Remove the documents ``doc_ids`` from the index at ``out``; return the new version loaded.

    Every id must be in the index (else InputError naming the unknown ones, nothing written);
    deleting every document is refused (an index is never empty). Nothing is encoded.
    """
    out = Path(out)
    ids = list(dict.fromkeys(doc_ids))
    if not ids:
        raise InputError("no document ids to delete")
    with publish(out, lock_timeout=lock_timeout, legacy_files=LEGACY_FILES) as draft:
        base = DocumentIndex.load(out)
        try:
            rows = base.store.rows_of(ids)
            unknown = [i for i in ids if i not in rows]
            if unknown:
                shown = ", ".join(repr(i) for i in unknown[:5])
                more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
                raise InputError(f"no document with id {shown}{more} in the index {out}; nothing was written")
            if len(rows) == len(base):
                raise InputError(f"deleting all {len(base)} documents would leave {out} empty; refused")
            drop = np.fromiter(sorted(rows.values()), dtype=np.int64, count=len(rows))
            keep = np.ones(len(base), dtype=bool)
            keep[drop] = False
            spec = spec_of(base)
            bm25 = None
            if spec.lexical:
                kept = (d.content for d, k in zip(base.store.iter_documents(), keep, strict=True) if k)
                bm25 = bm25_matrix(kept, spill=out)  # an unnamed temporary file
            ann = None
            if spec.kind == "ivf":  # keep the trained lists; row numbers shift, so re-add them all
                assert isinstance(base.vectors, FaissIndex)
                ann = base.vectors
                ann.reset()
            write_version(
                draft.tmp,
                spec,
                int(keep.sum()),
                lambda: _kept_blocks(base.embeddings, keep),
                lambda path: _copy_docs(base, path, drop=drop),
                bm25,
                0.0,
                ann=ann,
            )
        finally:
            base.close()
    log.info("deleted %d docs from %s -> %s", len(ids), out, draft.version)
    return open_published(out, draft)


def _kept_blocks(embeddings: np.ndarray, keep: np.ndarray) -> Iterator[np.ndarray]:
    start = 0
    for block in iter_blocks(embeddings):
        yield block[keep[start : start + len(block)]]
        start += len(block)


def _copy_docs(
    base: DocumentIndex, path: Path, *, drop: Sequence[int] | np.ndarray = (), append: Iterable[Document] = ()
) -> None:
    assert base.version_dir is not None
    copy_store(base.version_dir / DOCS_FILE, path, drop=drop, append=append)
