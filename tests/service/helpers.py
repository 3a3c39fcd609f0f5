"""Helpers shared by the service tests: texts, a TestClient factory, a live uvicorn server."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from qrerank.rerank.reranker import Reranker

DOCS = [
    "A qubit is the basic unit of quantum information, a point on the Bloch sphere.",
    "Paris is the capital and largest city of France.",
    "Fidelity measures how close two quantum states are.",
    "Bread rises because yeast ferments sugars and releases carbon dioxide.",
    "Rerankers reorder retrieved passages before a language model reads them.",
]


def make_client(reranker: Reranker, **settings: Any) -> Any:
    """A TestClient (use it as a context manager so the lifespan runs)."""
    from fastapi.testclient import TestClient

    from qrerank.service import Settings, create_app

    return TestClient(create_app(Settings(**settings), reranker))


@contextlib.contextmanager
def live_server(app: Any, timeout: float = 30.0) -> Iterator[str]:
    """Run ``app`` on a real uvicorn bound to 127.0.0.1 and an ephemeral port; yield its URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
