"""``/search`` with the lexical methods: lexical, fused (rrf | convex), and an index without BM25."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")
pytest.importorskip("bm25s")

from qrerank.embed.hashing import HashingEncoder
from qrerank.rerank.pipeline import SearchPipeline
from qrerank.rerank.reranker import Reranker
from qrerank.types import Document
from tests.service.helpers import make_client

QUERY = "qubit bloch sphere"


def test_lexical_and_fused_search_match_the_library(reranker: Reranker, index_dir: Path) -> None:
    pipe = SearchPipeline(str(index_dir), reranker=reranker)
    with make_client(reranker, index=str(index_dir)) as c:
        for body, kw in (
            ({"method": "lexical"}, {"method": "lexical"}),
            ({"method": "fused"}, {"method": "fused"}),
            ({"method": "fused", "fusion": "convex"}, {"method": "fused", "fusion": "convex"}),
            ({"method": "fused", "lexical_weight": 0.8}, {"method": "fused", "lexical_weight": 0.8}),
        ):
            resp = c.post("/search", json={"query": QUERY, "k": 5, "top_n": 8, **body})
            assert resp.status_code == 200, resp.text
            out = resp.json()
            assert out["method"] == body["method"]
            expected = pipe.search(QUERY, k=5, top_n=8, **kw)
            assert [h["doc_id"] for h in out["results"]] == [h.doc_id for h in expected], body
            assert [h["bm25"] for h in out["results"]] == pytest.approx([h.bm25 for h in expected])
            rel = [h["relevance_score"] for h in out["results"]]
            assert rel == sorted(rel, reverse=True) and all(0.0 <= r <= 1.0 for r in rel)
        lexical = c.post("/search", json={"query": QUERY, "method": "lexical", "top_n": 1}).json()["results"][
            0
        ]
        assert lexical["relevance_score"] == pytest.approx(lexical["bm25"] / (1 + lexical["bm25"]))
        dense = c.post("/search", json={"query": QUERY, "method": "cosine"}).json()["results"]
        assert all(h.get("bm25") is None for h in dense)  # dense methods carry no BM25 score


def test_lexical_fields_are_validated(reranker: Reranker, index_dir: Path) -> None:
    with make_client(reranker, index=str(index_dir)) as c:
        for body, field in (
            ({"method": "bm42"}, "method"),
            ({"method": "fused", "fusion": "max"}, "fusion"),
            ({"method": "fused", "lexical_weight": 1.5}, "lexical_weight"),
            ({"method": "fused", "lexical_weight": "0.5"}, "lexical_weight"),
        ):
            resp = c.post("/search", json={"query": QUERY, **body})
            assert resp.status_code == 422 and resp.json()["field"] == field, resp.text
        for body, words in (
            ({"method": "fused", "fusion": "rrf", "lexical_weight": 0.5}, "rrf has no weight"),
            ({"method": "cosine", "lexical_weight": 0.5}, "apply to method 'fused'"),
        ):
            resp = c.post("/search", json={"query": QUERY, **body})
            assert resp.status_code == 422 and words in resp.json()["message"], resp.text


def test_index_without_lexical_refuses_lexical_methods(reranker: Reranker, tmp_path: Path) -> None:
    from qrerank.index.directory import build_index

    docs = [Document(doc_id=str(i), text=f"qubit {i} on the bloch sphere") for i in range(4)]
    out = tmp_path / "dense-only"
    build_index(docs, HashingEncoder(256), out, kind="exact", lexical=False)
    with make_client(reranker, index=str(out)) as c:
        assert c.post("/search", json={"query": QUERY, "method": "cosine"}).status_code == 200
        for method in ("lexical", "fused"):
            resp = c.post("/search", json={"query": QUERY, "method": method})
            assert resp.status_code == 422, resp.text
            message = resp.json()["message"]
            assert "no lexical (BM25) index" in message and "--no-lexical" in message
            assert str(tmp_path) not in message  # the index by name, never its path
