"""The Ray Serve deployment answers like the in-process app: same JSON, same errors.

Every request is sent to both, Ray Serve over loopback HTTP and FastAPI's TestClient of
``create_app`` with the same settings, and the answers compared (status and JSON, apart
from the random Cohere ``id``).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("ray", reason="the Ray tests need qrerank[ray]")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx
from fastapi.testclient import TestClient

from qrerank.embed.hashing import HashingEncoder
from qrerank.index.directory import build_index
from qrerank.service import ray as ray_serve
from qrerank.service.app import create_app
from qrerank.service.config import Settings
from qrerank.types import Document
from tests.ray.helpers import time_bound

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")

KEY = "s3cret"
AUTH = {"Authorization": f"Bearer {KEY}"}
DOCS = [
    "A qubit is a two-level quantum system on the Bloch sphere.",
    "Fidelity measures how close two quantum states are.",
    "BM25 ranks documents by term frequency and inverse document frequency.",
    "Phase does not change the fidelity of pure states.",
    "Rerankers reorder the candidates of a first-stage retriever.",
]
GOOD: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/rerank", {"query": "quantum qubit fidelity", "documents": DOCS}),
    ("POST", "/v2/rerank", {"query": "phase", "documents": DOCS, "top_n": 2, "return_documents": True}),
    ("POST", "/tei/rerank", {"query": "qubit", "texts": DOCS, "raw_scores": True, "return_text": True}),
    ("POST", "/rerank", {"query": "ranking documents", "texts": DOCS, "method": "cosine"}),
    ("POST", "/rerank", {"query": "ranking documents", "documents": DOCS, "method": "fidelity"}),
    ("POST", "/search", {"query": "qubit states", "k": 4, "top_n": 3}),
    ("POST", "/embed", {"texts": ["qubit", "phase"], "angles": True}),
    ("GET", "/health", None),
]
BAD: list[tuple[str, str, Any, int]] = [
    ("POST", "/v1/rerank", {"query": "q", "documents": "not a list"}, 422),
    ("POST", "/v1/rerank", {"documents": DOCS}, 422),
    ("POST", "/v1/rerank", {"query": "q", "documents": DOCS, "top_n": 0}, 422),
    ("POST", "/tei/rerank", {"query": "q", "texts": DOCS, "alpha": 2}, 422),
    ("POST", "/v1/rerank", {"query": "q", "documents": DOCS * 5}, 413),
    ("POST", "/v1/rerank", b'{"query": "q", "documents": [', 400),
    ("GET", "/nowhere", None, 404),
]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    out = tmp_path_factory.mktemp("ray-serve") / "index"
    docs = [Document(text=t, doc_id=f"d{i}") for i, t in enumerate(DOCS)]
    build_index(docs, HashingEncoder(64), out, kind="exact", lexical=False)
    return Settings(index=str(out), api_key=KEY, max_documents=20, port=0)


@pytest.fixture(scope="module")
def served(local_ray: ModuleType, settings: Settings) -> Iterator[str]:
    with time_bound(120, "deploying on Ray Serve"):
        url = ray_serve.start(settings, replicas=2, cpus_per_replica=0.5)
    try:
        yield url
    finally:
        with time_bound(60, "stopping Ray Serve"):
            ray_serve.stop()


@pytest.fixture(scope="module")
def local(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def _send(client: Any, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    if isinstance(body, bytes):
        resp = client.request(
            method, path, content=body, headers={**headers, "Content-Type": "application/json"}
        )
    else:
        resp = client.request(method, path, json=body, headers=headers)
    data = resp.json()
    if isinstance(data, dict):
        data.pop("id", None)  # a fresh uuid4 per Cohere answer
    return resp.status_code, data


@pytest.fixture(scope="module")
def remote(served: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served, timeout=30) as client:
        yield client


@pytest.mark.parametrize(("method", "path", "body"), GOOD, ids=[f"{m} {p}" for m, p, _ in GOOD])
def test_answers_equal_the_in_process_app(
    remote: httpx.Client, local: TestClient, method: str, path: str, body: Any
) -> None:
    status, data = _send(remote, method, path, body, AUTH)
    assert status == 200, data
    assert (status, data) == _send(local, method, path, body, AUTH)


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD, ids=[f"{s} {p}" for _, p, _, s in BAD])
def test_errors_equal_the_in_process_app(
    remote: httpx.Client, local: TestClient, method: str, path: str, body: Any, status: int
) -> None:
    got = _send(remote, method, path, body, AUTH)
    assert got[0] == status, got
    assert got == _send(local, method, path, body, AUTH)
    if status == 422:
        assert got[1]["field"] and got[1]["field"] in got[1]["message"]


def test_the_api_key_is_required_as_in_process(remote: httpx.Client, local: TestClient) -> None:
    body = {"query": "q", "documents": DOCS}
    got = _send(remote, "POST", "/v1/rerank", body, {})
    assert got[0] == 401 and got == _send(local, "POST", "/v1/rerank", body, {})


def test_concurrent_requests_are_each_answered_right(remote: httpx.Client, local: TestClient) -> None:
    bodies = [{"query": f"{word} states", "documents": DOCS} for word in ("qubit", "phase", "bm25") * 4]
    with ThreadPoolExecutor(len(bodies)) as pool:
        got = list(pool.map(lambda b: _send(remote, "POST", "/v1/rerank", b, AUTH), bodies))
    assert got == [_send(local, "POST", "/v1/rerank", b, AUTH) for b in bodies]
