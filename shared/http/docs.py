"""``GET /api/docs``: Swagger UI served from this app, so it works offline and behind egress rules.

FastAPI's default page loads Swagger UI's JS and CSS from a CDN, so it is blank without internet.
Here the page is FastAPI's own (:func:`get_swagger_ui_html`) pointed at ``/api/docs/assets/...``,
which serves the Swagger UI 5 dist files shipped in the pinned ``fastapi-offline`` package (its
static folder only; none of its code runs). Swagger UI 5 is the first to render OpenAPI 3.1, which
FastAPI emits. Only the files listed in :data:`ASSETS` are served, and the online validator badge
is off, so the page makes no request to another host.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

DOCS_URL = "/api/docs"
ASSETS_URL = f"{DOCS_URL}/assets"
#: The files served, with their media types.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


def assets_dir() -> Path:
    """The folder of Swagger UI's dist files inside the installed ``fastapi-offline`` (not imported)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("fastapi-offline is not installed: pip install -r requirements.txt")
    return Path(spec.origin).parent / "static"


def docs_router(openapi_url: str, title: str) -> APIRouter:
    """The docs page and its assets, kept out of the OpenAPI document."""
    router = APIRouter()
    folder = assets_dir()

    @router.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @router.get(ASSETS_URL + "/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, "Not Found")
        return FileResponse(folder / name, media_type=ASSETS[name],
                            headers={"Cache-Control": "public, max-age=86400"})

    return router
