"""Every service error as JSON ``{message, type, field}``: the response builder and its handlers.

``install_error_handlers(app)`` maps each exception to one status: 400 malformed JSON, 413 over
a limit, 415 not JSON, 422 invalid field or input, 429 queue full, 500 the encoder failed on this
request (or anything unexpected, logged, never a traceback), 503 timed out or shutting down.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from qrerank._optional import require
from qrerank.errors import QrerankError
from qrerank.service import schemas as s
from qrerank.service.batcher import BatcherClosedError, EncodeError, QueueFullError
from qrerank.service.engine import LimitError, NoIndexError

require("fastapi", "service")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402

log = logging.getLogger(__name__)

# The OpenAPI ``responses`` of a POST route: each error status with its ErrorBody.
ERRORS: dict[int | str, dict[str, Any]] = {
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
# The tags of the ``/rerank`` body union (routes.rerank.AnyRerankRequest); pydantic puts the
# matched tag in an error's location, which the client never wrote.
UNION_TAGS = frozenset({"cohere", "tei"})

Handler = Callable[[Request, Any], Awaitable[JSONResponse]]


def error(status: int, message: str, kind: str, field: str | None = None, **headers: str) -> JSONResponse:
    """A JSON error response: ``status``, an ErrorBody of ``message``, ``kind``, ``field``; ``headers``."""
    body = s.ErrorBody(message=message, type=kind, field=field).model_dump()
    return JSONResponse(body, status_code=status, headers=headers or None)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in UNION_TAGS]
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


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    kind = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "http_error"
    )
    # 400 comes from a body FastAPI could not even decode (e.g. not UTF-8).
    field = "body" if exc.status_code in (400, 413) else None
    return error(exc.status_code, str(exc.detail), kind, field, **(exc.headers or {}))


async def _too_large(request: Request, exc: LimitError) -> JSONResponse:
    return error(413, str(exc), "too_large", exc.field)


async def _busy(request: Request, exc: QueueFullError) -> JSONResponse:
    request.app.state.metrics.rejected.inc()
    return error(429, f"server busy: {exc}", "queue_full", None, **{"Retry-After": "1"})


async def _timeout(request: Request, exc: TimeoutError) -> JSONResponse:
    return error(
        503, "timed out waiting for the encoder; retry later", "timeout", None, **{"Retry-After": "1"}
    )


async def _closing(request: Request, exc: BatcherClosedError) -> JSONResponse:
    return error(503, str(exc), "unavailable")


async def _encode_failed(request: Request, exc: EncodeError) -> JSONResponse:
    cause = exc.__cause__
    if isinstance(cause, QrerankError | UnicodeError):  # the encoder refused this input
        return error(422, f"invalid input: {cause}", "invalid_input")
    # The type only: the exception's text may hold paths or internals (it is in the log).
    name = type(cause).__name__ if cause is not None else "error"
    return error(
        500, f"the encoder failed on this request's texts ({name}); other requests are unaffected",
        "encode_failed",
    )  # fmt: skip


async def _no_index(request: Request, exc: NoIndexError) -> JSONResponse:
    return error(404, str(exc), "no_index")


async def _bad_input(request: Request, exc: QrerankError) -> JSONResponse:
    return error(422, str(exc), "invalid_input")


async def _crashed(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return error(500, "internal server error", "internal")


# Starlette picks the handler of the nearest class in the exception's MRO, so the order here
# only reads from specific to general.
_HANDLERS: tuple[tuple[type[Exception], Handler], ...] = (
    (RequestValidationError, _invalid_request),
    (HTTPException, _http_error),
    (LimitError, _too_large),
    (QueueFullError, _busy),
    (TimeoutError, _timeout),
    (BatcherClosedError, _closing),
    (EncodeError, _encode_failed),
    (NoIndexError, _no_index),
    (QrerankError, _bad_input),
    (Exception, _crashed),
)


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handler of each exception type on ``app``."""
    for exc_type, handler in _HANDLERS:
        app.add_exception_handler(exc_type, handler)
