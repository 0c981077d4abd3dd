"""The API docs (/docs: Swagger UI) served from this server, never from a CDN.

FastAPI's own pages load Swagger UI and ReDoc from cdn.jsdelivr.net, so on a classroom network
without internet /docs is a blank page. The `fastapi-offline` package ships the real Swagger UI 5
files; they are mounted under `DOCS_ASSETS` and /docs points at them (and at the app's favicon, not
FastAPI's). ReDoc (/redoc) is off: even its bundle loads its logo from cdn.redoc.ly. Without the
package FastAPI's CDN pages are served, with a warning.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger(__name__)
DOCS_ASSETS = "/docs-assets"
"""Where the Swagger UI and ReDoc files are served."""
SWAGGER_PARAMETERS = {"validatorUrl": None}
"""No badge from validator.swagger.io (a request to another origin)."""


def offline_assets() -> Path | None:
    """The folder of Swagger UI and ReDoc files that `fastapi-offline` installs, or None."""
    try:
        folder = Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def docs_urls(assets: Path | None) -> dict[str, str | None]:
    """The `FastAPI(...)` arguments for its built-in doc pages: off when served here."""
    return {"docs_url": None, "redoc_url": None} if assets else {}


def add_docs(app: FastAPI, assets: Path | None, favicon_url: str) -> None:
    """Serve /docs and its OAuth2 redirect page from `assets` (nothing when None: FastAPI's CDN
    pages stay on, and a warning says so)."""
    if assets is None:
        log.warning("the fastapi-offline package is not installed: /docs loads Swagger UI from a CDN")
        return
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    oauth2 = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API docs",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css", swagger_favicon_url=favicon_url,
                                   oauth2_redirect_url=oauth2, swagger_ui_parameters=SWAGGER_PARAMETERS)

    @app.get(oauth2, include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
