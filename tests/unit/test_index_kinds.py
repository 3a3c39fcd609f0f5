"""The index kinds: every FAISS kind built through the registry, and every index keeps the contract.

The VectorIndex contract (tests/contracts.py) runs on ExactIndex, MatrixIndex (the stored
matrix of the ``flat`` and ``exact`` kinds, in one block and in many) and FaissIndex for every
kind of ``FAISS_KINDS`` and both metrics; flat is exact, ivf and hnsw are held to a recall.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from safetensors.numpy import load_file

from qrerank.cli import build_parser
from qrerank.index.base import VectorIndex
from qrerank.index.exact import ExactIndex
from qrerank.index.faiss import FAISS_KINDS, METRICS, FaissIndex
from qrerank.index.manifest import INDEX_KINDS
from qrerank.index.matrix import BLOCK, MatrixIndex
from tests.contracts import VectorIndexContract


def test_the_registry_lists_every_kind() -> None:
    assert tuple(FAISS_KINDS) == ("flat", "ivf", "hnsw")
    assert (*FAISS_KINDS, "exact") == INDEX_KINDS  # exact: the stored matrix, no FAISS structure
    for kind in INDEX_KINDS:  # qrerank index --kind takes each
        assert build_parser().parse_args(["index", "corpus.jsonl", "--out", "o", "--kind", kind]).kind == kind


def test_an_unknown_kind_names_the_choices() -> None:
    # refused before FAISS is imported, so this holds without the [faiss] extra too
    with pytest.raises(ValueError, match="unknown FAISS index kind 'lsh'; choose one of flat, ivf, hnsw"):
        FaissIndex(8, "lsh")


@pytest.mark.parametrize("kind", list(FAISS_KINDS))
def test_each_kind_builds_its_faiss_structure(kind: str) -> None:
    faiss = pytest.importorskip("faiss")
    index = FaissIndex(8, kind, m=4, metric="l2")
    assert index.kind == kind and index.ntotal == 0
    assert index.is_trained == (kind != "ivf")  # ivf's lists wait for their training sample
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    index.add(x)
    expected = {"flat": faiss.IndexFlatL2, "ivf": faiss.IndexIVFFlat, "hnsw": faiss.IndexHNSWFlat}[kind]
    assert type(index._index) is expected and int(index._index.metric_type) == faiss.METRIC_L2
    _, ids = index.search(x[:3], 1)
    assert ids[:, 0].tolist() == [0, 1, 2]  # each row finds itself


# --------------------------------------------------------------------------- the VectorIndex contract


class TestExactIndexContract(VectorIndexContract):
    def make_index(self, dim: int) -> VectorIndex:
        return ExactIndex(dim)

    def load_index(self, path: Path, dim: int) -> VectorIndex:
        return ExactIndex.load(path, dim)


class TestMatrixIndexContract(VectorIndexContract):
    block: ClassVar[int] = BLOCK  # one block for these rows

    def make_index(self, dim: int) -> VectorIndex:
        return MatrixIndex(np.zeros((0, dim), dtype=np.float32), block=self.block)

    def load_index(self, path: Path, dim: int) -> VectorIndex:
        # save() writes the format-1 exact file; the index directory maps it back the same way
        return MatrixIndex(load_file(str(path))["vectors"], block=self.block)


class TestMatrixIndexInBlocksContract(TestMatrixIndexContract):
    # The top k merged over 14 blocks, the last one short; a k above the block size once failed
    # (the first block has fewer than k rows to fill k columns): the contract's k above ntotal.
    block = 37


class FaissContract(VectorIndexContract):
    """FaissIndex of ``kind`` and ``metric``: flat is exact, the others approximate."""

    kind: ClassVar[str]
    metric: ClassVar[str]
    exact = False  # the flat subclasses say True
    min_recall = 0.9

    def make_index(self, dim: int) -> VectorIndex:
        pytest.importorskip("faiss")
        return FaissIndex(dim, self.kind, metric=self.metric)

    def load_index(self, path: Path, dim: int) -> VectorIndex:
        return FaissIndex.load(path, dim, self.kind, metric=self.metric)

    def expected_scores(self, index: VectorIndex, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        if self.metric == "ip":
            return queries @ vectors.T
        return -((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)  # negated squared L2


class TestFaissFlatIPContract(FaissContract):
    kind, metric, exact = "flat", "ip", True


class TestFaissFlatL2Contract(FaissContract):
    kind, metric, exact = "flat", "l2", True


class TestFaissIvfIPContract(FaissContract):
    kind, metric = "ivf", "ip"


class TestFaissIvfL2Contract(FaissContract):
    kind, metric = "ivf", "l2"


class TestFaissHnswIPContract(FaissContract):
    kind, metric = "hnsw", "ip"


class TestFaissHnswL2Contract(FaissContract):
    kind, metric = "hnsw", "l2"


def test_every_faiss_kind_and_metric_runs_the_contract() -> None:
    covered = {(c.kind, c.metric) for c in FaissContract.__subclasses__()}
    assert covered == {(kind, metric) for kind in FAISS_KINDS for metric in METRICS}
