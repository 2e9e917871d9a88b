"""The API's own description (``/openapi.json``, ``/docs``, ``/redoc``): open by default,
behind the API key like every other endpoint when ``TRADEML_API_AUTH_ALL`` is set."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from trademl.serving.deps import require_api_key

OPENAPI_URL = "/openapi.json"


def docs_urls(guarded: bool) -> dict[str, Any]:
    """The ``FastAPI(...)`` arguments: FastAPI's own open routes, or none when guarded (then
    :func:`install_guarded_docs` adds them behind the key)."""
    if guarded:
        return {"openapi_url": None, "docs_url": None, "redoc_url": None}
    return {"openapi_url": OPENAPI_URL, "docs_url": "/docs", "redoc_url": "/redoc"}


def install_guarded_docs(app: FastAPI) -> None:
    """``/openapi.json``, ``/docs`` and ``/redoc``, each requiring the API key."""
    guard = [Depends(require_api_key)]

    @app.get(OPENAPI_URL, include_in_schema=False, dependencies=guard)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False, dependencies=guard)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=OPENAPI_URL, title=f"{app.title} - ReDoc")
