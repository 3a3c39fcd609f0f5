"""FAISS indexes [faiss]: flat (exact), IVF and HNSW (approximate), by inner product or L2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from qrerank._optional import require
from qrerank.index.base import check_vectors


def _faiss() -> Any:
    return require("faiss", "faiss")


METRICS = ("ip", "l2")
# HNSW's search width when the index does not set one. FAISS's 128 found 81% of the exact top 10
# at 1M documents (M 32), 512 found 94% for ~1 ms more per query (BENCHMARKS.md, ANN settings).
EF_SEARCH = 512


def _metric_code(metric: str) -> int:
    faiss = _faiss()
    if metric not in METRICS:
        raise ValueError(f"unknown FAISS metric {metric!r}; choose ip or l2")
    return int(faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2)


def _flat(dim: int, metric: str, m: int) -> Any:
    faiss = _faiss()
    return faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)


def _hnsw(dim: int, metric: str, m: int) -> Any:
    return _faiss().IndexHNSWFlat(dim, m, _metric_code(metric))


def _ivf(dim: int, metric: str, m: int) -> Any:
    return None  # FaissIndex.train builds the lists, once it has the sample (and n) to size them by


# The registry of FAISS index kinds: kind -> factory of its empty FAISS structure for
# (dim, metric, HNSW links m). FaissIndex builds every new index through it; the manifest's
# INDEX_KINDS are these plus "exact" (no FAISS structure: a search of the stored matrix).
FAISS_KINDS: dict[str, Callable[[int, str, int], Any]] = {"flat": _flat, "ivf": _ivf, "hnsw": _hnsw}


class FaissIndex:
    """A FAISS index with METRIC_INNER_PRODUCT (``metric="ip"``) or METRIC_L2 (``"l2"``).

    ``kind``, a key of :data:`FAISS_KINDS`: "flat" (IndexFlatIP / IndexFlatL2, exact), "ivf"
    (IndexIVFFlat; trained on the first ``add``, ``nlist`` defaults to ~4 sqrt(n) capped by n/39
    so each list gets FAISS's minimum training points; ``nprobe`` lists searched) or "hnsw"
    (IndexHNSWFlat with ``m`` links, ``ef_search``). :meth:`search` returns scores best first,
    so for L2 they are the negated squared distances.
    """

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        *,
        nlist: int | None = None,
        nprobe: int = 16,
        m: int = 32,
        ef_search: int = EF_SEARCH,
        metric: str = "ip",
        index: Any = None,
    ) -> None:
        if kind not in FAISS_KINDS:
            raise ValueError(f"unknown FAISS index kind {kind!r}; choose one of {', '.join(FAISS_KINDS)}")
        self.dim, self.kind, self.metric = dim, kind, metric
        self.nlist, self.nprobe, self.m, self.ef_search = nlist, nprobe, m, ef_search
        code = _metric_code(metric)
        if index is not None:
            if int(index.metric_type) != code:
                raise ValueError(f"FAISS index has metric {int(index.metric_type)}, expected {metric} ({code})")
            self._index = index
        else:
            self._index = FAISS_KINDS[kind](dim, metric, m)
        self._apply_search_params()

    def _apply_search_params(self) -> None:
        if self._index is None:
            return
        if hasattr(self._index, "nprobe"):
            self._index.nprobe = self.nprobe
        if hasattr(self._index, "hnsw"):
            self._index.hnsw.efSearch = self.ef_search

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def is_trained(self) -> bool:
        """False only for an IVF index before :meth:`train` (or its first :meth:`add`)."""
        return self._index is not None

    def train(self, sample: np.ndarray, nlist: int | None = None) -> None:
        """Train a new IVF index's ``nlist`` lists on ``sample`` ``[m, dim]`` (the vectors it will hold)."""
        x = check_vectors(sample, self.dim)
        faiss = _faiss()
        self.nlist = nlist or self.nlist or max(1, min(int(4 * np.sqrt(len(x))), len(x) // 39))
        quantizer = faiss.IndexFlatIP(self.dim) if self.metric == "ip" else faiss.IndexFlatL2(self.dim)
        self._index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, _metric_code(self.metric))
        self._index.train(x)
        self._apply_search_params()

    def add(self, vectors: np.ndarray) -> None:
        x = check_vectors(vectors, self.dim)
        if self._index is None:  # IVF: trained on the first batch when not trained before
            self.train(x)
        self._index.add(x)

    def reset(self) -> None:
        """Remove every vector; a trained IVF keeps its lists (so rows can be re-added)."""
        if self._index is not None:
            self._index.reset()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = check_vectors(queries, self.dim)
        k = min(k, self.ntotal)
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        scores, ids = self._index.search(q, k)
        if self.metric == "l2":  # squared distances, ascending: negate so higher is better
            scores = np.negative(scores, out=scores)
        return scores, ids.astype(np.int64)

    def save(self, path: Path) -> None:
        _faiss().write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path, dim: int, kind: str, **params: Any) -> FaissIndex:
        index = _faiss().read_index(str(path))
        if index.d != dim:
            raise ValueError(f"FAISS index has dim {index.d}, manifest says {dim}")
        return cls(dim, kind, index=index, **params)
