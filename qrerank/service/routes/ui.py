"""Pages for people: the playground at ``/`` and Swagger UI at ``/docs``, both without a CDN."""

from __future__ import annotations

import logging
from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from qrerank.service.errors import error

log = logging.getLogger(__name__)

DOCS_ASSETS = "/docs-assets"

router = APIRouter()


def playground_page() -> str | None:
    """The playground HTML, or None (with a warning) if the package data is missing."""
    try:
        return (resources.files("qrerank.service") / "static" / "playground.html").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        log.warning("qrerank/service/static/playground.html is missing: GET / answers 404")
        return None


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def playground(request: Request) -> Response:
    """The playground page, or a JSON 404 if the package data is missing."""
    page: str | None = request.app.state.playground  # read once, by create_app
    if page is None:
        return error(404, "the playground page is not installed (qrerank/service/static)", "not_found")
    return HTMLResponse(page)


def install_docs(app: FastAPI) -> None:
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
