"""Building index versions: from an encoder (streamed, resumable) or from precomputed embeddings.

:func:`build_index` takes any iterable of documents and reads it once, into a staging store on
disk (``qrerank.index.staging.stage_documents``, ids checked on the way); it then encodes chunk
by chunk from that store (progress with rate and ETA, resumes after a kill) and
:func:`build_index_from_embeddings` takes the user's own ``[n, d]`` matrix (a memory-mapped
``.npy`` is read block by block). Both end in :func:`write_version`, which
``qrerank.index.update`` shares: the embeddings file is written from blocks, the FAISS index
(hnsw/ivf only) is filled from that file block by block, then the texts (streamed), BM25 and
the manifest with each file's size and sha256.

Peak memory of a streamed build: one chunk of texts and vectors, plus the FAISS index for
hnsw/ivf, plus, with BM25, the matrix of ``qrerank.index.lexical.BM25Builder`` (its (token,
count) pairs wait in a temporary file); ids are checked by the staging store's UNIQUE index on
disk (BENCHMARKS.md, Storage, has the measured bytes).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from qrerank import __version__
from qrerank._fs import sha256_file
from qrerank.core.encoding import bloch_angles, default_tau
from qrerank.embed.base import Encoder
from qrerank.embed.runtime import encoder_runtime
from qrerank.errors import IndexFormatError, InputError
from qrerank.index.formats import FLOAT_CODES, map_tensors, write_matrix
from qrerank.index.lexical import BM25Matrix, bm25_matrix, check_bm25_available, save_bm25
from qrerank.index.manifest import (
    DATA_FILE,
    DOCS_FILE,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    INDEX_KINDS,
    LEXICAL_FILE,
    MANIFEST,
    MAX_DIM,
    SPACE_METRICS,
    SPACES,
    required_files,
    vector_file,
)
from qrerank.index.matrix import BLOCK, iter_blocks, unit_rows
from qrerank.index.staging import (
    DEFAULT_CHUNK,
    StagedDocs,
    clear_staging,
    stage_documents,
)
from qrerank.index.store import write_store
from qrerank.index.versions import POINTER, STAGING, Draft, is_own_entry, publish
from qrerank.types import Document

if TYPE_CHECKING:
    from qrerank.index.directory import DocumentIndex
    from qrerank.index.faiss import FaissIndex

log = logging.getLogger(__name__)

# Files of the pre-versioning flat layout, manifest first so a reader stops seeing an index
# before its data goes.
LEGACY_FILES = (MANIFEST, "vectors.faiss", "vectors.safetensors", DATA_FILE, DOCS_FILE, LEXICAL_FILE)


@dataclass(frozen=True, kw_only=True)
class IndexSpec:
    """Everything a version's manifest records about how its vectors were made and are searched."""

    model: str
    runtime: str | None
    dim: int
    normalized: bool
    tau: float
    kind: str = "flat"
    params: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    lexical: bool = True
    space: str = "cosine"


def check_options(kind: str, dtype: str, lexical: bool, space: str = "cosine") -> None:
    """Refuse an unknown kind, dtype or space, or a missing extra, before any encoding."""
    if kind not in INDEX_KINDS:
        raise InputError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if space not in SPACES:
        raise InputError(f"unknown space {space!r}; choose one of {', '.join(SPACES)}")
    if space == "angles" and kind == "exact":
        raise InputError("space 'angles' needs a FAISS index: use kind flat, hnsw or ivf, not exact")
    if kind in ("ivf", "hnsw") or space == "angles":
        from qrerank.index.faiss import _faiss

        _faiss()  # MissingExtraError naming [faiss] now, not after the encoding
    if lexical:
        check_bm25_available("build without the lexical index (--no-lexical, lexical=False)")


def check_ids(docs: Sequence[Document]) -> None:
    """A non-empty corpus with unique ids; InputError naming the first repeated id."""
    if not docs:
        raise InputError("cannot index an empty corpus")
    seen: set[str] = set()  # the caller holds the list already
    for d in docs:
        if d.doc_id in seen:
            raise InputError(f"duplicate document id {d.doc_id!r}")
        seen.add(d.doc_id)


