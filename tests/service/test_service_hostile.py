"""Hostile input and failure isolation for the HTTP service, in one place.

A poisoned text (one the encoder raises on) fails only its own request, never its micro-batch;
requests that time out leave the queue at once; non-finite or out-of-range numbers are refused
in settings, flags and request fields alike, naming the setting or field; wrong JSON types,
huge numbers, NaN, lone surrogates and empty lists get a 4xx, never a 500; /health answers HEAD
and shows no filesystem path; a corrupt index stops ``qrerank serve`` with one line, exit 2.

Everything runs on the HashingEncoder through FastAPI's TestClient (one test starts the CLI in a
subprocess), each test bounded to a few seconds.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import InputError
from qrerank.rerank.reranker import Reranker
from qrerank.service.batcher import EncodeError, MicroBatcher, QueueFullError
from qrerank.service.config import Settings
from tests.service.helpers import DOCS, make_client

ROOT = Path(__file__).resolve().parents[2]
POISON = "POISON-PILL"


class PoisonedEncoder(HashingEncoder):
    """HashingEncoder that raises ``error`` on any text containing POISON. It records every call,
    and while ``gate`` is clear it holds each call (at most 10 s) after setting ``entered``."""

    def __init__(self, error: Callable[[], Exception] = lambda: RuntimeError("poisoned text")) -> None:
        super().__init__(256)
        self.error = error
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Hold the next calls at the gate."""
        self.entered.clear()
        self.gate.clear()

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        self.entered.set()
        self.gate.wait(10)
        with self._lock:
            self.calls.append(list(texts))
        if any(POISON in t for t in texts):
            raise self.error()
        return super().encode(texts)


def assert_error(resp: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"message", "type", "field"} and "Traceback" not in body["message"]
    if field is not None:
        assert body["field"] == field, body
    return body


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


# --- item 2: one failing request must not fail its micro-batch --------------------------------


def test_batcher_isolates_the_poisoned_request() -> None:
    enc = PoisonedEncoder()
    enc.hold()

    async def main() -> list[Any]:
        b = MicroBatcher(lambda t: enc.encode(t), max_batch=1000, max_wait_ms=0, max_queue=100)
        b.start()
        try:
            first = asyncio.ensure_future(b.encode(["warm-up"]))
            await asyncio.to_thread(enc.entered.wait, 5)  # held at the gate: the rest queue as one batch
            texts = [[f"query {i}", f"doc {i}"] for i in range(9)]
            texts.insert(4, ["query 4b", POISON])
            jobs = [asyncio.ensure_future(b.encode(t)) for t in texts]
            await asyncio.sleep(0)
            assert b.depth == 10
            enc.gate.set()
            await first
            return [texts, await asyncio.gather(*jobs, return_exceptions=True)]
        finally:
            await b.stop()

    texts, results = run(main())
    assert any(POISON in c and "doc 0" in c for c in enc.calls), enc.calls  # they were batched together
    for t, r in zip(texts, results, strict=True):
        if POISON in t:
            assert isinstance(r, EncodeError) and isinstance(r.__cause__, RuntimeError)
        else:
            np.testing.assert_array_equal(r, HashingEncoder(256).encode(t))
    assert len(enc.calls) <= 2 + 2 * math.ceil(math.log2(10)) + 1  # bisected, not one call per request


def test_batcher_fails_only_requests_with_non_finite_embeddings() -> None:
    def encode(texts: list[str]) -> np.ndarray:
        return np.array([[math.nan if t == "nan" else 1.0, 0.0] for t in texts], dtype=np.float32)

    async def main() -> list[Any]:
        b = MicroBatcher(encode, max_batch=100, max_wait_ms=20, max_queue=10)
        b.start()
        try:
            return await asyncio.gather(b.encode(["a", "nan"]), b.encode(["b"]), return_exceptions=True)
        finally:
            await b.stop()

    bad, good = run(main())
    assert isinstance(bad, EncodeError) and isinstance(bad.__cause__, FloatingPointError)
    np.testing.assert_array_equal(good, [[1.0, 0.0]])


def _batched_requests(client: Any, enc: PoisonedEncoder, bodies: list[dict[str, Any]]) -> list[Any]:
    """POST ``bodies`` so they land in one micro-batch: the encoder is held on its gate by a
    first request until all of them wait in the queue."""
    engine = client.app.state.engine
    enc.hold()
    with ThreadPoolExecutor(len(bodies) + 1) as pool:
        first = pool.submit(client.post, "/v1/rerank", json={"query": "hold", "documents": ["the gate"]})
        wait_for(enc.entered.is_set)
        futures = [pool.submit(client.post, "/v1/rerank", json=b) for b in bodies]
        wait_for(lambda: engine.queue_depth == len(bodies))
        enc.gate.set()
        assert first.result(20).status_code == 200
        return [f.result(20) for f in futures]


