"""The FastAPI app: ``create_app(settings, reranker=None)``; the model loads in the lifespan.

Routes: ``/v1/rerank`` ``/v2/rerank`` (Cohere), ``/tei/rerank`` (TEI), ``/rerank`` (either,
by body shape), ``/search``, ``/embed``, ``/health``, ``/metrics`` and the playground at ``/``.
Every error is JSON ``{message, type, field}``: 400 malformed JSON, 401 missing/wrong API key,
404 no index, 413 over a size limit, 415 not JSON, 422 invalid field (or a text the encoder
refuses as invalid input), 429 queue full, 500 the encoder failed on this request's texts (only
that request fails; the others of its micro-batch are answered), 503 timed out or shutting
down; never a traceback.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

import numpy as np

from qrerank import __version__
from qrerank._optional import require
from qrerank.errors import QrerankError
from qrerank.rerank.reranker import Reranker
from qrerank.service import schemas as s
from qrerank.service.batcher import (
    BatcherClosedError,
    BatcherFactory,
    EncodeError,
    MicroBatcher,
    QueueFullError,
)
from qrerank.service.config import Settings
from qrerank.service.engine import Engine, Hit, LimitError, NoIndexError, finite
from qrerank.service.metrics import ServiceMetrics

require("fastapi", "service")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse, Response  # noqa: E402
from pydantic import Discriminator, Tag  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

log = logging.getLogger(__name__)

# Static pages, the API schema and liveness need no API key: they reveal no data.
PUBLIC_PATHS = frozenset({"/", "/health", "/docs", "/openapi.json"})
DOCS_ASSETS = "/docs-assets"
ROUTES = frozenset(
    {"/", "/health", "/metrics", "/v1/rerank", "/v2/rerank", "/rerank", "/tei/rerank", "/search", "/embed"}
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorBody, "description": text}
    for code, text in (
        (400, "malformed JSON"),
        (401, "missing or wrong API key"),
        (413, "body, document count or document length over the limit"),
        (415, "body is not JSON"),
        (422, "invalid field"),
        (429, "batch queue full; retry later"),
        (500, "the encoder failed on this request's texts"),
        (503, "timed out waiting for the encoder, or shutting down"),
    )
}


def _shape(body: Any) -> str:
    if isinstance(body, dict):
        return "tei" if "texts" in body and "documents" not in body else "cohere"
    return "tei" if isinstance(body, s.TEIRerankRequest) else "cohere"


AnyRerankRequest = Annotated[
    Annotated[s.CohereRerankRequest, Tag("cohere")] | Annotated[s.TEIRerankRequest, Tag("tei")],
    Discriminator(_shape),
]
_UNION_TAGS = frozenset({"cohere", "tei"})


def error(status: int, message: str, kind: str, field: str | None = None, **headers: str) -> JSONResponse:
    """A JSON error response: ``status``, an ErrorBody of ``message``, ``kind``, ``field``; ``headers``."""
    body = s.ErrorBody(message=message, type=kind, field=field).model_dump()
    return JSONResponse(body, status_code=status, headers=headers or None)


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


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in _UNION_TAGS]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """The response to a request FastAPI could not validate: 400 malformed JSON, 415 not JSON, else 422."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx")
        reason = ctx.get("error", "") if isinstance(ctx, dict) else ""
        return error(400, f"malformed JSON body: {reason}".rstrip(": "), "malformed_json", "body")
    if isinstance(first.get("input"), bytes):
        return error(
            415,
            "the body must be JSON (Content-Type: application/json)",
            "unsupported_media_type",
            "body",
        )
    field = _field(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "missing" and field == "body":
        msg = "a JSON request body is required"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return error(422, f"{field}: {msg}{more}", "invalid_field", field)


def _install_error_handlers(app: FastAPI) -> None:
    app.exception_handler(RequestValidationError)(_invalid_request)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        # 400 comes from a body FastAPI could not even decode (e.g. not UTF-8).
        field = "body" if exc.status_code in (400, 413) else None
        return error(exc.status_code, str(exc.detail), kind, field, **(exc.headers or {}))

    @app.exception_handler(LimitError)
    async def too_large(request: Request, exc: LimitError) -> JSONResponse:
        return error(413, str(exc), "too_large", exc.field)

    @app.exception_handler(QueueFullError)
    async def busy(request: Request, exc: QueueFullError) -> JSONResponse:
        request.app.state.metrics.rejected.inc()
        return error(429, f"server busy: {exc}", "queue_full", None, **{"Retry-After": "1"})

    @app.exception_handler(TimeoutError)
    async def timeout(request: Request, exc: TimeoutError) -> JSONResponse:
        return error(
            503, "timed out waiting for the encoder; retry later", "timeout", None, **{"Retry-After": "1"}
        )

    @app.exception_handler(BatcherClosedError)
    async def closing(request: Request, exc: BatcherClosedError) -> JSONResponse:
        return error(503, str(exc), "unavailable")

    @app.exception_handler(EncodeError)
    async def encode_failed(request: Request, exc: EncodeError) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(cause, QrerankError | UnicodeError):  # the encoder refused this input
            return error(422, f"invalid input: {cause}", "invalid_input")
        # The type only: the exception's text may hold paths or internals (it is in the log).
        name = type(cause).__name__ if cause is not None else "error"
        return error(
            500, f"the encoder failed on this request's texts ({name}); other requests are unaffected",
            "encode_failed",
        )  # fmt: skip

    @app.exception_handler(NoIndexError)
    async def no_index(request: Request, exc: NoIndexError) -> JSONResponse:
        return error(404, str(exc), "no_index")

    @app.exception_handler(QrerankError)
    async def bad_input(request: Request, exc: QrerankError) -> JSONResponse:
        return error(422, str(exc), "invalid_input")

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error(500, "internal server error", "internal")


def _cohere(
    hits: list[Hit], engine: Engine, method: Any, alpha: Any, return_documents: bool
) -> s.CohereRerankResponse:
    m = engine.method(method)
    return s.CohereRerankResponse(
        id=str(uuid.uuid4()),
        results=[
            s.CohereResult(
                index=h.doc.index,
                relevance_score=h.relevance,
                document=s.RerankDocument(text=h.doc.text) if return_documents else None,
                cosine=finite(h.doc.cosine),
                log_fidelity=finite(h.doc.log_fidelity),
            )
            for h in hits
        ],
        meta=s.CohereMeta(model=engine.reranker.encoder.name, method=m, alpha=engine.alpha(alpha)),
    )


async def _cohere_rerank(engine: Engine, body: s.CohereRerankRequest) -> s.CohereRerankResponse:
    hits = await engine.rerank(
        body.query,
        body.documents,
        top_n=body.top_n,
        method=body.method,
        alpha=body.alpha,
        truncate=body.truncate,
    )
    return _cohere(hits, engine, body.method, body.alpha, body.return_documents)


async def _tei_rerank(engine: Engine, body: s.TEIRerankRequest) -> list[s.TEIRank]:
    hits = await engine.rerank(
        body.query,
        body.texts,
        method=body.method,
        alpha=body.alpha,
        truncate=body.truncate,
        left=body.truncation_direction.lower() == "left",
    )
    return [
        s.TEIRank(
            index=h.doc.index,
            score=finite(h.doc.score) if body.raw_scores else h.relevance,
            text=h.doc.text if body.return_text else None,
            cosine=finite(h.doc.cosine),
            log_fidelity=finite(h.doc.log_fidelity),
        )
        for h in hits
    ]


def _install_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from the locally installed swagger-ui-bundle (no CDN), if present."""
    try:
        import swagger_ui_bundle
    except ImportError:
        log.info("swagger-ui-bundle is not installed: /docs is off (/openapi.json still works)")
        return
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="qrerank API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url="",
        )


def create_app(  # noqa: C901 - routes inline until issue 13 item 3 splits them into routers
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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start(on_batch=metrics.observe_batch)
        if settings.workers > 1:  # one line per worker process (see qrerank.service.server)
            logging.getLogger("uvicorn.error").info("qrerank serve: worker pid %d ready", os.getpid())
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(
        title="qrerank",
        version=__version__,
        description="Quantum-inspired semantic reranking, Cohere- and TEI-compatible. "
        + (s.__doc__ or "").split("\n\n", 1)[1],
        lifespan=lifespan,
        strict_content_type=False,
        # FastAPI's own /docs and /redoc load their scripts from a CDN, which air-gapped users
        # cannot reach: /docs is served from the swagger-ui-bundle package instead (below).
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine, app.state.metrics, app.state.settings = engine, metrics, settings
    _install_error_handlers(app)
    app.add_middleware(_Gate, settings=settings, metrics=metrics)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    _install_docs(app)
    post: dict[str, Any] = {"responses": _ERRORS, "response_model_exclude_none": True}

    async def cohere_rerank(body: s.CohereRerankRequest) -> s.CohereRerankResponse:
        """Cohere-compatible rerank: results sorted by ``relevance_score`` (in [0, 1]), best first."""
        return await _cohere_rerank(engine, body)

    for version in ("v1", "v2"):
        app.add_api_route(
            f"/{version}/rerank",
            cohere_rerank,
            methods=["POST"],
            response_model=s.CohereRerankResponse,
            tags=["rerank"],
            operation_id=f"cohere_rerank_{version}",
            **post,
        )

    @app.post("/tei/rerank", response_model=list[s.TEIRank], tags=["rerank"], **post)
    async def tei_rerank(body: s.TEIRerankRequest) -> list[s.TEIRank]:
        """text-embeddings-inference-compatible rerank: ``[{index, score, text?}]``, best first."""
        return await _tei_rerank(engine, body)

    @app.post("/rerank", response_model=s.CohereRerankResponse | list[s.TEIRank], tags=["rerank"], **post)
    async def rerank(body: AnyRerankRequest) -> s.CohereRerankResponse | list[s.TEIRank]:
        """Cohere shape (``documents``) or TEI shape (``texts``), answered in the same shape."""
        if isinstance(body, s.TEIRerankRequest):
            return await _tei_rerank(engine, body)
        return await _cohere_rerank(engine, body)

    @app.post("/search", response_model=s.SearchResponse, tags=["search"], **post)
    async def search(body: s.SearchRequest) -> s.SearchResponse:
        """Retrieve ``k`` candidates from the loaded index by cosine, rerank, return ``top_n``.

        ``method: lexical`` ranks the BM25 top-k instead; ``fused`` fuses the dense and the BM25
        rankings over the union of both top-k lists (``fusion``, ``lexical_weight``).
        """
        hits = await engine.search(
            body.query, k=body.k, top_n=body.top_n, method=body.method, alpha=body.alpha,
            lexical_weight=body.lexical_weight, fusion=body.fusion,
        )  # fmt: skip
        return s.SearchResponse(
            model=engine.reranker.encoder.name,
            method=engine.search_method(body.method),
            results=[
                s.SearchHit(
                    index=h.doc.index,
                    rank=h.doc.rank,
                    doc_id=h.doc.doc_id,
                    title=h.doc.title,
                    text=h.doc.text,
                    metadata=h.doc.metadata,
                    score=finite(h.doc.score),
                    relevance_score=h.relevance,
                    cosine=finite(h.doc.cosine),
                    log_fidelity=finite(h.doc.log_fidelity),
                    bm25=finite(h.doc.bm25) if h.doc.bm25 is not None else None,
                )
                for h in hits
            ],
        )

    @app.post("/embed", response_model=s.EmbedResponse, tags=["embed"], **post)
    async def embed(body: s.EmbedRequest) -> s.EmbedResponse:
        """Embeddings of ``texts`` (unit vectors), optionally with their Bloch angles."""
        emb, theta, tau = await engine.embed(
            body.texts, tau=body.tau, angles=body.angles, truncate=body.truncate
        )
        return s.EmbedResponse(
            model=engine.reranker.encoder.name,
            dim=int(emb.shape[1]),
            tau=tau if body.angles else None,
            data=[
                s.Embedding(
                    index=i,
                    embedding=np.nan_to_num(row).tolist(),
                    angles=None if theta is None else np.nan_to_num(theta[i]).tolist(),
                )
                for i, row in enumerate(emb)
            ],
        )

    @app.get("/health", response_model=s.Health, tags=["ops"])
    async def health() -> s.Health:
        """Liveness and what is loaded (no API key needed): the index by name and size, no path."""
        rr = engine.reranker
        info = s.IndexInfo(**engine.index_info) if engine.index_info else None
        return s.Health(
            version=__version__,
            model=rr.encoder.name,
            dim=rr.encoder.dim,
            method=rr.method,
            queue_depth=engine.queue_depth,
            index=info,
        )

    # HEAD for load balancers and `curl -I`; kept out of the schema, which documents the GET.
    app.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, 401: _ERRORS[401]},
    )
    async def prometheus() -> Response:
        """Prometheus text format: request counts and latencies, batch sizes, queue depth."""
        return Response(metrics.render(), media_type=metrics.content_type)

    page = _playground_page()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground() -> Response:
        if page is None:
            return error(404, "the playground page is not installed (qrerank/service/static)", "not_found")
        return HTMLResponse(page)

    return app


def _playground_page() -> str | None:
    """The playground HTML, or None (with a warning) if the package data is missing."""
    try:
        return (resources.files("qrerank.service") / "static" / "playground.html").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        log.warning("qrerank/service/static/playground.html is missing: GET / answers 404")
        return None


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` and multi-worker serving: settings from QRERANK_*."""
    return create_app(Settings.from_env())
