"""Contract tests: what every Encoder and VectorIndex must do, whatever backs it.

Each implementation's test module subclasses a contract once per configuration::

    class TestHashingEncoderContract(EncoderContract):
        def make_encoder(self) -> Encoder:
            return HashingEncoder(64)

    class TestExactIndexContract(VectorIndexContract):
        def make_index(self, dim: int) -> VectorIndex:
            return ExactIndex(dim)

        def load_index(self, path: Path, dim: int) -> VectorIndex:
            return ExactIndex.load(path, dim)

The contracts' names do not start with ``Test``, so pytest collects them only through their
subclasses. The promises come from the protocol docstrings (``qrerank/embed/base.py``,
``qrerank/index/base.py``); where an implementation legitimately differs, a class attribute
says how (``exact = False`` with a ``min_recall`` for approximate indexes, ``batch_atol`` for
an encoder whose vectors depend on their batch), never a skipped test.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from qrerank.embed.base import Encoder, ShardedEncoder
from qrerank.index.base import VectorIndex

# Varied lengths (padding and batching matter), words the tiny test tokenizers know, no repeats.
TEXTS = (
    "qubit",
    "the bloch sphere of a qubit",
    "bread rises because yeast ferments sugar",
    "a cat sat on the mat next to the bread",
    "qubit bloch sphere cat bread yeast qubit bloch sphere cat",
    "fidelity between two states",
    "yeast",
    "sphere cat",
)


class EncoderContract:
    """An Encoder: ``name``/``dim``/``normalized``; float32 ``[n, dim]`` rows, one per text, in order.

    Subclasses define ``make_encoder()`` or override the ``encoder`` fixture (to reuse a fixture
    of their module, or widen its scope). Hooks: ``atol`` bounds the difference between two
    encodings of one text (repeat, reorder); ``batch_atol`` between ``batch_size`` 1 and a full
    batch (an encoder that quantizes per batch needs more); ``norm_atol`` the unit-norm check;
    ``texts`` the inputs (non-empty, distinct, of varied length).
    """

    atol: ClassVar[float] = 1e-5
    batch_atol: ClassVar[float] = 1e-5
    norm_atol: ClassVar[float] = 1e-5
    texts: ClassVar[tuple[str, ...]] = TEXTS

    def make_encoder(self) -> Encoder:
        raise NotImplementedError(f"{type(self).__name__}: define make_encoder() or an `encoder` fixture")

    @pytest.fixture
    def encoder(self) -> Encoder:
        return self.make_encoder()

    def test_has_the_protocol_attributes(self, encoder: Encoder) -> None:
        assert isinstance(encoder, Encoder)
        assert isinstance(encoder.name, str) and encoder.name
        assert isinstance(encoder.dim, int) and encoder.dim > 0
        assert isinstance(encoder.normalized, bool)

    def test_encode_returns_float32_rows(self, encoder: Encoder) -> None:
        vecs = encoder.encode(list(self.texts), batch_size=3, show_progress=False)
        assert isinstance(vecs, np.ndarray)
        assert vecs.shape == (len(self.texts), encoder.dim) and vecs.dtype == np.float32
        assert np.isfinite(vecs).all()

    def test_no_texts_give_zero_rows(self, encoder: Encoder) -> None:
        vecs = encoder.encode([])
        assert vecs.shape == (0, encoder.dim) and vecs.dtype == np.float32

    def test_same_text_same_vector(self, encoder: Encoder) -> None:
        texts = list(self.texts)
        first = encoder.encode(texts)
        np.testing.assert_allclose(encoder.encode(texts), first, atol=self.atol, rtol=0)
        repeated = encoder.encode([texts[1], texts[2], texts[1]])  # a repeat within one call
        np.testing.assert_allclose(repeated[2], repeated[0], atol=self.atol, rtol=0)
        np.testing.assert_allclose(repeated[:2], first[1:3], atol=self.atol, rtol=0)

    def test_rows_follow_the_input_order(self, encoder: Encoder) -> None:
        forward = encoder.encode(list(self.texts))
        backward = encoder.encode(tuple(reversed(self.texts)))  # any Sequence[str]
        np.testing.assert_allclose(backward, forward[::-1], atol=self.atol, rtol=0)

    def test_batch_size_does_not_change_the_vectors(self, encoder: Encoder) -> None:
        one = encoder.encode(list(self.texts), batch_size=1)
        full = encoder.encode(list(self.texts), batch_size=len(self.texts))
        np.testing.assert_allclose(one, full, atol=self.batch_atol, rtol=0)

    def test_normalized_rows_have_unit_norm(self, encoder: Encoder) -> None:
        if not encoder.normalized:
            pytest.skip("the encoder says it does not normalise")
        norms = np.linalg.norm(encoder.encode(list(self.texts)), axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=self.norm_atol, rtol=0)


class ShardedEncoderContract(EncoderContract):
    """A ShardedEncoder: the Encoder contract, and ``encode_shards`` covers every text exactly once."""

    def test_is_a_sharded_encoder(self, encoder: Encoder) -> None:
        assert isinstance(encoder, ShardedEncoder)

    def test_shards_cover_every_text_once(self, encoder: ShardedEncoder) -> None:
        texts = list(self.texts)
        expected = dict(zip(texts, encoder.encode(texts), strict=True))
        seen: list[str] = []
        for chunk, vecs in encoder.encode_shards(texts, batch_size=2):  # in any order
            assert vecs.shape == (len(chunk), encoder.dim) and vecs.dtype == np.float32
            for text, vec in zip(chunk, vecs, strict=True):
                np.testing.assert_allclose(vec, expected[text], atol=self.atol, rtol=0)
            seen.extend(chunk)
        assert sorted(seen) == sorted(texts)
        assert sum(len(chunk) for chunk, _ in encoder.encode_shards([])) == 0


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    """``[n, dim]`` seeded Gaussian rows scaled to unit length, float32."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class VectorIndexContract:
    """A VectorIndex: ``add`` appends rows, ``search`` returns the ``min(k, ntotal)`` best, best first.

    Subclasses define ``make_index(dim)`` (a new empty index) and ``load_index(path, dim)`` (what
    ``save(path)`` wrote). The data are unit vectors: callers normalise for cosine, and an index
    that scales its rows to unit length (MatrixIndex) is then the same inner-product search.
    Hooks: ``exact = False`` with ``min_recall`` (mean recall@k against brute force) for an
    approximate index, which may also pad a short result with FAISS's ``-1`` "no row" id;
    ``expected_scores`` for an index whose scores are not inner products (FAISS L2: negated
    squared distances).
    """

    exact: ClassVar[bool] = True
    min_recall: ClassVar[float] = 1.0
    dim: ClassVar[int] = 32
    n: ClassVar[int] = 500
    first_add: ClassVar[int] = 300  # rows of the first of two adds; the ids of the second follow on

    def make_index(self, dim: int) -> VectorIndex:
        raise NotImplementedError(f"{type(self).__name__}: define make_index(dim)")

    def load_index(self, path: Path, dim: int) -> VectorIndex:
        raise NotImplementedError(f"{type(self).__name__}: define load_index(path, dim)")

    def expected_scores(self, index: VectorIndex, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """The score of every (query, row) pair ``[Q, n]``: inner products by default."""
        return queries @ vectors.T

    # ------------------------------------------------------------------ fixtures and helpers

    @pytest.fixture
    def vectors(self) -> np.ndarray:
        return unit_rows(self.n, self.dim, seed=1)

    @pytest.fixture
    def queries(self, vectors: np.ndarray) -> np.ndarray:
        """Rows near the stored ones (an ANN index has something to find) and far from them."""
        noise = np.random.default_rng(2).standard_normal((20, self.dim)).astype(np.float32)
        near = vectors[:: self.n // 10][:10] + 0.05 * noise[:10]
        q = np.concatenate([near, noise[10:]])
        return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)

    @pytest.fixture
    def filled(self, vectors: np.ndarray) -> VectorIndex:
        index = self.make_index(self.dim)
        index.add(vectors[: self.first_add])
        index.add(vectors[self.first_add :])
        return index

    def assert_top_k(
        self, index: VectorIndex, queries: np.ndarray, vectors: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``index.search(queries, k)`` against brute force over ``vectors``; returns the search."""
        scores, ids = index.search(queries, k)
        truth = self.expected_scores(index, queries, vectors)
        best = np.argsort(-truth, axis=1, kind="stable")[:, :k]
        if self.exact:
            np.testing.assert_array_equal(ids, best)
            np.testing.assert_allclose(scores, np.take_along_axis(truth, best, axis=1), atol=1e-5, rtol=0)
        else:
            recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, best, strict=True)])
            assert recall >= self.min_recall, f"recall@{k} {recall:.3f} < {self.min_recall}"
            found = ids >= 0  # each row it returns carries that row's true score
            got = np.take_along_axis(truth, np.where(found, ids, 0), axis=1)
            np.testing.assert_allclose(scores[found], got[found], atol=1e-4, rtol=0)
        return scores, ids

    # ------------------------------------------------------------------ the contract

    def test_a_new_index_is_empty(self) -> None:
        index = self.make_index(self.dim)
        assert isinstance(index, VectorIndex)
        assert isinstance(index.kind, str) and index.kind
        assert index.dim == self.dim and index.ntotal == 0
        scores, ids = index.search(unit_rows(3, self.dim, seed=3), 5)
        assert scores.shape == ids.shape == (3, 0)

    def test_add_counts_rows(self, filled: VectorIndex) -> None:
        assert filled.ntotal == self.n

    def test_search_shapes_and_types(self, filled: VectorIndex, queries: np.ndarray) -> None:
        scores, ids = filled.search(queries, 7)
        assert scores.shape == ids.shape == (len(queries), 7)
        assert np.issubdtype(scores.dtype, np.floating) and np.issubdtype(ids.dtype, np.integer)

    def test_results_are_best_first(self, filled: VectorIndex, queries: np.ndarray) -> None:
        scores, _ = filled.search(queries, 25)
        assert (np.diff(scores, axis=1) <= 0).all()

    def test_top_k_matches_brute_force(
        self, filled: VectorIndex, queries: np.ndarray, vectors: np.ndarray
    ) -> None:
        self.assert_top_k(filled, queries, vectors, 10)

    def test_ids_continue_from_ntotal(self, filled: VectorIndex, vectors: np.ndarray) -> None:
        second = vectors[self.first_add : self.first_add + 10]  # rows of the second add
        _, ids = self.assert_top_k(filled, second, vectors, 1)
        if self.exact:
            assert ids[:, 0].tolist() == list(range(self.first_add, self.first_add + 10))

    def test_k_above_ntotal_returns_every_row(self) -> None:
        x = unit_rows(40, self.dim, seed=4)
        index = self.make_index(self.dim)
        index.add(x)
        scores, ids = index.search(x[:5], 100)
        assert scores.shape == ids.shape == (5, 40)
        assert ((ids >= (0 if self.exact else -1)) & (ids < 40)).all()
        self.assert_top_k(index, x[:5], x, 40)

    def test_save_and_load_give_the_same_results(
        self, filled: VectorIndex, queries: np.ndarray, tmp_path: Path
    ) -> None:
        filled.save(tmp_path / "index.bin")
        loaded = self.load_index(tmp_path / "index.bin", self.dim)
        assert (loaded.kind, loaded.dim, loaded.ntotal) == (filled.kind, filled.dim, filled.ntotal)
        scores, ids = filled.search(queries, 10)
        loaded_scores, loaded_ids = loaded.search(queries, 10)
        np.testing.assert_array_equal(loaded_ids, ids)
        np.testing.assert_allclose(loaded_scores, scores, atol=1e-6, rtol=0)

    def test_bad_vectors_are_refused_clearly(self, filled: VectorIndex) -> None:
        shape = rf"expected vectors of shape \[n, {self.dim}\]"
        with pytest.raises(ValueError, match=shape):
            self.make_index(self.dim).add(unit_rows(4, self.dim + 1, seed=5))
        with pytest.raises(ValueError, match=shape):
            filled.search(unit_rows(2, self.dim - 1, seed=5), 3)
        with pytest.raises(ValueError, match=shape):
            filled.search(unit_rows(1, self.dim, seed=5)[0], 3)  # one query is still [1, dim]
        bad = unit_rows(4, self.dim, seed=6)
        bad[2, 3] = np.nan
        with pytest.raises(ValueError, match="NaN or inf"):
            filled.add(bad)
        assert filled.ntotal == self.n  # nothing of a refused batch was added
