"""A real uvicorn on 127.0.0.1 (ephemeral port): concurrent clients, 429 under overload, the CLI.

Every loop is bounded in request count and in time; servers bind loopback only.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from qrerank.rerank.reranker import Reranker  # noqa: E402
from qrerank.service import Settings, create_app  # noqa: E402
from tests.service.helpers import DOCS, live_server  # noqa: E402
from tests.service.test_service_api import GatedEncoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "import sys; from qrerank.cli import main; sys.exit(main())"]


def test_many_concurrent_clients_no_failures(reranker: Reranker, index_dir: Path) -> None:
    app = create_app(Settings(index=str(index_dir), max_wait_ms=5), reranker)
    expected = {q: [h.index for h in reranker.rank(q, DOCS)] for q in ("qubit", "bread yeast", "paris")}

    async def client_task(client: httpx.AsyncClient, i: int) -> None:
        for j in range(4):
            query = list(expected)[(i + j) % len(expected)]
            if j == 3:
                resp = await client.post("/search", json={"query": query, "k": 10, "top_n": 3})
                assert resp.status_code == 200, resp.text
                continue
            path, body = (
                ("/tei/rerank", {"query": query, "texts": DOCS})
                if j % 2
                else ("/v1/rerank", {"query": query, "documents": DOCS})
            )
            resp = await client.post(path, json=body)
            assert resp.status_code == 200, resp.text
            data = resp.json()
            rows = data if isinstance(data, list) else data["results"]
            assert [r["index"] for r in rows] == expected[query]

    async def main(url: str) -> None:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            await asyncio.wait_for(asyncio.gather(*(client_task(client, i) for i in range(48))), 60)

    with live_server(app) as url:
        asyncio.run(main(url))  # 48 clients x 4 requests = 192 requests
        metrics = httpx.get(f"{url}/metrics").text
    served = sum(float(v) for v in re.findall(r'qrerank_requests_total\{[^}]*status="200"\} (\S+)', metrics))
    assert served == 192
    assert not re.search(r'status="5\d\d"', metrics)
    batches = float(re.search(r"qrerank_batch_requests_count (\S+)", metrics).group(1))
    assert batches < 192  # concurrent requests were encoded together


def test_full_queue_answers_429_not_a_hang() -> None:
    encoder = GatedEncoder()
    app = create_app(Settings(max_queue=4, max_batch=8, max_wait_ms=0), Reranker(encoder))

    async def main(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            body = {"query": "q", "documents": ["a", "b"]}
            first = asyncio.ensure_future(client.post("/v1/rerank", json=body))
            await asyncio.sleep(0.3)  # the first request is encoding, held by the gate
            rest = [asyncio.ensure_future(client.post("/v1/rerank", json=body)) for _ in range(12)]
            t0 = time.monotonic()
            while sum(t.done() for t in rest) < 8 and time.monotonic() - t0 < 10:
                await asyncio.sleep(0.05)  # the 8 beyond the queue bound come back at once
            encoder.gate.set()
            responses = await asyncio.wait_for(asyncio.gather(first, *rest), 20)
            return [r.status_code for r in responses]

    try:
        with live_server(app) as url:
            codes = asyncio.run(main(url))
    finally:
        encoder.gate.set()
    assert codes.count(429) == 8, codes
    assert codes.count(200) == 5, codes


def test_cli_serve_logs_ready_and_serves(tmp_path: Path, index_dir: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "QRERANK_MODEL": "hashing-256",
        "QRERANK_CACHE_DIR": str(tmp_path),
    }
    cmd = [*CLI, "serve", "--port", "0", "--index", str(index_dir)]
    cmd += ["--api-key", "k3y"]
    proc = subprocess.Popen(
        cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=tmp_path
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
            lines.append(line)
            match = re.search(r"ready on (http://127\.0\.0\.1:\d+)", line)
            if match:
                url = match.group(1)
                break
        assert url, "".join(lines)
        assert httpx.get(f"{url}/health", timeout=10).json()["index"]["documents"] == 40
        headers = {"Authorization": "Bearer k3y"}
        resp = httpx.post(f"{url}/search", json={"query": "qubit"}, headers=headers, timeout=10)
        assert resp.status_code == 200 and resp.json()["results"]
        assert httpx.post(f"{url}/search", json={"query": "qubit"}, timeout=10).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest = proc.communicate(timeout=15)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            rest = proc.communicate(timeout=5)[1]
    # Counted over the whole log, up to shutdown (the loop above stops at the first ready line).
    assert sum("ready on" in line for line in [*lines, *rest.splitlines()]) == 1, rest


def test_cli_bad_settings_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from qrerank.cli import main

    monkeypatch.setenv("QRERANK_MAX_QUEUE", "zero")
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "QRERANK_MAX_QUEUE" in err and "Traceback" not in err
