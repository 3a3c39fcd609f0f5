"""The FastAPI app: ``create_app(settings, reranker=None)``; the model loads in the lifespan.

Routes (one router per group in :mod:`qrerank.service.routes`): ``/v1/rerank`` ``/v2/rerank``
(Cohere), ``/tei/rerank`` (TEI), ``/rerank`` (either, by body shape), ``/search``, ``/embed``,
``/health``, ``/metrics`` and the playground at ``/``. Every error is JSON ``{message, type,
field}`` (:mod:`qrerank.service.errors`): 400 malformed JSON, 401 missing/wrong API key, 404 no
index, 413 over a size limit, 415 not JSON, 422 invalid field (or a text the encoder refuses as
invalid input), 429 queue full, 500 the encoder failed on this request's texts (only that request
fails; the others of its micro-batch are answered), 503 timed out or shutting down; never a
traceback.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from qrerank import __version__
from qrerank._optional import require
from qrerank.rerank.reranker import Reranker
from qrerank.service import schemas as s
from qrerank.service.batcher import BatcherFactory, MicroBatcher
from qrerank.service.config import Settings
from qrerank.service.engine import Engine
from qrerank.service.metrics import ServiceMetrics

require("fastapi", "service")

from fastapi import FastAPI  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

from qrerank.service.errors import error, install_error_handlers  # noqa: E402
from qrerank.service.routes import ROUTERS  # noqa: E402
from qrerank.service.routes.ui import DOCS_ASSETS, install_docs, playground_page  # noqa: E402

log = logging.getLogger(__name__)

# Static pages, the API schema and liveness need no API key: they reveal no data.
PUBLIC_PATHS = frozenset({"/", "/health", "/docs", "/openapi.json"})
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
ROUTES = frozenset(
    {"/", "/health", "/metrics", "/v1/rerank", "/v2/rerank", "/rerank", "/tei/rerank", "/search", "/embed"}
)


class _Gate:
    """Outermost ASGI layer: metrics, body-size limit and API key, before any parsing."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: ServiceMetrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500
        path = scope["path"]

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            rejection = self._reject(scope)
            if rejection is not None:
                await rejection(scope, receive, send_and_record)
                return
            await self.app(scope, self._limited(receive), send_and_record)
        finally:
            route = path if path in ROUTES else "other"
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - start)

    def _reject(self, scope: Scope) -> JSONResponse | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = self.settings.api_key
        public = scope["path"] in PUBLIC_PATHS or scope["path"].startswith(DOCS_ASSETS + "/")
        if key and not public and scope["method"] != "OPTIONS":
            auth = headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
                return error(
                    401, "missing or wrong API key: send 'Authorization: Bearer KEY'", "unauthorized",
                    "Authorization", **{"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.settings.max_body_bytes:
            return self._too_large()
        return None

    def _too_large(self) -> JSONResponse:
        return error(413, f"request body is over {self.settings.max_body_bytes} bytes", "too_large", "body")

    def _limited(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.settings.max_body_bytes

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # a chunked body with no Content-Length grew too large
                    raise HTTPException(413, f"request body is over {limit} bytes")
            return message

        return receive_limited


def create_app(
    settings: Settings | None = None,
    reranker: Reranker | None = None,
    index: Any = None,
    *,
    batcher: BatcherFactory = MicroBatcher,
) -> FastAPI:
    """The service app.

    ``reranker`` skips model loading (tests pass a HashingEncoder one); ``index``, a loaded
    DocumentIndex, skips loading ``settings.index`` again (``qrerank serve`` loads it first, to
    refuse a corrupt index with one line before uvicorn starts); ``batcher`` builds the
    micro-batcher (Ray Serve replicas pass ``qrerank.service.ray.ServeBatcher``).
    """
    settings = settings or Settings()
    engine = Engine(settings, reranker, index, batcher)
    metrics = ServiceMetrics(queue_depth=lambda: engine.queue_depth)
    app = FastAPI(
        title="qrerank",
        version=__version__,
        description="Quantum-inspired semantic reranking, Cohere- and TEI-compatible. "
        + (s.__doc__ or "").split("\n\n", 1)[1],
        lifespan=_lifespan(engine, metrics, settings),
        strict_content_type=False,
        # FastAPI's own /docs and /redoc load their scripts from a CDN, which air-gapped users
        # cannot reach: /docs is served from the swagger-ui-bundle package instead.
        docs_url=None,
        redoc_url=None,
    )
    # The routers reach these through request.app.state.
    app.state.engine, app.state.metrics, app.state.settings = engine, metrics, settings
    app.state.playground = playground_page()
    install_error_handlers(app)
    _add_middleware(app, settings, metrics)
    install_docs(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


def _lifespan(engine: Engine, metrics: ServiceMetrics, settings: Settings) -> Lifespan:
    """The app's lifespan: start the engine (load the model and index), stop it at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start(on_batch=metrics.observe_batch)
        if settings.workers > 1:  # one line per worker process (see qrerank.service.server)
            logging.getLogger("uvicorn.error").info("qrerank serve: worker pid %d ready", os.getpid())
        try:
            yield
        finally:
            await engine.stop()

    return lifespan


def _add_middleware(app: FastAPI, settings: Settings, metrics: ServiceMetrics) -> None:
    """The gate (metrics, body limit, API key), then CORS around it if ``settings.cors_origins``."""
    app.add_middleware(_Gate, settings=settings, metrics=metrics)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` and multi-worker serving: settings from QRERANK_*."""
    return create_app(Settings.from_env())
