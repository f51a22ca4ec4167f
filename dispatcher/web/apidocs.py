"""``/docs`` and ``/redoc`` from pinned, locally installed assets — no CDN on the console's origin.

FastAPI's default pages load unpinned scripts from a CDN into the console's
origin (where the session cookie lives): whoever controls that CDN, or a
network path to it, runs code as the logged-in operator. Here the files come
from the ``fastapi-offline`` package (pinned in pyproject.toml, MIT; Swagger UI
5 — needed for OpenAPI 3.1 — and ReDoc 2) and are served by the dispatcher
itself, under a CSP that allows nothing from elsewhere. Only the asset files
of that package are used, not its app class.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/static"
ASSET_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
# FastAPI's pages start the viewers with one inline script; ReDoc's search runs in a blob: worker.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:;"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def mount_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` from the vendored assets (create the app with both URLs None)."""
    app.mount(ASSETS, StaticFiles(directory=ASSET_DIR), name="api-docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} — API"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page
