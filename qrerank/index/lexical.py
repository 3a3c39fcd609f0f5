r"""BM25 over a document collection (``bm25s``): the one implementation eval and index folders use.

Okapi BM25, Lucene variant, with Anserini's defaults k1 = 0.9, b = 0.4::

    score(q, d) = sum_{t in q} idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

Tokens come from bm25s' tokenizer (lowercased runs of 2+ word characters), English stopwords
removed, Snowball English stemmer (PyStemmer); the text of a document is ``Document.content``
(title and body). Every term of the sum is computed at index time into a sparse
``[vocab x docs]`` matrix in CSC layout, so a query costs one column gather per query term.

:class:`BM25Builder` builds that matrix from documents fed a chunk at a time: bm25s' own
``BM25.index`` needs every document's tokens at once (its ``build_index_from_ids`` walks the
token lists three times: lengths, document frequencies, then the terms), so the builder keeps,
per document, only its length and its (token id, count) pairs as int32 arrays (8 bytes per
distinct term of a document; no text), in memory or spilled to a temporary file, and computes
the same float32 terms as bm25s 0.3, bit for bit, when all are in (``tests/unit/test_lexical.py``
holds it against ``BM25.index``).
Token ids follow the order in which tokens first occur, so a build does not depend on
``PYTHONHASHSEED`` (bm25s numbers a chunk's stems in set order).

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

import contextlib
import itertools
import logging
import math
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from safetensors.numpy import save_file

from qrerank._optional import require
from qrerank.errors import IndexFormatError, InputError, MissingExtraError
from qrerank.index.formats import read_tensors
from qrerank.index.manifest import LEXICAL_FIXED
from qrerank.types import Document

BM25_K1, BM25_B = 0.9, 0.4
CHUNK = 4096  # documents tokenised per bm25s call
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


class _Pairs:
    """Each added chunk's int32 arrays (token ids, counts, pairs per doc, lengths), in order.

    Held in memory, or written to ``file`` (a temporary file) and read back one chunk at a time
    by :meth:`drain`.
    """

    def __init__(self, file: BinaryIO | None) -> None:
        self._file = file
        self._chunks: list[tuple[np.ndarray, ...]] = []
        self._sizes: list[tuple[int, ...]] = []

    def append(self, arrays: tuple[np.ndarray, ...]) -> None:
        if self._file is None:
            self._chunks.append(arrays)
            return
        self._sizes.append(tuple(len(a) for a in arrays))
        for a in arrays:
            self._file.write(np.ascontiguousarray(a, dtype=np.int32).tobytes())

    def drain(self) -> Iterator[tuple[np.ndarray, ...]]:
        """The chunks in order, each let go once the next is asked for; empty afterwards."""
        if self._file is None:
            while self._chunks:
                yield self._chunks.pop(0)
            return
        self._file.seek(0)
        while self._sizes:
            yield tuple(np.fromfile(self._file, dtype=np.int32, count=n) for n in self._sizes.pop(0))
        self._file.truncate(0)


class BM25Builder:
    """The BM25 matrix of documents added a chunk at a time, in row order (see the module docstring).

    Memory: the vocabulary and its document frequencies, per document its length (4 bytes)
    and its distinct terms (8 bytes each: token id and count, int32), unless ``spill`` (an open
    temporary file) holds those; :meth:`matrix` then fills the 8-byte (term, row) entries of
    the result, reading the pairs back a chunk at a time.
    """

    def __init__(self, *, k1: float = BM25_K1, b: float = BM25_B, spill: BinaryIO | None = None) -> None:
        self._bm25s, stemmer = require_bm25()
        self._stemmer = stemmer.Stemmer(LEXICAL_FIXED["stemmer"])
        self.k1, self.b = k1, b
        self._vocab: dict[str, int] = {}
        self._pairs = _Pairs(spill)
        self._df = np.zeros(0, dtype=np.int64)
        self._n = 0
        self._tokens = 0

    def add(self, texts: Sequence[str]) -> None:
        """Tokenise ``texts`` (the next rows) and keep their (token id, count) pairs."""
        if not texts:
            return
        tok = self._bm25s.tokenize(
            list(texts), stopwords=LEXICAL_FIXED["stopwords"], stemmer=self._stemmer, show_progress=False
        )
        lengths = np.fromiter((len(ids) for ids in tok.ids), dtype=np.int64, count=len(texts))
        flat = np.fromiter(itertools.chain.from_iterable(tok.ids), dtype=np.int64, count=int(lengths.sum()))
        pairs, tf = np.unique(
            np.repeat(np.arange(len(texts)), lengths) << 32 | self._global_ids(tok.vocab, flat),
            return_counts=True,
        )  # sorted by (doc, token)
        terms = (pairs & 0xFFFFFFFF).astype(np.int32)
        per_doc = np.bincount(pairs >> 32, minlength=len(texts))
        self._pairs.append((terms, tf.astype(np.int32), per_doc.astype(np.int32), lengths.astype(np.int32)))
        self._df = np.concatenate([self._df, np.zeros(len(self._vocab) - len(self._df), dtype=np.int64)])
        self._df += np.bincount(terms, minlength=len(self._vocab))
        self._n += len(texts)
        self._tokens += int(lengths.sum())

    def _global_ids(self, local: dict[str, int], flat: np.ndarray) -> np.ndarray:
        """``flat`` (a chunk's bm25s token ids) as this builder's ids, new tokens numbered by first occurrence."""
        stem_of = [""] * len(local)
        for stem, i in local.items():
            stem_of[i] = stem
        ids, first = np.unique(flat, return_index=True)
        remap = np.zeros(len(local), dtype=np.int64)
        for i in ids[np.argsort(first)].tolist():
            remap[i] = self._vocab.setdefault(stem_of[i], len(self._vocab))
        return remap[flat]

    def __len__(self) -> int:
        return self._n

    def matrix(self) -> BM25Matrix:
        """The CSC matrix of every document added; the builder is empty afterwards.

        The terms are bm25s' (method lucene): idf = log(1 + (N - df + 0.5) / (df + 0.5)) in
        float64 (``math.log``) stored as float32, times tf / (k1 * (1 - b + b * |d| / avgdl) + tf)
        in float64, rounded to float32.
        """
        n, vocab, df = self._n, tuple(self._vocab), self._df
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        idf = np.array([math.log(1 + (n - f + 0.5) / (f + 0.5)) for f in df.tolist()], dtype=np.float32)
        avgdl = np.float64(self._tokens) / n if n else np.float64(0)
        data = np.empty(int(indptr[-1]), dtype=np.float32)
        indices = np.empty(int(indptr[-1]), dtype=np.int32)
        cursor, row = indptr[:-1].copy(), 0
        for terms, tf, per_doc, lengths in self._pairs.drain():
            rows = np.repeat(np.arange(row, row + len(per_doc), dtype=np.int32), per_doc)
            denom = self.k1 * ((1 - self.b) + self.b * np.repeat(lengths.astype(np.int64), per_doc) / avgdl)
            tf32 = tf.astype(np.float32)
            values = (idf[terms] * (tf32 / (denom + tf32))).astype(np.float32)
            order = np.argsort(terms, kind="stable")  # (token, row) order: each column's rows ascending
            sorted_terms = terms[order]
            rank = np.arange(len(order)) - np.searchsorted(sorted_terms, sorted_terms)
            at = cursor[sorted_terms] + rank
            data[at], indices[at] = values[order], rows[order]
            ids, counts = np.unique(sorted_terms, return_counts=True)
            cursor[ids] += counts
            row += len(per_doc)
        self._vocab, self._df, self._n, self._tokens = {}, np.zeros(0, dtype=np.int64), 0, 0
        return BM25Matrix(data, indices, indptr, vocab, n, self.k1, self.b)


def bm25_matrix(
    texts: Iterable[str], *, k1: float = BM25_K1, b: float = BM25_B, spill: Path | None = None
) -> BM25Matrix:
    """The BM25 matrix of ``texts`` (row i = the i-th), tokenised CHUNK at a time.

    With ``spill`` (a folder), the (token, count) pairs wait in an unnamed temporary file there
    instead of in memory, about 8 bytes per distinct term of a document.
    """
    with contextlib.ExitStack() as stack:
        file = stack.enter_context(tempfile.TemporaryFile(dir=spill)) if spill is not None else None
        builder = BM25Builder(k1=k1, b=b, spill=file)
        it = iter(texts)
        while chunk := list(itertools.islice(it, CHUNK)):
            builder.add(chunk)
        return builder.matrix()


class BM25Scorer:
    """BM25 over a document collection with ``bm25s``; ``scores(query)`` covers every document.

    ``row`` maps doc_id -> row (the order given); empty for a scorer restored from an index
    folder, whose rows are the index rows. The matrix comes from :class:`BM25Builder`.
    """

    def __init__(self, docs: Iterable[Document], *, k1: float = BM25_K1, b: float = BM25_B) -> None:
        self.row: dict[str, int] = {}

        def contents() -> Iterator[str]:
            for i, d in enumerate(docs):
                self.row[d.doc_id] = i
                yield d.content

        self._setup(bm25_matrix(contents(), k1=k1, b=b))

    @classmethod
    def from_matrix(cls, matrix: BM25Matrix) -> BM25Scorer:
        """A scorer over precomputed terms (e.g. read from an index folder); scores as built."""
        self = cls.__new__(cls)
        self.row = {}
        self._setup(matrix)
        return self

    def _setup(self, matrix: BM25Matrix) -> None:
        bm25s, stemmer = require_bm25()
        self._bm25s, self._stemmer = bm25s, stemmer.Stemmer(LEXICAL_FIXED["stemmer"])
        self._matrix, self._n, self.k1, self.b = matrix, matrix.num_docs, matrix.k1, matrix.b
        self._model = None
        if matrix.vocab:  # else no document has a token: every score is 0
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

    def __len__(self) -> int:
        return self._n

    def matrix(self) -> BM25Matrix:
        """The precomputed terms, for saving."""
        return self._matrix

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


def save_bm25(path: Path, m: BM25Matrix) -> dict[str, Any]:
    """Write ``lexical.safetensors``; returns the manifest's ``lexical`` object."""
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