def test_poisoned_request_gets_500_and_its_batch_mates_200(reranker: Reranker) -> None:
    enc = PoisonedEncoder()
    with make_client(Reranker(enc), max_wait_ms=0) as c:
        bodies = [{"query": "qubit states", "documents": DOCS} for _ in range(4)]
        bodies.insert(2, {"query": "qubit states", "documents": [DOCS[0], POISON]})
        responses = _batched_requests(c, enc, bodies)
    assert any(POISON in call and len(call) > 3 for call in enc.calls)  # batched with the others
    expected = [h.index for h in reranker.rank("qubit states", DOCS)]
    for i, resp in enumerate(responses):
        if i == 2:
            body = assert_error(resp, 500)
            assert body["type"] == "encode_failed" and "RuntimeError" in body["message"]
        else:
            assert resp.status_code == 200, resp.text
            assert [r["index"] for r in resp.json()["results"]] == expected


def test_encoder_input_error_is_a_422_for_that_request_only() -> None:
    enc = PoisonedEncoder(error=lambda: InputError("text holds a forbidden token"))
    with make_client(Reranker(enc), max_wait_ms=0) as c:
        bodies = [{"query": "q", "documents": ["a", POISON]}, {"query": "q", "documents": ["b"]}]
        bad, good = _batched_requests(c, enc, bodies)
    body = assert_error(bad, 422)
    assert body["type"] == "invalid_input" and "forbidden token" in body["message"]
    assert good.status_code == 200


def test_timed_out_requests_leave_the_queue_at_once() -> None:
    enc = PoisonedEncoder()

    async def main() -> None:
        b = MicroBatcher(lambda t: enc.encode(t), max_batch=1, max_wait_ms=0, max_queue=2)
        b.start()
        try:
            enc.hold()
            first = asyncio.ensure_future(b.encode(["held"]))
            await asyncio.to_thread(enc.entered.wait, 5)
            for text in ("x", "y"):  # both give up while "held" still blocks the encoder
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(b.encode([text]), 0.05)
            cancelled = asyncio.ensure_future(b.encode(["z"]))
            await asyncio.sleep(0)
            cancelled.cancel()
            await asyncio.sleep(0)
            assert b.depth == 0
            later = [asyncio.ensure_future(b.encode([t])) for t in ("p", "q")]  # fits: not a 429
            await asyncio.sleep(0)
            with pytest.raises(QueueFullError):  # the bound itself still holds
                await b.encode(["r"])
            enc.gate.set()
            await asyncio.gather(first, *later)
        finally:
            enc.gate.set()
            await b.stop()

    run(main())
    assert ["x"] not in enc.calls and ["z"] not in enc.calls


def test_timed_out_request_does_not_turn_the_next_into_429() -> None:
    enc = PoisonedEncoder()
    with make_client(Reranker(enc), max_queue=1, max_batch=1, max_wait_ms=0, request_timeout_s=1.0) as c:
        enc.hold()
        try:
            with ThreadPoolExecutor(1) as pool:
                held = pool.submit(c.post, "/v1/rerank", json={"query": "held", "documents": ["a"]})
                wait_for(enc.entered.is_set)
                assert_error(c.post("/v1/rerank", json={"query": "late", "documents": ["b"]}), 503)
                assert c.get("/health").json()["queue_depth"] == 0
                threading.Timer(0.1, enc.gate.set).start()
                resp = c.post("/v1/rerank", json={"query": "next", "documents": ["c"]})
                assert resp.status_code == 200, resp.text  # was 429: the timed-out one held the slot
                held.result(20)
        finally:
            enc.gate.set()


