"""Cross-site request forgery: every state-changing request must come from the console's own origin.

The session cookie is ``SameSite=Strict``, but "site" ignores the port and
the sub-domain's siblings: a page on another port of the same host (or on any
``*.example.org`` next to the console) is *same-site*, so the browser sends the
cookie with its forged form. The check that holds is the browser's own
statement of where a request comes from:

* ``Sec-Fetch-Site`` (every current browser): only ``same-origin`` — or
  ``none``, a request the user made herself — may change anything;
* ``Origin`` (sent on every cross-origin POST, and on same-origin ones by
  Chromium and Firefox): must be this server's own origin, as the browser saw
  it (the ``Host`` it sent), or one of the configured ``allowed_origins``.

A request with neither header does not come from a web page (curl, scripts,
the OAuth2 bearer clients): a page cannot suppress them, so it is let through.
Safe methods (GET, HEAD, OPTIONS) change nothing and are not checked;
Twilio's webhooks are signed and have their own check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


def _netloc(origin: str) -> str:
    return urlsplit(origin).netloc.lower()


def forged(headers: Headers, allowed_origins: frozenset[str]) -> str | None:
    """Why a state-changing request with these headers is refused (None: it may proceed)."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ALLOWED_FETCH_SITES:
        return f"Sec-Fetch-Site={fetch_site}"
    origin = headers.get("origin")
    if origin is None:
        return None
    if origin.lower().rstrip("/") in allowed_origins:
        return None
    host = (headers.get("host") or "").lower()
    if origin == "null" or not host or _netloc(origin) != host:
        return f"Origin={origin}"
    return None


class OriginCheck:
    """ASGI middleware: 403 for a state-changing request a foreign page made."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_origins: Sequence[str] = (),
        exempt_prefixes: Sequence[str] = (),
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self._app = app
        self._allowed = frozenset(o.lower().rstrip("/") for o in allowed_origins)
        self._exempt = tuple(exempt_prefixes)
        self._on_refused = on_refused or (lambda _reason: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        checked = (
            scope["type"] == "http"
            and scope["method"] not in SAFE_METHODS
            and not scope["path"].startswith(self._exempt)
        )
        why = forged(Headers(scope=scope), self._allowed) if checked else None
        if why is None:
            await self._app(scope, receive, send)
            return
        client = (scope.get("client") or ("?", 0))[0]
        log.warning(
            "requête %s %s d'une autre origine refusée (%s), depuis %s",
            scope["method"],
            scope["path"],
            why,
            client,
        )
        self._on_refused("cross_site")
        response = JSONResponse({"detail": "requête d'une autre origine refusée"}, status_code=403)
        await response(scope, receive, send)
