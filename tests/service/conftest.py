"""Fixtures for the service tests: a keyword-hashing reranker, the demo corpus and its index."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from qrerank.corpus import read_jsonl
from qrerank.embed.hashing import HashingEncoder
from qrerank.rerank.reranker import Reranker
from qrerank.types import Document


@pytest.fixture(scope="session")
def reranker() -> Reranker:
    """A dependency-free reranker (HashingEncoder): instant, deterministic, lexical."""
    return Reranker(HashingEncoder(256))


@pytest.fixture(scope="session")
def corpus() -> list[Document]:
    data = resources.files("qrerank") / "data" / "demo_corpus.jsonl"
    with resources.as_file(data) as path:
        return read_jsonl(path)


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[Document]) -> Path:
    from qrerank.index.directory import build_index

    out = tmp_path_factory.mktemp("service") / "index"
    build_index(corpus, HashingEncoder(256), out, kind="exact")
    return out
