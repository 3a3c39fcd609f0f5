"""The on-disk document index: embeddings + texts + manifest (+ an ANN file for hnsw/ivf).

An index path ``OUT`` holds immutable version folders and a pointer (``qrerank.index.versions``)::

    OUT/CURRENT                          the live version's name
    OUT/v-<time>-<hex>/manifest.json     format, model, dim, count, kind, tau, dtype, size + sha256 per file
    OUT/v-<time>-<hex>/embeddings.safetensors   "embeddings" [n, d] as encoded, float32 (or float16)
    OUT/v-<time>-<hex>/vectors.faiss     hnsw and ivf (and any kind of space "angles"): the FAISS
                                         index over the unit vectors (or the Bloch angles)
    OUT/v-<time>-<hex>/docs.sqlite       doc_id, title, text, metadata per row
    OUT/v-<time>-<hex>/lexical.safetensors   BM25 terms of every document (unless --no-lexical;
                                             see qrerank.index.lexical)
    OUT/.staging/                        a build's finished chunks while it runs (qrerank.index.staging)

Each vector is stored once (format 2; ``qrerank.index.manifest`` describes format 1, which still
loads): Bloch angles are computed from the embeddings and the manifest's ``tau`` for the rows a
query reranks, and ``flat``/``exact`` search the embedding matrix itself
(``qrerank.index.matrix``). Float32 is 4 * d bytes per document (1.5 KB at d = 384); ``dtype
float16`` halves it. Building, appending and deleting live in ``qrerank.index.build`` and
``qrerank.index.update``.

A write publishes a new version under a writer lock and swaps the pointer in one rename, so a
reader sees the old index or the new one, never a gap or a mix, a crash or error leaves the old
one current, and a second writer waits for the first (``lock_timeout``, then IndexBusyError).
Indexes written before versioning (``manifest.json`` directly in ``OUT``) still load; the next
build into them converts them in place.

What a reader holding an old version sees: a loaded :class:`DocumentIndex` keeps serving the
version it opened. Its embeddings are memory-mapped and the SQLite connection keeps its file
open, so searches keep working after writers retire that folder (on POSIX an open or mapped
file survives its deletion; on Windows the folder stays until a later write can delete it). It
never sees newer versions: load the path again to pick up the latest.

The first stage searches one of two spaces (``index.space`` in the manifest, ``--space``):
"cosine" (the default) finds the rows of highest cosine; "angles" finds the rows of highest
log-fidelity: FAISS returns the ``ceil(oversample * k)`` rows nearest to the query's Bloch
angles in L2 (the small-angle form of -log F), which are then scored exactly and cut to k
(``DocumentIndex.search``; recall against an exact fidelity scan in BENCHMARKS.md).

Loading trusts nothing in the folder: the file set is fixed by the format version and index
kind, the manifest is validated field by field, every file's size must equal the manifest's
and every tensor's shape is fixed by it before anything is mapped, files must be regular files
inside the version folder, and all of this fails with IndexFormatError. That is all a default
load reads (no byte of the vectors), so it takes milliseconds at any size. ``verify=True`` (and
``qrerank verify DIR``) also re-hashes every file against the sha256 recorded at write, checks
every value is finite and scans every document row. Indexes must still come from trusted
sources: FAISS files are not a safe format to parse.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qrerank._fs import sha256_file
from qrerank.core.encoding import bloch_angles
from qrerank.core.fidelity import log_fidelity_candidates
from qrerank.embed.runtime import RUNTIMES
from qrerank.errors import IndexFormatError
from qrerank.index.base import VectorIndex
from qrerank.index.build import ann_vectors, build_index
from qrerank.index.formats import FLOAT_CODES, TensorSpec, check_faiss_file, check_finite, map_tensors
from qrerank.index.lexical import BM25Matrix, BM25Scorer, NoLexicalIndexError, read_bm25
from qrerank.index.manifest import (
    DATA_FILE,
    DOCS_FILE,
    INDEX_KINDS,
    LEXICAL_FILE,
    MANIFEST,
    SPACE_METRICS,
    has_lexical,
    index_space,
    read_manifest,
    regular_file_size,
    required_files,
    stored_dtype,
    vector_file,
)
from qrerank.index.matrix import MatrixIndex, unit_rows
from qrerank.index.store import DocStore
from qrerank.index.versions import POINTER, current_version, version_dir
from qrerank.types import Document

__all__ = ["INDEX_KINDS", "DocumentIndex", "build_index", "unit_rows", "verify_index"]

log = logging.getLogger(__name__)

# A load retries when a writer swapped the pointer while it read (and may have retired the
# version it was reading); a failure with the pointer unchanged is the index's own fault.
_LOAD_ATTEMPTS = 5

# Candidates per result that an angle-space search takes from FAISS before scoring them
# exactly: 2 recovers the exact fidelity top 100 with recall >= 0.99 (BENCHMARKS.md,
# "Retrieval in state space").
ANGLE_OVERSAMPLE = 2.0


@dataclass
class DocumentIndex:
    """A loaded index version.

    ``embeddings`` is the stored ``[count, dim]`` matrix (float32 or float16, read-only and
    memory-mapped): read rows through :meth:`embeddings_of` and :meth:`angles_of`, which
    return float32. ``path`` is the index path as given, ``version_dir`` the folder its files
    were read from (``path`` itself for an index of the old flat layout). ``lexical`` holds
    the BM25 terms, None for an index built without them (see :meth:`bm25`).
    ``stored_angles`` is format 1's angle matrix (None in format 2, where they are computed).
    """

    path: Path
    manifest: dict[str, Any]
    vectors: VectorIndex
    embeddings: np.ndarray
    store: DocStore
    version_dir: Path | None = None
    lexical: BM25Matrix | None = None
    stored_angles: np.ndarray | None = None
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

    @property
    def normalized(self) -> bool:
        """Whether the stored embeddings (and so the queries) are unit-normalised."""
        return bool(self.manifest["normalized"])

    @property
    def space(self) -> str:
        """The first-stage search space: "cosine" or "angles" (module docstring)."""
        return index_space(self.manifest)

    @property
    def dtype(self) -> str:
        """The storage dtype of the embeddings: float32 or float16."""
        return stored_dtype(self.manifest)

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def embeddings_of(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stored embeddings of index ``rows`` as float32 ``[len(rows), dim]`` (a copy)."""
        return np.asarray(self.embeddings[np.asarray(rows, dtype=np.int64)], dtype=np.float32)

    def angles_of(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Bloch angles ``[len(rows), dim]`` float32 of ``rows`` at the index's ``tau``.

        Computed from the stored embeddings (``bloch_angles`` is elementwise, so this equals the
        matrix format 1 stored); format 1's stored angles are read as they are.
        """
        if self.stored_angles is not None:
            return np.asarray(self.stored_angles[np.asarray(rows, dtype=np.int64)], dtype=np.float32)
        return bloch_angles(torch.from_numpy(self.embeddings_of(rows)), self.tau).numpy()

    @property
    def angles(self) -> np.ndarray:
        """All angles ``[count, dim]`` float32: materialised on each call, prefer :meth:`angles_of`."""
        return self.angles_of(np.arange(len(self)))

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
    def load(cls, path: str | os.PathLike[str], *, verify: bool = False) -> DocumentIndex:
        """Open the current version at ``path``; IndexFormatError if missing, corrupt or foreign.

        The pointer is read once and every file comes from the version it names. The default
        checks sizes, headers and schema (module docstring); ``verify`` also checks each file's
        sha256, that every value is finite and every document row (one full read of the index).
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
    def open_version(cls, path: Path, root: Path, *, verify: bool = False) -> DocumentIndex:
        """Load the index files in folder ``root`` (a version of ``path``); see :meth:`load`."""
        try:
            return cls._open(path, root, verify)
        except OSError as exc:  # e.g. the folder was retired under us: load() retries on the new one
            raise IndexFormatError(f"cannot read index {root}: {exc}") from exc

    @classmethod
    def _open(cls, path: Path, root: Path, verify: bool) -> DocumentIndex:
        manifest = read_manifest(root / MANIFEST)
        version = manifest["format_version"]
        kind, dim, count = manifest["index"]["kind"], manifest["dim"], manifest["count"]
        files = manifest["files"]
        lexical = has_lexical(manifest)
        names = required_files(kind, lexical, version, index_space(manifest))  # fixed by the manifest's schema
        for name in names:
            size = regular_file_size(root / name)
            if size != files[name]["bytes"]:
                raise IndexFormatError(
                    f"{root / name} is corrupt: {size} bytes, the manifest says {files[name]['bytes']}"
                )
        if verify:
            for name in names:
                if sha256_file(root / name) != files[name]["sha256"]:
                    raise IndexFormatError(
                        f"{root / name} is corrupt: its sha256 does not match the manifest"
                    )
        code = FLOAT_CODES[stored_dtype(manifest)]
        tensors: dict[str, TensorSpec] = {"embeddings": ((count, dim), code)}
        if version == 1:
            tensors["angles"] = ((count, dim), "F32")
        data = map_tensors(root / DATA_FILE, tensors)
        if verify:
            for name, matrix in data.items():
                check_finite(root / DATA_FILE, name, matrix)
        vectors = _load_vectors(root, manifest, data["embeddings"], verify)
        bm25 = read_bm25(root / LEXICAL_FILE, manifest["lexical"], count, sha256=None) if lexical else None
        store = DocStore(root / DOCS_FILE, count=count, verify=verify)
        return cls(
            path,
            manifest,
            vectors,
            data["embeddings"],
            store,
            version_dir=root,
            lexical=bm25,
            stored_angles=data.get("angles"),
        )

    def search(
        self, queries: np.ndarray, k: int, *, oversample: float = ANGLE_OVERSAMPLE
    ) -> tuple[np.ndarray, np.ndarray]:
        """First-stage top-k rows for query embeddings ``[Q, dim]`` in the index's space.

        Returns (scores ``[Q, k']``, rows ``[Q, k']``), best first, k' = min(k, count); rows
        of -1 (an IVF index with too few vectors in the probed lists) are dropped by the caller.
        Space "cosine": the cosines of the unit rows. Space "angles": the exact log-fidelity
        log F = sum_i log cos^2((theta_q,i - theta_d,i) / 2) of the best k of the
        ``ceil(oversample * k)`` rows nearest in L2 on the angles (ties to the lower row).
        """
        # queries go into the FAISS space by the same map as the stored rows
        q = ann_vectors(np.asarray(queries, dtype=np.float32), self.space, self.tau)
        if self.space == "cosine":
            return self.vectors.search(q, k)
        if not oversample >= 1.0:
            raise ValueError(f"oversample must be >= 1, got {oversample}")
        theta = torch.from_numpy(q)
        k = min(k, len(self))
        _, pool = self.vectors.search(q, min(len(self), math.ceil(oversample * k)))
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        rows = np.full((len(q), k), -1, dtype=np.int64)
        for i, found in enumerate(pool):
            found = found[found >= 0]
            if not len(found):
                continue
            logf_np = log_fidelity_candidates(theta[i], torch.from_numpy(self.angles_of(found))).numpy()
            best = np.lexsort((found, -logf_np))[:k]
            scores[i, : len(best)], rows[i, : len(best)] = logf_np[best], found[best]
        return scores, rows

    def documents(self, rows: Sequence[int]) -> list[Document]:
        return self.store.get(rows)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.store.close()


def verify_index(path: str | os.PathLike[str]) -> DocumentIndex:
    """Load ``path`` with every check (sha256 of each file, finite values, every row) and return it.

    IndexFormatError names the first bad file; ``qrerank verify DIR`` is this function.
    """
    return DocumentIndex.load(path, verify=True)


def _load_vectors(root: Path, manifest: dict[str, Any], embeddings: np.ndarray, verify: bool) -> VectorIndex:
    """The search structure of a validated manifest; a FAISS file is walked before FAISS parses it."""
    version = manifest["format_version"]
    kind, dim, count = manifest["index"]["kind"], manifest["dim"], manifest["count"]
    space = index_space(manifest)
    name = vector_file(kind, version, space)
    if name is None:  # format 2 flat/exact: search the embeddings in place
        return MatrixIndex(embeddings, kind)
    path = root / name
    if kind == "exact":  # format 1 kept a float32 copy of the unit vectors
        vectors = map_tensors(path, {"vectors": ((count, dim), "F32")})["vectors"]
        if verify:
            check_finite(path, "vectors", vectors)
        return MatrixIndex(vectors, kind)
    from qrerank.index.faiss import FaissIndex

    params = {k: v for k, v in manifest["index"].get("params", {}).items() if v is not None}
    metric = SPACE_METRICS[space]
    nlist = params.get("nlist") if kind == "ivf" else None
    check_faiss_file(path, kind, dim, count, nlist=nlist, metric=metric)
    try:
        index = FaissIndex.load(path, dim, kind, metric=metric, **params)
    except (RuntimeError, ValueError) as exc:  # FAISS raises RuntimeError for what it refuses
        raise IndexFormatError(f"cannot read {path}: {exc}") from exc
    if index.ntotal != count:
        raise IndexFormatError(f"{path} holds {index.ntotal} vectors, the manifest says {count}")
    return index
