"""HTTP service [service]: Cohere- and TEI-compatible rerank, index search, embeddings.

``create_app(Settings(...))`` builds the FastAPI app; ``qrerank serve`` runs it on uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Settings", "create_app"]

if TYPE_CHECKING:
    from qrerank.service.app import create_app
    from qrerank.service.config import Settings


def __getattr__(name: str) -> Any:
    if name == "Settings":
        from qrerank.service.config import Settings

        return Settings
    if name == "create_app":
        from qrerank.service.app import create_app

        return create_app
    raise AttributeError(f"module 'qrerank.service' has no attribute {name!r}")
