"""Run the app on uvicorn: one process, or several workers that rebuild it from QRERANK_*."""

from __future__ import annotations

import logging
import os
from typing import Any

from qrerank._optional import require
from qrerank.service.config import Settings

log = logging.getLogger(__name__)

require("uvicorn", "service")

import uvicorn  # noqa: E402


class ReadyServer(uvicorn.Server):
    """A uvicorn Server that logs one line once its socket accepts requests."""

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            log.info("qrerank serve: ready on http://%s:%d", host, port)


def serve(settings: Settings) -> int:
    """Serve until interrupted; returns 0, or 2 if the server could not start (port taken...)."""
    if settings.workers > 1:
        # Worker processes build their app from the environment: hand the settings over there.
        os.environ.update(settings.to_env())
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
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level
    )
    server = ReadyServer(config)
    server.run()
    return 0 if server.started else 2
