"""The service's routes, one APIRouter per group; ``create_app`` mounts them in ``ROUTERS`` order.

Each route reaches the app's Engine (and metrics) through ``request.app.state``
(:func:`~qrerank.service.routes._deps.engine`), so the routers are built once, at import.
"""

from __future__ import annotations

from qrerank._optional import require

require("fastapi", "service")

from qrerank.service.routes import embed, ops, rerank, search, ui  # noqa: E402

# rerank, search and embed first: the order of the paths in the OpenAPI schema.
ROUTERS = (rerank.router, search.router, embed.router, ops.router, ui.router)

__all__ = ["ROUTERS", "embed", "ops", "rerank", "search", "ui"]
