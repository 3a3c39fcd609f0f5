"""Every endpoint and every error through FastAPI's TestClient, with the HashingEncoder."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")

import torch

from qrerank.core.encoding import bloch_angles, default_tau
from qrerank.embed.hashing import HashingEncoder
from qrerank.rerank.reranker import Reranker
from tests.service.helpers import DOCS, make_client

QUERY = "quantum qubit states"


@pytest.fixture(scope="module")
def client(reranker: Reranker):
    with make_client(reranker) as c:
        yield c


def assert_error(resp, status: int, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"message", "type", "field"}
    assert "Traceback" not in body["message"]
    if field is not None:
        assert body["field"] == field
        assert field in body["message"] or field == "body"
    return body


# --- Cohere -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank", "/rerank"])
def test_cohere_shape_matches_library_ranking(client, reranker: Reranker, path: str) -> None:
    resp = client.post(path, json={"model": "rerank-english-v3.0", "query": QUERY, "documents": DOCS})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"id", "results", "meta"}
    assert body["meta"]["model"] == "hashing-256" and body["meta"]["method"] == "hybrid"
    expected = reranker.rank(QUERY, DOCS)
    assert [r["index"] for r in body["results"]] == [h.index for h in expected]
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == pytest.approx([h.score for h in expected], abs=1e-6)  # minmax hybrid is in [0, 1]
    assert all("document" not in r for r in body["results"])  # return_documents defaults to false
    assert [r["cosine"] for r in body["results"]] == pytest.approx([h.cosine for h in expected], abs=1e-6)


def test_cohere_top_n_documents_objects_and_return_documents(client) -> None:
    docs = [{"text": d, "title": "ignored"} for d in DOCS]
    body = client.post(
        "/v1/rerank", json={"query": QUERY, "documents": docs, "top_n": 2, "return_documents": True}
    ).json()
    assert len(body["results"]) == 2
    for r in body["results"]:
        assert r["document"] == {"text": DOCS[r["index"]]}
    everything = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 99}).json()
    assert len(everything["results"]) == len(DOCS)


@pytest.mark.parametrize("method", ["cosine", "fidelity", "hybrid"])
def test_method_and_alpha_fields(client, reranker: Reranker, method: str) -> None:
    body = client.post(
        "/v1/rerank", json={"query": QUERY, "documents": DOCS, "method": method, "alpha": 0.3}
    ).json()
    expected = reranker.rank(QUERY, DOCS, method=method, alpha=0.3)
    assert [r["index"] for r in body["results"]] == [h.index for h in expected]
    assert body["meta"]["method"] == method and body["meta"]["alpha"] == 0.3
    rel = [r["relevance_score"] for r in body["results"]]
    assert rel == sorted(rel, reverse=True) and all(0 <= s <= 1 for s in rel)
    top = expected[0]
    if method == "cosine":
        assert rel[0] == pytest.approx((1 + top.cosine) / 2, abs=1e-6)
    if method == "fidelity":
        assert rel[0] == pytest.approx(math.exp(top.quantum / 256), abs=1e-6)


# --- TEI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/tei/rerank", "/rerank"])
def test_tei_shape(client, reranker: Reranker, path: str) -> None:
    resp = client.post(path, json={"query": QUERY, "texts": DOCS, "return_text": True})
    assert resp.status_code == 200, resp.text
    rows = resp.json()
    assert isinstance(rows, list) and len(rows) == len(DOCS)
    expected = reranker.rank(QUERY, DOCS)
    assert [r["index"] for r in rows] == [h.index for h in expected]
    assert [r["text"] for r in rows] == [DOCS[h.index] for h in expected]
    assert all(0 <= r["score"] <= 1 for r in rows)


def test_tei_raw_scores_and_no_text(client, reranker: Reranker) -> None:
    rows = client.post(
        "/tei/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True, "method": "fidelity"}
    ).json()
    expected = reranker.rank(QUERY, DOCS, method="fidelity")
    assert [r["score"] for r in rows] == pytest.approx([h.quantum for h in expected], abs=1e-5)
    assert all("text" not in r for r in rows)


# --- limits -----------------------------------------------------------------------------------


def test_long_documents_truncate_or_413(reranker: Reranker) -> None:
    long_doc = "qubit " * 100  # 600 characters
    with make_client(reranker, max_doc_chars=50) as c:
        ok = c.post(
            "/v1/rerank", json={"query": "qubit", "documents": [long_doc, "paris"], "return_documents": True}
        )
        assert ok.status_code == 200
        assert ok.json()["results"][0]["document"]["text"] == long_doc  # the caller's text comes back
        body = assert_error(
            c.post("/v1/rerank", json={"query": "qubit", "documents": ["x", long_doc], "truncate": False}),
            413,
            "documents.1",
        )
        assert "limit is 50" in body["message"]
        assert_error(c.post("/tei/rerank", json={"query": "q", "texts": [long_doc], "truncate": False}), 413)
    with make_client(reranker, max_doc_chars=50, long_docs="reject") as c:
        assert_error(
            c.post("/v1/rerank", json={"query": "qubit", "documents": [long_doc]}), 413, "documents.0"
        )
        assert (
            c.post("/v1/rerank", json={"query": "q", "documents": [long_doc], "truncate": True}).status_code
            == 200
        )
        assert_error(c.post("/v1/rerank", json={"query": "q" * 5000, "documents": ["a"]}), 413, "query")


def test_too_many_documents_and_texts(reranker: Reranker) -> None:
    with make_client(reranker, max_documents=3, max_embed_texts=2) as c:
        assert_error(c.post("/v1/rerank", json={"query": "q", "documents": ["a"] * 4}), 413, "documents")
        assert_error(c.post("/tei/rerank", json={"query": "q", "texts": ["a"] * 4}), 413, "documents")
        assert_error(c.post("/embed", json={"texts": ["a"] * 3}), 413, "texts")
        assert c.post("/v1/rerank", json={"query": "q", "documents": ["a"] * 3}).status_code == 200


def test_body_size_limit(reranker: Reranker) -> None:
    with make_client(reranker, max_body_bytes=1000) as c:
        big = {"query": "q", "documents": ["word " * 300]}
        assert_error(c.post("/v1/rerank", json=big), 413, "body")

        def chunks():  # no Content-Length: the limit is enforced while reading
            payload = json.dumps(big).encode()
            for i in range(0, len(payload), 256):
                yield payload[i : i + 256]

        resp = c.post("/v1/rerank", content=chunks(), headers={"content-type": "application/json"})
        assert_error(resp, 413, "body")
        assert c.post("/v1/rerank", json={"query": "q", "documents": ["a"]}).status_code == 200


# --- bad input: always 4xx naming the field, never 500 ----------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, "body"),
        (b"", 422, "body"),
        (b"[]", 422, "body"),
        (b'"text"', 422, "body"),
        (b'{"documents": ["a"]}', 422, "query"),
        (b'{"query": "", "documents": ["a"]}', 422, "query"),
        (b'{"query": "   ", "documents": ["a"]}', 422, "query"),
        (b'{"query": 3, "documents": ["a"]}', 422, "query"),
        (b'{"query": "q"}', 422, "documents"),
        (b'{"query": "q", "documents": []}', 422, "documents"),
        (b'{"query": "q", "documents": "a"}', 422, "documents"),
        (b'{"query": "q", "documents": [1]}', 422, "documents.0"),
        (b'{"query": "q", "documents": ["a", {"title": "t"}]}', 422, "documents.1"),
        (b'{"query": "q", "documents": ["a"], "top_n": 0}', 422, "top_n"),
        (b'{"query": "q", "documents": ["a"], "top_n": "many"}', 422, "top_n"),
        (b'{"query": "q", "documents": ["a"], "method": "magic"}', 422, "method"),
        (b'{"query": "q", "documents": ["a"], "alpha": 2}', 422, "alpha"),
        (b'{"query": "q", "documents": ["a"], "alpha": NaN}', 422, "alpha"),
        (b'{"query": "q", "documents": ["\\ud800"]}', 422, "documents.0"),
        (b'{"query": "q", "texts": []}', 422, "texts"),
        (b'{"query": "q", "texts": [null]}', 422, "texts.0"),
    ],
)
def test_bad_rerank_bodies(client, body: bytes, status: int, field: str) -> None:
    resp = client.post("/rerank", content=body, headers={"content-type": "application/json"})
    assert_error(resp, status, field)


def test_not_json_content_type(client) -> None:
    resp = client.post(
        "/v1/rerank", content=b"query=q", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert_error(resp, 415, "body")
    # No Content-Type at all is read as JSON (curl -d without -H still works for JSON bodies).
    resp = client.post("/v1/rerank", content=json.dumps({"query": "q", "documents": ["a"]}).encode())
    assert resp.status_code == 200


def test_unknown_route_and_method(client) -> None:
    assert_error(client.post("/v1/nothing", json={}), 404)
    assert_error(client.get("/v1/rerank"), 405)


# --- search, embed, health, metrics, playground -----------------------------------------------


def test_search_over_index(reranker: Reranker, index_dir: Path) -> None:
    from qrerank.rerank.pipeline import SearchPipeline

    with make_client(reranker, index=str(index_dir)) as c:
        health = c.get("/health").json()
        assert health["index"]["documents"] == 40 and health["index"]["model"] == "hashing-256"
        resp = c.post(
            "/search", json={"query": "qubit bloch sphere", "k": 10, "top_n": 3, "method": "fidelity"}
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        expected = SearchPipeline(str(index_dir), reranker=reranker).search(
            "qubit bloch sphere", k=10, top_n=3, method="fidelity"
        )
        assert [h["doc_id"] for h in body["results"]] == [h.doc_id for h in expected]
        top = body["results"][0]
        assert {"index", "doc_id", "title", "text", "metadata", "cosine", "quantum", "score"} <= set(top)
        assert top["doc_id"] in ("qubit", "bloch")
        assert top["score"] == pytest.approx(top["quantum"])
        assert top["quantum_kind"] == "log_fidelity" and top["log_fidelity"] == top["quantum"]
        assert_error(c.post("/search", json={"query": "q", "k": 5000}), 413, "k")
        assert_error(c.post("/search", json={"query": ""}), 422, "query")
        assert_error(c.post("/search", json={"query": "q", "top_n": -1}), 422, "top_n")


def test_search_without_index(client) -> None:
    body = assert_error(client.post("/search", json={"query": "qubit"}), 404)
    assert "--index" in body["message"]


def test_embed_vectors_and_angles(client) -> None:
    texts = ["quantum qubit", "bread and yeast"]
    body = client.post("/embed", json={"texts": texts, "angles": True}).json()
    assert body["model"] == "hashing-256" and body["dim"] == 256
    assert body["tau"] == pytest.approx(default_tau(256))
    vecs = torch.tensor([row["embedding"] for row in body["data"]])
    expected = torch.from_numpy(HashingEncoder(256).encode(texts))
    torch.testing.assert_close(vecs, expected)
    angles = torch.tensor([row["angles"] for row in body["data"]])
    torch.testing.assert_close(angles, bloch_angles(expected, default_tau(256)))
    plain = client.post("/embed", json={"texts": texts}).json()
    assert "angles" not in plain["data"][0] and "tau" not in plain
    assert_error(client.post("/embed", json={"texts": []}), 422, "texts")
    assert_error(client.post("/embed", json={"texts": ["a"], "tau": 0}), 422, "tau")


def test_health_and_metrics(client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "hashing-256" and health["dim"] == 256
    client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    text = client.get("/metrics").text
    assert 'qrerank_requests_total{method="POST",route="/v1/rerank",status="200"}' in text
    assert "qrerank_request_latency_seconds_bucket" in text
    assert "qrerank_batch_texts_bucket" in text and "qrerank_batch_requests_count" in text
    assert "qrerank_queue_depth" in text


def test_playground_page(client) -> None:
    resp = client.get("/")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert 'id="query"' in page and 'id="cosine"' in page and 'id="fidelity"' in page
    assert "http://" not in page and "https://" not in page  # self-contained: no CDN


def test_openapi_schema(client) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/v1/rerank", "/v2/rerank", "/rerank", "/tei/rerank", "/search", "/embed"):
        assert "post" in schema["paths"][path]
    assert "get" in schema["paths"]["/health"] and "get" in schema["paths"]["/metrics"]


def test_docs_page_is_served_offline(reranker: Reranker) -> None:
    pytest.importorskip("swagger_ui_bundle")
    # Public even with an API key: the page and its assets reveal nothing but the schema.
    with make_client(reranker, api_key="s3cret") as c:
        page = c.get("/docs")
        assert page.status_code == 200 and "swagger-ui" in page.text
        assert "cdn." not in page.text and "jsdelivr" not in page.text  # no CDN: works air-gapped
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            got = c.get(f"/docs-assets/{asset}")
            assert got.status_code == 200 and len(got.content) > 10_000
        assert c.get("/openapi.json").status_code == 200
        auth = {"Authorization": "Bearer s3cret"}
        assert c.get("/redoc", headers=auth).status_code == 404  # ReDoc would need a CDN: off


# --- auth, CORS, timeouts ---------------------------------------------------------------------


def test_api_key(reranker: Reranker) -> None:
    with make_client(reranker, api_key="s3cret") as c:
        body = {"query": "q", "documents": ["a"]}
        assert_error(c.post("/v1/rerank", json=body), 401, "Authorization")
        assert_error(c.post("/v1/rerank", json=body, headers={"Authorization": "Bearer wrong"}), 401)
        assert_error(c.post("/v1/rerank", json=body, headers={"Authorization": "Basic s3cret"}), 401)
        assert c.post("/v1/rerank", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert_error(c.get("/metrics"), 401)
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200  # static page; its API calls carry the key


def test_cors_off_by_default_and_configurable(client, reranker: Reranker) -> None:
    headers = {"Origin": "http://example.test"}
    resp = client.post("/v1/rerank", json={"query": "q", "documents": ["a"]}, headers=headers)
    assert "access-control-allow-origin" not in resp.headers
    with make_client(reranker, cors_origins=("http://example.test",)) as c:
        resp = c.post("/v1/rerank", json={"query": "q", "documents": ["a"]}, headers=headers)
        assert resp.headers["access-control-allow-origin"] == "http://example.test"


class GatedEncoder(HashingEncoder):
    """HashingEncoder whose encode waits (at most 10 s) until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__(256)
        self.gate = threading.Event()

    def encode(self, texts, *, batch_size: int = 32, show_progress: bool = False):
        self.gate.wait(10)
        return super().encode(texts)


def test_timeout_answers_503() -> None:
    encoder = GatedEncoder()
    with make_client(Reranker(encoder), request_timeout_s=0.2) as c:
        try:
            resp = c.post("/v1/rerank", json={"query": "q", "documents": ["a"]})
            assert_error(resp, 503)
            assert resp.headers["retry-after"] == "1"
        finally:
            encoder.gate.set()