def check_target(out: Path) -> None:
    """Refuse to write into a path that holds something other than a qrerank index."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; refusing to overwrite it")
    if (out / POINTER).exists() or (out / MANIFEST).exists():
        return
    if any(not is_own_entry(p.name) for p in out.iterdir()):  # leftovers of a killed first build are ours
        raise InputError(f"{out} exists and is not a qrerank index; refusing to overwrite it")


def build_index(
    docs: Iterable[Document],
    encoder: Encoder,
    out: str | os.PathLike[str],
    *,
    kind: str = "flat",
    tau: float | None = None,
    batch_size: int = 64,
    show_progress: bool = False,
    index_params: dict[str, Any] | None = None,
    lock_timeout: float = 60.0,
    lexical: bool = True,
    dtype: str = "float32",
    space: str = "cosine",
    chunk_size: int = DEFAULT_CHUNK,
) -> DocumentIndex:
    """Encode ``docs``, publish them as a new version of the index at ``out``, return it loaded.

    ``docs`` is any iterable (a list, or ``qrerank.corpus.iter_corpus`` reading a file lazily),
    read once into a staging store on disk with its ids checked (a repeat or an empty corpus is
    an InputError, before any encoding), so the build holds no texts. Encoding runs
    ``chunk_size`` documents at a time and resumes from the chunks a killed or
    failed run finished (``qrerank.index.staging``). ``dtype`` float16 stores the embeddings
    at half the size (BENCHMARKS.md, Storage, gives its quality cost). ``space`` "angles" makes
    the first stage search the Bloch angles (by fidelity, ``DocumentIndex.search``) instead of
    the cosine of the embeddings: a FAISS file of the angles of ``kind`` flat, hnsw or ivf,
    4 * d more bytes per document. ``lexical`` also stores a
    BM25 index (``qrerank.index.lexical``; needs bm25s and PyStemmer), which the ``lexical`` and
    ``fused`` search methods read. Encoding and BM25 run before the writer lock is taken;
    ``lock_timeout`` bounds the wait for another writer of ``out`` (then IndexBusyError).
    """
    out = Path(out)
    check_target(out)
    check_options(kind, dtype, lexical, space)
    spec = IndexSpec(
        model=encoder.name,
        runtime=encoder_runtime(encoder),  # None: an encoder with one runtime (hashing)
        dim=encoder.dim,
        normalized=bool(encoder.normalized),
        tau=tau if tau is not None else default_tau(encoder.dim),
        kind=kind,
        params=dict(index_params or {}),
        dtype=dtype,
        lexical=lexical,
        space=space,
    )
    with stage_documents(docs, out, show_progress=show_progress) as staged_docs:
        staged, encode_s = staged_docs.encode(
            encoder, out, batch_size=batch_size, chunk_size=chunk_size, show_progress=show_progress
        )
        draft = _publish_docs(out, spec, staged_docs, staged.blocks, encode_s, lock_timeout)
    clear_staging(out)
    log.info(
        "indexed %d docs with %s in %.1fs -> %s", staged_docs.count, encoder.name, encode_s, draft.version
    )
    return open_published(out, draft)


def _publish_docs(
    out: Path,
    spec: IndexSpec,
    docs: StagedDocs | Sequence[Document],
    blocks: Callable[[], Iterator[np.ndarray]],
    encode_s: float,
    lock_timeout: float,
) -> Draft:
    """Publish ``docs`` with the embeddings of ``blocks()`` as a new version of ``out``; its draft.

    The documents are read twice, for BM25 (when ``spec.lexical``, before the writer lock is
    taken; staged documents spill its token pairs to the staging folder) and into the
    version's text store.
    """
    staged = isinstance(docs, StagedDocs)
    count, documents = (docs.count, docs.documents) if staged else (len(docs), lambda: iter(docs))
    bm25 = None
    if spec.lexical:
        bm25 = bm25_matrix((d.content for d in documents()), spill=out / STAGING if staged else None)
    with publish(out, lock_timeout=lock_timeout, legacy_files=LEGACY_FILES) as draft:
        write_version(draft.tmp, spec, count, blocks, lambda p: write_store(p, documents()), bm25, encode_s)
    return draft


def build_index_from_embeddings(
    docs: Sequence[Document],
    embeddings: np.ndarray,
    out: str | os.PathLike[str],
    *,
    model: str,
    ids: Sequence[str] | None = None,
    normalized: bool = True,
    runtime: str | None = None,
    kind: str = "flat",
    tau: float | None = None,
    index_params: dict[str, Any] | None = None,
    lock_timeout: float = 60.0,
    lexical: bool = True,
    dtype: str = "float32",
    space: str = "cosine",
) -> DocumentIndex:
    """Publish ``docs`` with the user's ``embeddings`` ``[n, d]`` (float16/32/64; no encoding).

    Row i belongs to ``docs[i]``, or with ``ids`` to the document ``ids[i]`` (every corpus id
    exactly once). ``model`` names the encoder that made them: queries are encoded with it at
    search time, which refuses another dim. ``normalized`` (the default) requires unit rows
    (within 1e-3), as the model's queries will be; pass False for raw vectors. A memory-mapped
    array (``np.load(..., mmap_mode="r")``) is read block by block.
    """
    out = Path(out)
    check_ids(docs)
    order = _row_order(docs, ids, embeddings)
    dim = int(embeddings.shape[1])
    check_target(out)
    check_options(kind, dtype, lexical, space)
    _check_embeddings(embeddings, normalized)

    def blocks() -> Iterator[np.ndarray]:
        if order is None:
            yield from iter_blocks(embeddings)
            return
        for start in range(0, len(docs), BLOCK):
            wanted = order[start : start + BLOCK]
            block = np.asarray(embeddings[np.sort(wanted)], dtype=np.float32)  # read in file order
            yield block[np.argsort(np.argsort(wanted))]  # then put in corpus order

    spec = IndexSpec(
        model=model,
        runtime=runtime,
        dim=dim,
        normalized=normalized,
        tau=tau if tau is not None else default_tau(dim),
        kind=kind,
        params=dict(index_params or {}),
        dtype=dtype,
        lexical=lexical,
        space=space,
    )
    return open_published(out, _publish_docs(out, spec, docs, blocks, 0.0, lock_timeout))


def _row_order(
    docs: Sequence[Document], ids: Sequence[str] | None, embeddings: np.ndarray
) -> np.ndarray | None:
    """For each corpus position, the embedding row holding it (None: the same order)."""
    shape = getattr(embeddings, "shape", None)
    if not isinstance(embeddings, np.ndarray) or embeddings.ndim != 2:
        raise InputError(f"embeddings must be a 2-d array [n, d], got shape {shape}")
    if embeddings.dtype not in (np.float16, np.float32, np.float64):
        raise InputError(f"embeddings must be float16, float32 or float64, got {embeddings.dtype}")
    if not 0 < embeddings.shape[1] <= MAX_DIM:
        raise InputError(f"embeddings have dim {embeddings.shape[1]}, expected 1..{MAX_DIM}")
    if len(embeddings) != len(docs):
        raise InputError(f"embeddings have {len(embeddings)} rows, the corpus has {len(docs)} documents")
    if ids is None:
        return None
    if len(ids) != len(embeddings):
        raise InputError(f"{len(ids)} embedding ids for {len(embeddings)} embedding rows")
    row_of: dict[str, int] = {}
    for i, doc_id in enumerate(ids):
        if doc_id in row_of:
            raise InputError(f"embedding id {doc_id!r} is repeated")
        row_of[doc_id] = i
    missing = [d.doc_id for d in docs if d.doc_id not in row_of]
    if missing:
        raise InputError(f"no embedding for document id {missing[0]!r} ({len(missing)} corpus ids have none)")
    order = np.fromiter((row_of[d.doc_id] for d in docs), dtype=np.int64, count=len(docs))
    return None if np.array_equal(order, np.arange(len(docs))) else order


def _check_embeddings(embeddings: np.ndarray, normalized: bool) -> None:
    """Finite values, and unit rows when ``normalized``, checked block by block (InputError)."""
    for start, block in zip(range(0, len(embeddings), BLOCK), iter_blocks(embeddings), strict=True):
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            raise InputError(f"embedding row {start + int(np.argmax(bad))} has NaN or infinite values")
        if normalized:
            norms = np.linalg.norm(block, axis=1)
            off = np.abs(norms - 1.0) > 1e-3
            if off.any():
                row = int(np.argmax(off))
                raise InputError(
                    f"embedding row {start + row} has norm {norms[row]:.4g}, not 1: pass normalized=False "
                    "(--raw) for vectors the model does not normalise"
                )


def write_version(
    tmp: Path,
    spec: IndexSpec,
    count: int,
    blocks: Callable[[], Iterator[np.ndarray]],
    write_docs: Callable[[Path], None],
    bm25: BM25Matrix | None,
    encode_s: float,
    ann: FaissIndex | None = None,
    ann_from: int = 0,
) -> None:
    """Fill draft folder ``tmp`` with a complete version of ``count`` documents.

    ``blocks()`` yields the embeddings ``[m, d]`` in row order; where the kind and space keep a
    FAISS file, ``ann`` (default a new index) receives the search vectors (:func:`ann_vectors`)
    of rows ``ann_from:`` (an append adds only its rows).
    """
    write_matrix(tmp / DATA_FILE, "embeddings", (count, spec.dim), spec.dtype, blocks())
    params = dict(spec.params)
    name = vector_file(spec.kind, space=spec.space)
    if name is not None:
        stored = map_tensors(tmp / DATA_FILE, {"embeddings": ((count, spec.dim), FLOAT_CODES[spec.dtype])})
        ann = fill_ann(ann, spec, stored["embeddings"], ann_from)
        if spec.kind == "ivf":
            params["nlist"] = ann.nlist
        ann.save(tmp / name)
    write_docs(tmp / DOCS_FILE)
    lexical_entry = save_bm25(tmp / LEXICAL_FILE, bm25) if bm25 is not None else None
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "qrerank_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": spec.model,
        "runtime": spec.runtime,
        "dim": spec.dim,
        "normalized": spec.normalized,
        "count": count,
        "tau": spec.tau,
        "dtype": spec.dtype,
        "index": {"kind": spec.kind, "params": params, "space": spec.space},
        "encode_seconds": round(encode_s, 3),
        "lexical": lexical_entry,
        "files": {
            f: {"sha256": sha256_file(tmp / f), "bytes": (tmp / f).stat().st_size}
            for f in required_files(spec.kind, lexical_entry is not None, space=spec.space)
        },
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def ann_vectors(embeddings: np.ndarray, space: str, tau: float) -> np.ndarray:
    """What the FAISS file of ``space`` holds for embedding rows ``[m, d]``, float32 ``[m, d]``.

    "cosine": the unit rows (inner product = cosine). "angles": the Bloch angles
    theta = tanh(u / tau) * pi/2 + pi/2, searched by L2: for small differences
    log cos^2(x/2) = -x^2/4 + O(x^4), so -log F(a, b) ~ |theta_a - theta_b|^2 / 4.
    """
    if space == "angles":
        return bloch_angles(
            torch.from_numpy(np.array(embeddings, dtype=np.float32)), tau
        ).numpy()  # a writable copy
    return unit_rows(embeddings)


# k-means training rows per IVF list. FAISS samples up to 256 and warns below 39; at 1M rows and
# 4,000 lists 256 meant training on every row (21 minutes on 2 cores). 64 is 4x fewer
# (BENCHMARKS.md, end-to-end latency, gives its build time and recall at 1M).
IVF_TRAIN_PER_LIST = 64


def fill_ann(ann: FaissIndex | None, spec: IndexSpec, embeddings: np.ndarray, start: int) -> FaissIndex:
    """Add the search vectors of rows ``start:`` of ``embeddings`` to ``ann`` block by block.

    A new IVF index trains first, on a fixed sample of at most ``IVF_TRAIN_PER_LIST`` rows per
    list (all rows for smaller corpora), so equal inputs give equal indexes.
    """
    from qrerank.index.faiss import FaissIndex

    if ann is None:
        params = {k: v for k, v in spec.params.items() if v is not None}
        ann = FaissIndex(spec.dim, spec.kind, metric=SPACE_METRICS[spec.space], **params)
    if not ann.is_trained:
        n = len(embeddings)
        nlist = ann.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        size = min(n, IVF_TRAIN_PER_LIST * nlist)
        rows = np.sort(np.random.default_rng(0).choice(n, size, replace=False)) if size < n else slice(None)
        ann.train(ann_vectors(embeddings[rows], spec.space, spec.tau), nlist)
    for block in iter_blocks(embeddings, start):
        if len(block):  # a delete can empty a block
            ann.add(ann_vectors(block, spec.space, spec.tau))
    return ann


def open_published(out: Path, draft: Draft) -> DocumentIndex:
    """The version a publish just made, loaded (or a newer one if two later writers retired it)."""
    from qrerank.index.directory import DocumentIndex

    assert draft.version is not None
    try:
        return DocumentIndex.open_version(out, draft.version)
    except IndexFormatError:
        if draft.version.exists():
            raise
        return DocumentIndex.load(out)
