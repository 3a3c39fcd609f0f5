"""The on-disk document index: vectors + embeddings + Bloch angles + texts + manifest.

Layout of an index directory::

    manifest.json            format, model, dim, count, index kind, tau, sha256 of every file
    vectors.faiss | vectors.safetensors   the ANN (or exact) index over unit vectors
    embeddings.safetensors   "embeddings" [n, d] as the encoder produced them, "angles" [n, d]
    docs.sqlite              doc_id, title, text, metadata per row

Directories are written to a temporary sibling, fsynced, then renamed into place, so a crash
never leaves a half-written index under the target name and an existing index survives a
failed rebuild. Loading verifies the format version, file checksums and counts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from qrerank import __version__
from qrerank._fs import atomic_dir, sha256_file
from qrerank.core.encoding import bloch_angles, default_tau
from qrerank.embed.base import Encoder
from qrerank.errors import IndexFormatError, InputError
from qrerank.index.base import VectorIndex
from qrerank.index.exact import ExactIndex
from qrerank.index.store import DocStore, write_store
from qrerank.types import Document

log = logging.getLogger(__name__)

FORMAT = "qrerank-index"
FORMAT_VERSION = 1
INDEX_KINDS = ("flat", "ivf", "hnsw", "exact")
_DATA = "embeddings.safetensors"
_DOCS = "docs.sqlite"


def _vector_file(kind: str) -> str:
    return "vectors.safetensors" if kind == "exact" else "vectors.faiss"


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
) -> DocumentIndex:
    """Encode ``docs``, write an index directory at ``out`` atomically, and return it loaded."""
    out = Path(out)
    if not docs:
        raise InputError("cannot index an empty corpus")
    ids = [d.doc_id for d in docs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"duplicate document id {dup!r}")
    if out.exists() and not (out / "manifest.json").exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not a qrerank index; refusing to overwrite it")
    params = dict(index_params or {})
    vectors_index = _new_vector_index(kind, encoder.dim, params)
    t0 = time.perf_counter()
    emb = encoder.encode([d.content for d in docs], batch_size=batch_size, show_progress=show_progress)
    encode_s = time.perf_counter() - t0
    tau = tau if tau is not None else default_tau(encoder.dim)
    angles = bloch_angles(torch.from_numpy(emb), tau).numpy()
    vectors_index.add(unit_rows(emb))

    with atomic_dir(out) as tmp:
        vectors_index.save(tmp / _vector_file(kind))
        save_file({"embeddings": emb, "angles": angles}, str(tmp / _DATA))
        write_store(tmp / _DOCS, docs)
        if kind == "ivf":
            params["nlist"] = getattr(vectors_index, "nlist", None)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "qrerank_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": encoder.name,
            "dim": encoder.dim,
            "normalized": bool(encoder.normalized),
            "count": len(docs),
            "tau": tau,
            "index": {"kind": kind, "params": params},
            "encode_seconds": round(encode_s, 3),
            "files": {
                name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                for name in (_vector_file(kind), _DATA, _DOCS)
            },
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("indexed %d docs with %s in %.1fs -> %s", len(docs), encoder.name, encode_s, out)
    return DocumentIndex.load(out)


@dataclass
class DocumentIndex:
    """A loaded index directory. ``embeddings`` and ``angles`` are ``[count, dim]`` float32."""

    path: Path
    manifest: dict[str, Any]
    vectors: VectorIndex
    embeddings: np.ndarray
    angles: np.ndarray
    store: DocStore

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def tau(self) -> float:
        return float(self.manifest["tau"])

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, verify: bool = True) -> DocumentIndex:
        """Open an index directory; raises IndexFormatError if it is missing, corrupt or foreign."""
        path = Path(path)
        mpath = path / "manifest.json"
        if not mpath.is_file():
            raise IndexFormatError(f"{path} is not a qrerank index: no manifest.json")
        try:
            manifest = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IndexFormatError(f"{mpath} is not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexFormatError(f"{mpath} is not a qrerank index manifest")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(
                f"{path} has index format version {manifest.get('format_version')}, this qrerank "
                f"reads version {FORMAT_VERSION}; rebuild it with `qrerank index`"
            )
        try:
            kind = manifest["index"]["kind"]
            dim, count = int(manifest["dim"]), int(manifest["count"])
            files = manifest["files"]
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFormatError(f"{mpath} lacks field {exc}") from exc
        for name, meta in files.items():
            fpath = path / name
            if not fpath.is_file():
                raise IndexFormatError(f"{path} is incomplete: {name} is missing")
            if verify and sha256_file(fpath) != meta.get("sha256"):
                raise IndexFormatError(f"{fpath} is corrupt: its sha256 does not match the manifest")
        try:
            data = load_file(str(path / _DATA))
            if kind == "exact":
                vectors: VectorIndex = ExactIndex.load(path / _vector_file(kind), dim)
            else:
                from qrerank.index.faiss import FaissIndex

                params = {k: v for k, v in manifest["index"].get("params", {}).items() if v is not None}
                vectors = FaissIndex.load(path / _vector_file(kind), dim, kind, **params)
            store = DocStore(path / _DOCS)
        except (OSError, RuntimeError, ValueError) as exc:
            raise IndexFormatError(f"cannot read index {path}: {exc}") from exc
        emb, angles = data.get("embeddings"), data.get("angles")
        sizes = {
            "vectors": vectors.ntotal,
            "documents": len(store),
            "embeddings": None if emb is None else emb.shape[0],
            "angles": None if angles is None else angles.shape[0],
        }
        if any(v != count for v in sizes.values()) or emb is None or emb.shape[1] != dim:
            store.close()
            raise IndexFormatError(f"{path} is inconsistent: manifest count {count}, found {sizes}")
        assert angles is not None
        return cls(path, manifest, vectors, emb, angles, store)

    def search(self, unit_queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by cosine for ``[Q, dim]`` unit queries: (cosines, rows), -1 rows dropped by caller."""
        return self.vectors.search(unit_queries, k)

    def documents(self, rows: Sequence[int]) -> list[Document]:
        return self.store.get(rows)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.store.close()
