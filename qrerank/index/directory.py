"""The on-disk document index: vectors + embeddings + Bloch angles + texts + manifest.

An index path ``OUT`` holds immutable version folders and a pointer (``qrerank.index.versions``)::

    OUT/CURRENT                    the live version's name
    OUT/v-<time>-<hex>/manifest.json   format, model, dim, count, index kind, tau, size + sha256 per file
    OUT/v-<time>-<hex>/vectors.faiss | vectors.safetensors   the ANN (or exact) index over unit vectors
    OUT/v-<time>-<hex>/embeddings.safetensors   "embeddings" [n, d] as encoded, "angles" [n, d]
    OUT/v-<time>-<hex>/docs.sqlite   doc_id, title, text, metadata per row
    OUT/v-<time>-<hex>/lexical.safetensors   BM25 terms of every document (unless --no-lexical;
                                             see qrerank.index.lexical)

A rebuild writes a new version under a writer lock and swaps the pointer in one rename, so a
reader sees the old index or the new one, never a gap or a mix, a crash or error leaves the old
one current, and a second writer waits for the first (``lock_timeout``, then IndexBusyError).
Indexes written before versioning (``manifest.json`` directly in ``OUT``) still load; the next
build into them converts them in place.

What a reader holding an old version sees: a loaded :class:`DocumentIndex` keeps serving the
version it opened. Vectors, embeddings and angles are in memory and the SQLite connection keeps
its file open, so searches keep working after writers retire that folder (on POSIX an open file
survives its deletion; on Windows the folder stays until a later write can delete it). It never
sees newer versions: load the path again to pick up the latest.

Loading trusts nothing in the folder: the file set is fixed by the index kind, the manifest is
validated field by field, every size is bounded by the manifest before it is allocated, files
must be regular files inside the version folder, and all of this fails with IndexFormatError.
Indexes must still come from trusted sources: FAISS files are not a safe format to parse.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file

from qrerank import __version__
from qrerank._fs import sha256_file
from qrerank.core.encoding import bloch_angles, default_tau
from qrerank.embed.base import Encoder
from qrerank.embed.runtime import RUNTIMES, encoder_runtime
from qrerank.errors import IndexFormatError, InputError
from qrerank.index.base import VectorIndex
from qrerank.index.exact import ExactIndex
from qrerank.index.formats import check_faiss_file, read_safetensors
from qrerank.index.lexical import (
    BM25Matrix,
    BM25Scorer,
    NoLexicalIndexError,
    check_bm25_available,
    read_bm25,
    save_bm25,
)
from qrerank.index.manifest import (
    DATA_FILE,
    DOCS_FILE,
    FORMAT,
    FORMAT_VERSION,
    INDEX_KINDS,
    LEXICAL_FILE,
    MANIFEST,
    has_lexical,
    read_manifest,
    regular_file_size,
    required_files,
    vector_file,
)
from qrerank.index.store import DocStore, write_store
from qrerank.index.versions import POINTER, current_version, is_own_entry, publish, version_dir
from qrerank.types import Document

log = logging.getLogger(__name__)

# Files of the pre-versioning flat layout, manifest first so a reader stops seeing an index
# before its data goes.
_LEGACY_FILES = (MANIFEST, "vectors.faiss", "vectors.safetensors", DATA_FILE, DOCS_FILE, LEXICAL_FILE)
# A load retries when a writer swapped the pointer while it read (and may have retired the
# version it was reading); a failure with the pointer unchanged is the index's own fault.
_LOAD_ATTEMPTS = 5


def _new_vector_index(kind: str, dim: int, params: dict[str, Any]) -> VectorIndex:
    if kind == "exact":
        return ExactIndex(dim)
    if kind in ("flat", "ivf", "hnsw"):
        from qrerank.index.faiss import FaissIndex

        return FaissIndex(dim, kind, **params)
    raise InputError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _check_target(out: Path) -> None:
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
    docs: Sequence[Document],
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
) -> DocumentIndex:
    """Encode ``docs``, publish them as a new version of the index at ``out``, return it loaded.

    ``lexical`` also stores a BM25 index of the documents (``qrerank.index.lexical``; needs
    bm25s and PyStemmer), which the ``lexical`` and ``fused`` search methods read. Encoding and
    BM25 indexing run before the writer lock is taken; ``lock_timeout`` bounds the wait for
    another writer of ``out`` to finish (then IndexBusyError).
    """
    out = Path(out)
    if not docs:
        raise InputError("cannot index an empty corpus")
    ids = [d.doc_id for d in docs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"duplicate document id {dup!r}")
    _check_target(out)
    if lexical:  # before minutes of encoding
        check_bm25_available("build without the lexical index (--no-lexical, lexical=False)")
    params = dict(index_params or {})
    vectors_index = _new_vector_index(kind, encoder.dim, params)
    t0 = time.perf_counter()
    emb = encoder.encode([d.content for d in docs], batch_size=batch_size, show_progress=show_progress)
    encode_s = time.perf_counter() - t0
    tau = tau if tau is not None else default_tau(encoder.dim)
    angles = bloch_angles(torch.from_numpy(emb), tau).numpy()
    vectors_index.add(unit_rows(emb))
    if kind == "ivf":
        params["nlist"] = getattr(vectors_index, "nlist", None)
    bm25 = BM25Scorer(docs) if lexical else None

    with publish(out, lock_timeout=lock_timeout, legacy_files=_LEGACY_FILES) as draft:
        tmp = draft.tmp
        vectors_index.save(tmp / vector_file(kind))
        save_file({"embeddings": emb, "angles": angles}, str(tmp / DATA_FILE))
        write_store(tmp / DOCS_FILE, docs)
        lexical_entry = save_bm25(tmp / LEXICAL_FILE, bm25) if bm25 is not None else None
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "qrerank_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": encoder.name,
            "runtime": encoder_runtime(encoder),  # None: an encoder with one runtime (hashing)
            "dim": encoder.dim,
            "normalized": bool(encoder.normalized),
            "count": len(docs),
            "tau": tau,
            "index": {"kind": kind, "params": params},
            "encode_seconds": round(encode_s, 3),
            "lexical": lexical_entry,
            "files": {
                name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                for name in required_files(kind, lexical_entry is not None)
            },
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    assert draft.version is not None
    log.info("indexed %d docs with %s in %.1fs -> %s", len(docs), encoder.name, encode_s, draft.version)
    try:
        return DocumentIndex.open_version(out, draft.version)
    except IndexFormatError:
        if draft.version.exists():
            raise
        return DocumentIndex.load(out)  # two later writers already retired ours: theirs is newer


@dataclass
class DocumentIndex:
    """A loaded index version. ``embeddings`` and ``angles`` are ``[count, dim]`` float32.

    ``path`` is the index path as given, ``version_dir`` the folder its files were read from
    (``path`` itself for an index of the old flat layout). ``lexical`` holds the BM25 terms,
    None for an index built without them (see :meth:`bm25`).
    """

    path: Path
    manifest: dict[str, Any]
    vectors: VectorIndex
    embeddings: np.ndarray
    angles: np.ndarray
    store: DocStore
    version_dir: Path | None = None
    lexical: BM25Matrix | None = None
    _bm25: BM25Scorer | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    @property
    def runtime(self) -> str | None:
        """The encoder runtime of the stored vectors; None for indexes from before runtimes (torch)."""
        value = self.manifest.get("runtime")
        if value is not None and value not in RUNTIMES:
            raise IndexFormatError(
                f"{self.path}: field 'runtime' must be one of {', '.join(RUNTIMES)} or null"
            )
        return value

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def tau(self) -> float:
        return float(self.manifest["tau"])

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def bm25(self) -> BM25Scorer:
        """The BM25 scorer over the stored terms (rows are index rows); NoLexicalIndexError if none."""
        if self.lexical is None:
            name = self.path.name  # not the full path: the service shows this message to clients
            raise NoLexicalIndexError(
                f"index {name} has no lexical (BM25) index: it was built with --no-lexical or by an "
                f"older qrerank; rebuild it with `qrerank index SRC --out {name}` without --no-lexical"
            )
        if self._bm25 is None:  # built on first use: dense-only users never need bm25s
            self._bm25 = BM25Scorer.from_matrix(self.lexical)
        return self._bm25

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, verify: bool = True) -> DocumentIndex:
        """Open the current version at ``path``; IndexFormatError if missing, corrupt or foreign.

        The pointer is read once and every file comes from the version it names. ``verify``
        also checks each file's sha256 and every document row (one full read of the index).
        """
        path = Path(path)
        for attempt in range(_LOAD_ATTEMPTS):
            version = current_version(path)
            try:
                if version is None:  # the old flat layout, or not an index at all
                    if not (path / MANIFEST).exists():
                        raise IndexFormatError(
                            f"{path} is not a qrerank index: no manifest.json and no {POINTER} pointer"
                        )
                    return cls.open_version(path, path, verify=verify)
                return cls.open_version(path, version_dir(path, version), verify=verify)
            except IndexFormatError:
                try:
                    moved = current_version(path) != version
                except IndexFormatError:
                    moved = False
                if not moved or attempt == _LOAD_ATTEMPTS - 1:
                    raise
                log.debug("index %s changed while loading %s; reading the new version", path, version)
        raise AssertionError("unreachable")

    @classmethod
    def open_version(cls, path: Path, root: Path, *, verify: bool = True) -> DocumentIndex:
        """Load the index files in folder ``root`` (a version of ``path``); see :meth:`load`."""
        try:
            return cls._open(path, root, verify)
        except OSError as exc:  # e.g. the folder was retired under us: load() retries on the new one
            raise IndexFormatError(f"cannot read index {root}: {exc}") from exc

    @classmethod
    def _open(cls, path: Path, root: Path, verify: bool) -> DocumentIndex:
        manifest = read_manifest(root / MANIFEST)
        kind, dim, count = manifest["index"]["kind"], manifest["dim"], manifest["count"]
        files = manifest["files"]
        lexical = has_lexical(manifest)
        for name in required_files(kind, lexical):  # kind and flag fix the file set, not the manifest
            size = regular_file_size(root / name)
            if size != files[name]["bytes"]:
                raise IndexFormatError(
                    f"{root / name} is corrupt: {size} bytes, the manifest says {files[name]['bytes']}"
                )

        def sha(name: str) -> str | None:
            return files[name]["sha256"] if verify else None

        for name in (vector_file(kind), DOCS_FILE):  # the safetensors files are hashed as they are read
            if verify and sha256_file(root / name) != files[name]["sha256"]:
                raise IndexFormatError(f"{root / name} is corrupt: its sha256 does not match the manifest")
        data = read_safetensors(
            root / DATA_FILE, {"embeddings": (count, dim), "angles": (count, dim)}, sha256=sha(DATA_FILE)
        )
        vectors = _load_vectors(root / vector_file(kind), manifest, sha(vector_file(kind)))
        bm25 = (
            read_bm25(root / LEXICAL_FILE, manifest["lexical"], count, sha256=sha(LEXICAL_FILE))
            if lexical
            else None
        )
        store = DocStore(root / DOCS_FILE, count=count, verify=verify)
        return cls(
            path, manifest, vectors, data["embeddings"], data["angles"], store, version_dir=root, lexical=bm25
        )

    def search(self, unit_queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by cosine for ``[Q, dim]`` unit queries: (cosines, rows), -1 rows dropped by caller."""
        return self.vectors.search(unit_queries, k)

    def documents(self, rows: Sequence[int]) -> list[Document]:
        return self.store.get(rows)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.store.close()


def _load_vectors(path: Path, manifest: dict[str, Any], sha256: str | None) -> VectorIndex:
    """The vector index of a validated manifest, its file checked before FAISS parses it."""
    kind, dim, count = manifest["index"]["kind"], manifest["dim"], manifest["count"]
    if kind == "exact":
        index = ExactIndex(dim)
        index.add(read_safetensors(path, {"vectors": (count, dim)}, sha256=sha256)["vectors"])
        return index
    from qrerank.index.faiss import FaissIndex

    params = {k: v for k, v in manifest["index"].get("params", {}).items() if v is not None}
    check_faiss_file(path, kind, dim, count, nlist=params.get("nlist") if kind == "ivf" else None)
    try:
        vectors = FaissIndex.load(path, dim, kind, **params)
    except (RuntimeError, ValueError) as exc:  # FAISS raises RuntimeError for what it refuses
        raise IndexFormatError(f"cannot read {path}: {exc}") from exc
    if vectors.ntotal != count:
        raise IndexFormatError(f"{path} holds {vectors.ntotal} vectors, the manifest says {count}")
    return vectors
