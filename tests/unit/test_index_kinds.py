"""The index-kind registry: every FAISS kind built through it; an unknown kind names the choices."""

from __future__ import annotations

import numpy as np
import pytest

from qrerank.cli import build_parser
from qrerank.index.faiss import FAISS_KINDS, FaissIndex
from qrerank.index.manifest import INDEX_KINDS


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
