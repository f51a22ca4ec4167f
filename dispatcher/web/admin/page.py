"""Serves the admin page at ``/admin/``: to an admin's session only.

The page is plain files, but it is still not handed to anyone: without a
session the browser is sent to the console's login; a session of another role
gets a 403 in French. The data behind it is guarded again by each endpoint.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from dispatcher.web.api.deps import ApiContext
from dispatcher.web.auth import SESSION_COOKIE, Role

STATIC = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Frame-Options": "DENY"}
FORBIDDEN_HTML = (
    '<!doctype html><html lang="fr"><meta charset="utf-8"><title>Accès refusé — Vigie</title>'
    "<h1>Accès réservé aux administrateurs</h1>"
    '<p>Votre compte n\'a pas le rôle administrateur. <a href="/console/">Retour à la console</a></p></html>'
)


def mount_admin_page(app: FastAPI, ctx: ApiContext) -> None:
    """Add ``/admin/`` and its static files to ``app``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/admin")
    async def bare() -> RedirectResponse:
        return RedirectResponse("/admin/")

    @router.get("/admin/")
    async def index(request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        user = await ctx.auth.user_for(token) if token else None
        if user is None:
            return RedirectResponse("/console/", status_code=303)
        if user.role is not Role.ADMIN:
            return HTMLResponse(FORBIDDEN_HTML, status_code=403, headers=HEADERS)
        return FileResponse(STATIC / "index.html", headers=HEADERS)

    app.include_router(router)
    app.mount("/admin/static", StaticFiles(directory=STATIC), name="admin-static")
