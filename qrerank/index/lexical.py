r"""BM25 over a document collection (``bm25s``): the one implementation eval and index folders use.

Okapi BM25, Lucene variant, with Anserini's defaults k1 = 0.9, b = 0.4::

    score(q, d) = sum_{t in q} idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

Tokens come from bm25s' tokenizer (lowercased runs of 2+ word characters), English stopwords
removed, Snowball English stemmer (PyStemmer); the text of a document is ``Document.content``
(title and body). bm25s computes every term of the sum at index time into a sparse
``[vocab x docs]`` matrix in CSC layout, so a query costs one column gather per query term.

On disk (``lexical.safetensors`` in an index version folder; safetensors, so nothing is
unpickled)::

    data     F32 [nnz]          the precomputed terms, column by column
    indices  I32 [nnz]          their document rows
    indptr   I64 [vocab + 1]    column t (token id t) spans data[indptr[t]:indptr[t + 1]]
    vocab    U8  [vocab_bytes]  the tokens of ids 0..vocab-1, UTF-8, each followed by "\n"
                                (tokens are runs of word characters, so none holds one)

The manifest's ``lexical`` object gives vocab, nnz and vocab_bytes, so the file's exact size is
known before it is read, and :func:`read_bm25` checks every value (pointers increasing, rows in
range, terms finite and >= 0, tokens unique), so a tampered file fails even when its checksum
was fixed to match. Like ``qrerank.index`` as a whole, index folders must come from trusted
sources.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from qrerank._optional import require
from qrerank.errors import IndexFormatError, InputError, MissingExtraError
from qrerank.index.formats import read_tensors
from qrerank.index.manifest import LEXICAL_FIXED
from qrerank.types import Document

BM25_K1, BM25_B = 0.9, 0.4
EXTRA = "lexical"  # the pip extra that ships bm25s and PyStemmer (eval and all include it)


class NoLexicalIndexError(InputError):
    """A lexical method was asked of an index folder that holds no BM25 index."""


def require_bm25() -> tuple[Any, Any]:
    """The ``bm25s`` and ``Stemmer`` modules, or MissingExtraError naming the extra."""
    bm25s = require("bm25s", EXTRA)
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its logger to DEBUG on import
    return bm25s, require("Stemmer", EXTRA)


def check_bm25_available(what: str) -> None:
    """Fail before any work when bm25s/PyStemmer are missing; ``what`` says how to do without."""
    try:
        require_bm25()
    except MissingExtraError as exc:
        raise MissingExtraError(f"{exc}; or {what}") from exc


@dataclass(frozen=True, eq=False)
class BM25Matrix:
    """The precomputed BM25 terms of a collection (see the module docstring for the layout)."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    vocab: tuple[str, ...]
    num_docs: int
    k1: float = BM25_K1
    b: float = BM25_B

    @property
    def nnz(self) -> int:
        return int(self.data.shape[0])

    def vocab_bytes(self) -> bytes:
        return "".join(f"{t}\n" for t in self.vocab).encode("utf-8")