class LoopWatchingReranker(Reranker):
    """Records, per score_embeddings call, whether it ran on a thread with a running event loop."""

    def __init__(self) -> None:
        super().__init__(HashingEncoder(256))
        self.on_loop: list[bool] = []

    def score_embeddings(self, *args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:
            self.on_loop.append(False)
        return super().score_embeddings(*args, **kwargs)


def test_scoring_runs_on_a_worker_thread_not_the_event_loop() -> None:
    rr = LoopWatchingReranker()
    with make_client(rr) as c:
        assert c.post("/v1/rerank", json={"query": "qubit", "documents": DOCS}).status_code == 200
        assert c.post("/tei/rerank", json={"query": "qubit", "texts": DOCS}).status_code == 200
    assert rr.on_loop == [False, False]


# --- item 6: non-finite and out-of-range settings ---------------------------------------------


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("QRERANK_TAU", "nan"),
        ("QRERANK_TAU", "inf"),
        ("QRERANK_TAU", "-inf"),
        ("QRERANK_ALPHA", "nan"),
        ("QRERANK_MAX_WAIT_MS", "inf"),
        ("QRERANK_MAX_WAIT_MS", "NaN"),
        ("QRERANK_REQUEST_TIMEOUT_S", "nan"),
        ("QRERANK_REQUEST_TIMEOUT_S", "infinity"),
    ],
)
def test_non_finite_env_settings_are_refused(var: str, raw: str) -> None:
    with pytest.raises(InputError, match=var):
        Settings.from_env({var: raw})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tau", math.inf),
        ("tau", math.nan),
        ("tau", 0.0),
        ("tau", -1.0),
        ("tau", 1e7),
        ("alpha", math.nan),
        ("alpha", -0.01),
        ("alpha", 1.01),
        ("alpha", "0.5"),
        ("max_wait_ms", math.inf),
        ("max_wait_ms", math.nan),
        ("max_wait_ms", -1.0),
        ("max_wait_ms", 1e9),
        ("request_timeout_s", math.nan),
        ("request_timeout_s", math.inf),
        ("request_timeout_s", 0.0),
        ("request_timeout_s", True),
        ("max_queue", 2.5),
        ("port", "8080"),
    ],
)
def test_bad_numbers_in_settings_name_the_setting(field: str, value: Any) -> None:
    with pytest.raises(InputError, match=field):
        Settings(**{field: value})


def test_good_float_settings_still_pass() -> None:
    s = Settings(tau=1, alpha=0, max_wait_ms=0, request_timeout_s=0.5)
    assert s.tau == 1.0 and isinstance(s.tau, float) and s.alpha == 0.0
    assert Settings.from_env({"QRERANK_TAU": "0.25", "QRERANK_MAX_WAIT_MS": "1e1"}).max_wait_ms == 10.0


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """``qrerank serve`` must refuse before serving: reaching uvicorn fails the test (no hang)."""
    pytest.importorskip("uvicorn")
    import qrerank.service.server

    def refuse(*args: Any, **kwargs: Any) -> int:
        raise AssertionError("qrerank serve started a server with invalid settings")

    monkeypatch.setattr(qrerank.service.server, "serve", refuse)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--tau", "inf"], "--tau"),
        (["--tau", "nan"], "--tau"),
        (["--tau", "0"], "tau"),
        (["--alpha", "1.5"], "alpha"),
        (["--max-wait-ms", "inf"], "--max-wait-ms"),
        (["--request-timeout-s", "nan"], "--request-timeout-s"),
        (["--request-timeout-s", "soon"], "--request-timeout-s"),
    ],
)
def test_cli_bad_float_flags_exit_2_with_one_line(
    no_serving: None, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    from qrerank.cli import main

    assert main(["serve", "--port", "0", "--model", "hashing-64", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err, err


@pytest.mark.parametrize("var", ["QRERANK_TAU", "QRERANK_MAX_WAIT_MS", "QRERANK_REQUEST_TIMEOUT_S"])
def test_cli_nan_env_exits_2(
    no_serving: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], var: str
) -> None:
    from qrerank.cli import main

    monkeypatch.setenv(var, "nan")
    assert main(["serve", "--port", "0", "--model", "hashing-64"]) == 2
    assert var in capsys.readouterr().err


def test_cli_unknown_model_exits_2_before_serving(
    no_serving: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from qrerank.cli import main

    assert main(["serve", "--port", "0", "--model", "no-such-model-anywhere"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no-such-model-anywhere" in err


# --- request fields: NaN, infinity, huge numbers, wrong types ---------------------------------


@pytest.fixture(scope="module")
def client(reranker: Reranker) -> Any:
    with make_client(reranker, max_documents=50) as c:
        yield c


def post_raw(client: Any, path: str, body: bytes) -> Any:
    return client.post(path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "alpha": NaN}', "alpha"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "alpha": Infinity}', "alpha"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "alpha": -Infinity}', "alpha"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "alpha": 1e400}', "alpha"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "alpha": "nan"}', "alpha"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "alpha": "0.5"}', "alpha"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "alpha": true}', "alpha"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "alpha": 1e-400}', None),  # 0.0: fine
        ("/tei/rerank", b'{"query": "q", "texts": ["a"], "alpha": NaN}', "alpha"),
        ("/tei/rerank", b'{"query": "q", "texts": ["a"], "alpha": 2}', "alpha"),
        ("/embed", b'{"texts": ["a"], "tau": NaN}', "tau"),
        ("/embed", b'{"texts": ["a"], "tau": Infinity}', "tau"),
        ("/embed", b'{"texts": ["a"], "tau": 1e400}', "tau"),
        ("/embed", b'{"texts": ["a"], "tau": "inf"}', "tau"),
        ("/embed", b'{"texts": ["a"], "tau": -0.0}', "tau"),
        ("/embed", b'{"texts": ["a"], "tau": false}', "tau"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": 1e400}', "top_n"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": true}', "top_n"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": "3"}', "top_n"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": 2.5}', "top_n"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": -99999999999999999999999}', "top_n"),
        ("/search", b'{"query": "q", "k": NaN}', "k"),
        ("/search", b'{"query": "q", "k": true}', "k"),
        ("/search", b'{"query": "q", "top_n": "10"}', "top_n"),
    ],
)
def test_non_finite_and_wrongly_typed_numbers_are_422_naming_the_field(
    client: Any, path: str, body: bytes, field: str | None
) -> None:
    resp = post_raw(client, path, body)
    if field is None:
        assert resp.status_code == 200, resp.text
        return
    got = assert_error(resp, 422, field)
    assert got["message"].startswith(field)


