"""Operations routes: ``/health`` (GET and HEAD, no API key) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from qrerank import __version__
from qrerank.service import schemas as s
from qrerank.service.errors import ERRORS
from qrerank.service.metrics import ServiceMetrics
from qrerank.service.routes._deps import EngineDep

router = APIRouter(tags=["ops"])


@router.get("/health", response_model=s.Health)
async def health(engine: EngineDep) -> s.Health:
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
router.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, 401: ERRORS[401]},
)
async def prometheus(request: Request) -> Response:
    """Prometheus text format: request counts and latencies, batch sizes, queue depth."""
    metrics: ServiceMetrics = request.app.state.metrics
    return Response(metrics.render(), media_type=metrics.content_type)