class BM25Scorer:
    """BM25 over a document collection with ``bm25s``; ``scores(query)`` covers every document.

    ``row`` maps doc_id -> row (the order given); empty for a scorer restored from an index
    folder, whose rows are the index rows.
    """

    def __init__(self, docs: Sequence[Document], *, k1: float = BM25_K1, b: float = BM25_B) -> None:
        bm25s, stemmer = require_bm25()
        self._bm25s = bm25s
        self._stemmer = stemmer.Stemmer(LEXICAL_FIXED["stemmer"])
        self.row = {d.doc_id: i for i, d in enumerate(docs)}
        tokens = bm25s.tokenize(
            [d.content for d in docs],
            stopwords=LEXICAL_FIXED["stopwords"],
            stemmer=self._stemmer,
            show_progress=False,
        )
        self._model = bm25s.BM25(k1=k1, b=b, method=LEXICAL_FIXED["method"])
        self._n = len(docs)
        self.k1, self.b = k1, b
        if tokens.vocab:
            self._model.index(tokens, show_progress=False)
        else:  # no document has a token (bm25s cannot index that): every score is 0
            self._model = None

    @classmethod
    def from_matrix(cls, matrix: BM25Matrix) -> BM25Scorer:
        """A scorer over precomputed terms (e.g. read from an index folder); scores as built."""
        bm25s, stemmer = require_bm25()
        self = cls.__new__(cls)
        self._bm25s, self._stemmer = bm25s, stemmer.Stemmer(LEXICAL_FIXED["stemmer"])
        self.row, self._n, self.k1, self.b = {}, matrix.num_docs, matrix.k1, matrix.b
        self._model = None
        if matrix.vocab:
            model = bm25s.BM25(k1=matrix.k1, b=matrix.b, method=LEXICAL_FIXED["method"])
            model.scores = {
                "data": matrix.data,
                "indices": matrix.indices,
                "indptr": matrix.indptr,
                "num_docs": matrix.num_docs,
            }
            model.vocab_dict = {t: i for i, t in enumerate(matrix.vocab)}
            model.nonoccurrence_array = None  # only bm25l / bm25+ have one
            self._model = model
        return self

    def __len__(self) -> int:
        return self._n

    def matrix(self) -> BM25Matrix:
        """The precomputed terms, for saving; bm25s' extra empty token "" (no column) is left out."""
        if self._model is None:
            empty = np.zeros(0, dtype=np.float32)
            return BM25Matrix(
                empty, np.zeros(0, np.int32), np.zeros(1, np.int64), (), self._n, self.k1, self.b
            )
        scores = self._model.scores
        indptr = np.asarray(scores["indptr"], dtype=np.int64)
        by_id = {i: t for t, i in self._model.vocab_dict.items() if i < len(indptr) - 1}
        if sorted(by_id) != list(range(len(indptr) - 1)) or any(not t or "\n" in t for t in by_id.values()):
            raise RuntimeError("bm25s vocabulary is not the ids 0..V-1 of non-empty tokens")
        return BM25Matrix(
            np.asarray(scores["data"], dtype=np.float32),
            np.asarray(scores["indices"], dtype=np.int32),
            indptr,
            tuple(by_id[i] for i in range(len(by_id))),
            self._n,
            self.k1,
            self.b,
        )

    def tokens(self, query: str) -> list[str]:
        """The query's terms as the index sees them (stopwords dropped, stemmed)."""
        return self._bm25s.tokenize(
            [query],
            stopwords=LEXICAL_FIXED["stopwords"],
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )[0]

    def scores(self, query: str) -> np.ndarray:
        """``[N]`` float32 BM25 scores of every document, in row order."""
        tokens = self.tokens(query)
        if not tokens or self._model is None:
            return np.zeros(self._n, dtype=np.float32)
        return np.asarray(self._model.get_scores(tokens), dtype=np.float32)

    def top_k(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores ``[k']``, rows ``[k']``) of the ``k`` best documents with a score > 0 (see :func:`top_rows`)."""
        scores = self.scores(query)
        rows = top_rows(scores, k)
        return scores[rows], rows


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` highest ``[N]`` scores that are > 0, best first, ties by lower row.

    A document scoring 0 shares no term with the query, so it is not a lexical match and is
    left out (fewer than ``k`` rows, possibly none).
    """
    hits = np.flatnonzero(scores > 0)  # ascending rows
    if len(hits) > k:  # O(N) selection, then sort only the survivors
        s = scores[hits]
        kth = np.partition(s, len(s) - k)[len(s) - k]  # the k-th highest score
        above = hits[s > kth]
        hits = np.concatenate([above, hits[s == kth][: k - len(above)]])  # ties at the cut: lower rows
    return hits[np.lexsort((hits, -scores[hits]))].astype(np.int64)


def save_bm25(path: Path, scorer: BM25Scorer) -> dict[str, Any]:
    """Write ``lexical.safetensors``; returns the manifest's ``lexical`` object."""
    m = scorer.matrix()
    vocab = m.vocab_bytes()
    save_file(
        {
            "data": m.data,
            "indices": m.indices,
            "indptr": m.indptr,
            "vocab": np.frombuffer(vocab, dtype=np.uint8),
        },
        str(path),
    )
    bm25s, _ = require_bm25()
    return {
        **LEXICAL_FIXED,
        "k1": m.k1,
        "b": m.b,
        "vocab": len(m.vocab),
        "nnz": m.nnz,
        "vocab_bytes": len(vocab),
        "library": "bm25s",
        "library_version": str(getattr(bm25s, "__version__", "")),
    }


def read_bm25(path: Path, entry: dict[str, Any], count: int, *, sha256: str | None) -> BM25Matrix:
    """Read and check ``lexical.safetensors`` against a validated manifest's ``lexical`` object."""
    vocab_n, nnz = entry["vocab"], entry["nnz"]
    t = read_tensors(
        path,
        {
            "data": ((nnz,), "F32"),
            "indices": ((nnz,), "I32"),
            "indptr": ((vocab_n + 1,), "I64"),
            "vocab": ((entry["vocab_bytes"],), "U8"),
        },
        sha256=sha256,
    )
    data, indices, indptr = t["data"], t["indices"], t["indptr"]

    def bad(what: str) -> IndexFormatError:
        return IndexFormatError(f"{path} is not a valid lexical index: {what}")

    if indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 0):
        raise bad(f"indptr must rise from 0 to nnz = {nnz}")
    if nnz and (indices.min() < 0 or indices.max() >= count):
        raise bad(f"document rows must lie in 0..{count - 1}")
    if not np.isfinite(data).all() or np.any(data < 0):
        raise bad("BM25 terms must be finite and >= 0")
    try:
        text = t["vocab"].tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(f"vocab is not UTF-8 ({exc})") from None
    if text and not text.endswith("\n"):
        raise bad("vocab must end with a newline")
    tokens = tuple(text.split("\n")[:-1])
    if len(tokens) != vocab_n or not all(tokens) or len(set(tokens)) != vocab_n:
        raise bad(f"vocab must hold {vocab_n} unique non-empty tokens")
    return BM25Matrix(data, indices, indptr, tokens, count, float(entry["k1"]), float(entry["b"]))