def test_huge_top_n_returns_every_document(client: Any) -> None:
    resp = post_raw(
        client, "/v1/rerank", b'{"query": "qubit", "documents": ["a", "b"], "top_n": 1' + b"0" * 40 + b"}"
    )
    assert resp.status_code == 200 and len(resp.json()["results"]) == 2


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/rerank", b'{"query": "q", "documents": []}', 422, "documents"),
        ("/v1/rerank", b'{"query": "q", "documents": null}', 422, "documents"),
        ("/v1/rerank", b'{"query": "q", "documents": {"0": "a"}}', 422, "documents"),
        ("/v1/rerank", b'{"query": "q", "documents": [["a"]]}', 422, "documents.0"),
        ("/v1/rerank", b'{"query": "q", "documents": [{"text": 5}]}', 422, "documents.0"),
        ("/v1/rerank", b'{"query": ["q"], "documents": ["a"]}', 422, "query"),
        ("/v1/rerank", b'{"query": null, "documents": ["a"]}', 422, "query"),
        (
            "/v1/rerank",
            b'{"query": "q", "documents": ["a"], "return_documents": "maybe"}',
            422,
            "return_documents",
        ),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "truncate": []}', 422, "truncate"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "method": "COSINE!"}', 422, "method"),
        # eval's method names are not rerank methods: a 422, not the 500 they once gave
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "method": "first"}', 422, "method"),
        ("/tei/rerank", b'{"query": "q", "texts": ["a"], "method": "bm25"}', 422, "method"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"] * 3}', 400, "body"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"]} trailing', 400, "body"),
        ("/v1/rerank", b'{"query": "\\ud800", "documents": ["a"]}', 422, "query"),
        ("/v1/rerank", b'{"query": "q", "documents": ["ok", "\\udfff"]}', 422, "documents.1"),
        ("/v1/rerank", b'{"query": "q", "documents": [{"text": "\\ud83d"}]}', 422, "documents.0"),
        ("/tei/rerank", b'{"query": "q", "texts": ["\\ud800x"]}', 422, "texts.0"),
        (
            "/tei/rerank",
            b'{"query": "q", "texts": ["a"], "truncation_direction": "up"}',
            422,
            "truncation_direction",
        ),
        ("/tei/rerank", b'{"query": "q", "texts": "a"}', 422, "texts"),
        ("/embed", b'{"texts": ["\\udc00"]}', 422, "texts.0"),
        ("/embed", b'{"texts": [1, 2]}', 422, "texts.0"),
        ("/embed", b'{"texts": []}', 422, "texts"),
        ("/search", b'{"query": "\\ud800"}', 422, "query"),
        ("/v1/rerank", b"\xff\xfe\x00{", 400, "body"),
        ("/v1/rerank", b"null", 422, "body"),
        ("/v1/rerank", b"12", 422, "body"),
    ],
)
def test_hostile_bodies_get_a_4xx_naming_the_field(
    client: Any, path: str, body: bytes, status: int, field: str
) -> None:
    assert_error(post_raw(client, path, body), status, field)


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deeply_nested_json_is_a_400(client: Any, depth: int) -> None:
    # Built here, not in the parameters: pytest would choke rendering them if the test failed.
    nested = b"[" * depth + b"]" * depth
    assert_error(post_raw(client, "/v1/rerank", nested), 400, "body")
    body = b'{"query": "q", "documents": [' + nested + b"]}"
    assert post_raw(client, "/v1/rerank", body).status_code in (400, 422)


