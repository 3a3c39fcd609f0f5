"""Helpers shared by the service tests: texts, a TestClient factory, a live uvicorn server."""

from __future__ import annotations

import contextlib
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


def live_server(app: Any, timeout: float = 30.0) -> contextlib.AbstractContextManager[str]:
    """A real uvicorn on 127.0.0.1 and an ephemeral port, yielding its URL (the package's helper)."""
    from qrerank.service.server import serve_in_thread

    return serve_in_thread(app, timeout=timeout)
