"""What the route handlers share: the app's Engine as a dependency, the POST route options."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from qrerank.service.engine import Engine
from qrerank.service.errors import ERRORS


def engine(request: Request) -> Engine:
    """The Engine of the app serving ``request`` (``create_app`` puts it on ``app.state``)."""
    eng: Engine = request.app.state.engine
    return eng


EngineDep = Annotated[Engine, Depends(engine)]

# Every POST route documents the JSON error statuses and leaves unset optional fields out.
POST: dict[str, Any] = {"responses": ERRORS, "response_model_exclude_none": True}