@pytest.mark.parametrize(
    "documents",
    [
        ["", "   ", "\u0000", "qubit"],  # empty, blank and NUL texts are still documents
        ["\U0001f600 emoji", "e\u0301 combining", "\u202eright-to-left", "qubit"],
        ["qubit"] * 3,  # duplicates
    ],
)
def test_odd_but_valid_documents_are_ranked(client: Any, documents: list[str]) -> None:
    resp = client.post("/v1/rerank", json={"query": "qubit", "documents": documents})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert sorted(r["index"] for r in results) == list(range(len(documents)))
    assert all(0.0 <= r["relevance_score"] <= 1.0 and math.isfinite(r["cosine"]) for r in results)


def test_non_finite_embeddings_fail_the_request_not_the_ranking() -> None:
    class NaNEncoder(HashingEncoder):
        def encode(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
            out = super().encode(texts)
            out[[i for i, t in enumerate(texts) if "overflow" in t]] = np.nan
            return out

    with make_client(Reranker(NaNEncoder(64))) as c:
        body = assert_error(c.post("/v1/rerank", json={"query": "q", "documents": ["overflow", "q"]}), 500)
        assert "FloatingPointError" in body["message"]
        assert c.post("/v1/rerank", json={"query": "q", "documents": ["q"]}).status_code == 200


# --- item 9: relevance of one document, HEAD /health, no path in /health, corrupt index -------


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_hybrid_relevance_of_one_document_is_absolute_not_zero(client: Any, alpha: float) -> None:
    resp = client.post(
        "/v1/rerank", json={"query": "qubit state", "documents": ["qubit states"], "alpha": alpha}
    )
    result = resp.json()["results"][0]
    expected = alpha * (1 + result["cosine"]) / 2 + (1 - alpha) * math.exp(result["quantum"] / 256)
    assert result["relevance_score"] == pytest.approx(expected, abs=1e-6)
    assert result["relevance_score"] > 0.5  # a good match does not read as irrelevant


def test_hybrid_relevance_of_identical_documents_is_their_absolute_score(client: Any) -> None:
    rows = client.post("/tei/rerank", json={"query": "qubit", "texts": ["a qubit"] * 2}).json()
    one = client.post("/tei/rerank", json={"query": "qubit", "texts": ["a qubit"]}).json()
    assert rows[0]["score"] == rows[1]["score"] == pytest.approx(one[0]["score"])
    assert one[0]["score"] > 0


def test_relevance_is_documented_as_relative_to_the_request(client: Any) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    for name, prop in (("CohereResult", "relevance_score"), ("TEIRank", "score")):
        text = schema[name]["properties"][prop]["description"]
        assert "not comparable across requests" in text and "hybrid" in text
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "not comparable across requests" in readme


def test_head_health_is_200(reranker: Reranker) -> None:
    with make_client(reranker, api_key="k") as c:  # public, like GET
        assert c.head("/health").status_code == 200
        assert c.get("/health").status_code == 200


@pytest.mark.parametrize("api_key", [None, "s3cret"])
def test_health_shows_the_index_name_not_its_path(
    reranker: Reranker, index_dir: Path, api_key: str | None
) -> None:
    with make_client(reranker, index=str(index_dir), api_key=api_key) as c:
        resp = c.get("/health")
    info = resp.json()["index"]
    assert info == {"name": index_dir.name, "documents": 40, "model": "hashing-256"}
    assert str(index_dir.parent) not in resp.text and os.sep + index_dir.name not in resp.text


def test_serve_with_a_corrupt_index_prints_one_line_and_exits_2(tmp_path: Path, index_dir: Path) -> None:
    broken = tmp_path / "broken-index"
    shutil.copytree(index_dir, broken)
    manifests = list(broken.rglob("manifest.json"))
    assert manifests  # the layout may change; some manifest is always there to corrupt
    for m in manifests:
        m.write_text("{not json", encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "QRERANK_MODEL": "hashing-256",
        "QRERANK_CACHE_DIR": str(tmp_path),
    }
    cmd = [sys.executable, "-m", "qrerank", "serve", "--port", "0", "--index", str(broken)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]  # was 3, after uvicorn's traceback
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken-index" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
