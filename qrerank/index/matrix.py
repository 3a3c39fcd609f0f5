"""Exact cosine top-k over a stored embedding matrix, searched in place (no second copy).

Format-2 ``flat`` and ``exact`` indexes keep no ANN file: their search reads the memory-mapped
``embeddings`` ``[n, d]`` (float32 or float16) block by block. Rows are scaled to unit length
on the fly (their inverse norms are cached, 4 bytes per row, filled on first touch), so raw
(``--raw``) and float16 embeddings rank by cosine like the unit vectors FAISS was given before.
Only one block is ever converted to float32, so a search over 1M rows needs tens of MB, not GB.
"""

from __future__ import annotations

import mmap
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

from qrerank.index.base import check_vectors

BLOCK = 1 << 15  # rows per block: 48 MB of float32 at d = 384


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _mapping(arr: np.ndarray) -> mmap.mmap | None:
    """The mmap behind ``arr`` (np.memmap, np.load(mmap_mode=...), our map_tensors), if any."""
    base: object = arr
    for _ in range(16):
        if isinstance(base, mmap.mmap):
            return base
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
        if base is None:
            return None
    return None


def iter_blocks(matrix: np.ndarray, start: int = 0, block: int = BLOCK) -> Iterator[np.ndarray]:
    """Rows ``start:`` of ``matrix`` ``[n, d]`` as float32 copies, ``block`` rows at a time.

    For a memory-mapped matrix each block's pages are handed back (MADV_DONTNEED) once it has
    been copied: a pass over a file-backed matrix would otherwise keep all of it resident in
    this process (it stays in the page cache, shared, for the next reader).
    """
    mm = _mapping(matrix)
    origin = np.frombuffer(mm, dtype=np.uint8).ctypes.data if mm is not None else 0
    for s in range(start, len(matrix), block):
        view = matrix[s : s + block]
        rows = np.array(view, dtype=np.float32)  # a copy, so the mapped pages can go
        if mm is not None and hasattr(mm, "madvise") and view.size:
            lo = view.ctypes.data - origin
            lo_page = lo - lo % mmap.PAGESIZE
            hi = min(lo + view.nbytes, len(mm))
            mm.madvise(mmap.MADV_DONTNEED, lo_page, hi - lo_page)
        yield rows


def _as_float32(view: np.ndarray) -> np.ndarray:
    """``view`` as float32: itself when stored so; float16 through torch, ~2.5x numpy's conversion."""
    if view.dtype == np.float32:
        return view
    with warnings.catch_warnings():  # read-only memory map: torch warns, but the tensor is only read
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(view).float().numpy()


def _inverse_norms(block: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", block, block))
    return np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)


class MatrixIndex:
    """Exact inner-product top-k of unit queries against the unit rows of ``matrix`` ``[n, d]``.

    Ties go to the lower row (as :class:`~qrerank.index.exact.ExactIndex`); rows whose score is
    NaN (a corrupt row in an index loaded without ``verify``) rank last instead of failing.
    """

    def __init__(self, matrix: np.ndarray, kind: str = "flat", *, block: int = BLOCK) -> None:
        if matrix.ndim != 2:
            raise ValueError(f"expected a matrix [n, d], got shape {matrix.shape}")
        self.kind, self.dim, self.block = kind, int(matrix.shape[1]), block
        self._matrix = matrix
        self._inv = np.full(len(matrix), np.nan, dtype=np.float32)  # NaN: not computed yet

    @property
    def ntotal(self) -> int:
        return int(self._matrix.shape[0])

    def add(self, vectors: np.ndarray) -> None:
        """Append rows in memory (the stored matrix itself is read-only)."""
        x = check_vectors(vectors, self.dim)
        self._matrix = np.concatenate([np.asarray(self._matrix, dtype=np.float32), x])
        self._inv = np.concatenate([self._inv, np.full(len(x), np.nan, dtype=np.float32)])

    def save(self, path: Path) -> None:
        """Write the rows as the safetensors tensor "vectors" (as the format-1 ``exact`` file)."""
        save_file({"vectors": np.ascontiguousarray(self._matrix, dtype=np.float32)}, str(path))

    def _block(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start:start + block`` as float32 (a view when stored so) and their inverse norms."""
        view = self._matrix[start : start + self.block]
        rows = _as_float32(view)
        inv = self._inv[start : start + len(rows)]
        if np.isnan(inv[0]) or np.isnan(inv[-1]):  # filled a whole block at a time
            inv[:] = _inverse_norms(rows)
        return rows, inv

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``[Q, d]`` -> (cosines ``[Q, k']``, rows ``[Q, k']``), k' = min(k, n), best first."""
        q = check_vectors(queries, self.dim)
        k = min(k, self.ntotal)
        best_s = np.zeros((len(q), 0), np.float32)
        best_i = np.zeros((len(q), 0), np.int64)
        if k == 0:
            return best_s, best_i
        for start in range(0, self.ntotal, self.block):
            rows, inv = self._block(start)
            s = (q @ rows.T) * inv
            s[np.isnan(s)] = -np.inf
            ids = np.broadcast_to(np.arange(start, start + len(rows), dtype=np.int64), s.shape)
            best_s, best_i = _top_k(np.hstack([best_s, s]), np.hstack([best_i, ids]), k)
        return best_s, best_i


def _top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``min(k, m)`` best (score desc, id asc) of candidates ``[Q, m]``.

    Fewer than ``k`` when the blocks seen so far hold fewer rows (k above the block size).
    """
    if scores.shape[1] > k:  # cut to the k-th score, keeping every tie at the cut
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
        keep = scores >= kth
    else:
        keep = np.ones(scores.shape, dtype=bool)
    width = min(k, scores.shape[1])
    out_s = np.empty((len(scores), width), np.float32)
    out_i = np.empty((len(scores), width), np.int64)
    for r in range(len(scores)):
        s, i = scores[r, keep[r]], ids[r, keep[r]]
        order = np.lexsort((i, -s))[:k]
        out_s[r], out_i[r] = s[order], i[order]
    return out_s, out_i
