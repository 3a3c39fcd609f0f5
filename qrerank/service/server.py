"""Run the app on uvicorn: one process, or several workers that rebuild it from QRERANK_*."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from qrerank._optional import require
from qrerank.service.config import Settings

require("uvicorn", "service")

import uvicorn  # noqa: E402


class ReadyServer(uvicorn.Server):
    """A uvicorn Server that logs one line once its socket accepts requests.

    The line goes to uvicorn's own "uvicorn.error" logger, which uvicorn configures itself.
    """

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            workers = f" (worker pid {os.getpid()})" if self.config.workers > 1 else ""
            logging.getLogger("uvicorn.error").info(
                "qrerank serve: ready on http://%s:%d%s", host, port, workers
            )


def serve(settings: Settings, reranker: Any = None, index: Any = None) -> int:
    """Serve until interrupted; returns 0, or 2 if the server could not start (port taken...).

    ``reranker`` and ``index`` (a loaded DocumentIndex), when given, are served instead of
    loading them in the app's lifespan. With ``workers > 1`` uvicorn's supervisor forks the
    workers; each builds its app from the environment (so both are ignored) and logs "worker
    pid N ready" when its model is loaded.
    """
    if settings.workers > 1:
        os.environ.update(settings.to_env())  # the workers' create_app_from_env reads these
        uvicorn.run(
            "qrerank.service.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
        )
        return 0
    from qrerank.service.app import create_app

    config = uvicorn.Config(
        create_app(settings, reranker, index),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
    )
    server = ReadyServer(config)
    server.run()
    return 0 if server.started else 2


@contextlib.contextmanager
def serve_in_thread(app: Any, *, timeout: float = 30.0, log_level: str = "warning") -> Iterator[str]:
    """Run ``app`` on uvicorn at 127.0.0.1 (ephemeral port) in a daemon thread; yield its URL.

    For tests and benchmarks: loopback only, started and stopped within ``timeout`` seconds.
    """
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level=log_level, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-thread", daemon=True)
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
