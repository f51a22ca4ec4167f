"""Serves her page at ``/moi/`` (HTML/CSS/JS, no CDN, no build step) and its PWA manifest."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Frame-Options": "DENY"}


def mount_practitioner_page(app: FastAPI) -> None:
    """Add ``/moi/`` and its static files to ``app``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/moi/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=HEADERS)

    @router.get("/moi/manifest.webmanifest")
    async def manifest() -> FileResponse:
        return FileResponse(STATIC / "manifest.webmanifest", media_type="application/manifest+json")

    app.include_router(router)
    app.mount("/moi/static", StaticFiles(directory=STATIC), name="practitioner-static")
