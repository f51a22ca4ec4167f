"""``/r/<token>``: the responder page, its JSON and its two buttons (no account: the token is the key).

Every request is counted per client address (the TCP peer, or the address a
trusted proxy forwarded — uvicorn's ``forwarded_allow_ips``, set from
``VIGIE_API__TRUSTED_PROXIES``) in two token buckets: all requests, and the
misses (unknown, expired, malformed). Past either, every ``/r/`` answers 429
before any token is looked up, so guessing costs time whatever the guess.

A refused link always gets the same 404 body, whatever the reason (unknown,
forged, expired, malformed), and an audit entry with the reason. An opening of
the page is audited with the contact as "who"; so are both buttons.

Cross-site requests: the buttons are POSTs, and the app-wide
:class:`dispatcher.web.csrf.OriginCheck` refuses any POST a foreign page makes
(``Sec-Fetch-Site``/``Origin``). The page has no cookie to ride on, so a
forged POST would need the token itself; a token that leaked (history, a
forwarded screenshot) is what OriginCheck still guards against.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from dispatcher.alerting import escalation as esc
from dispatcher.alerting.ratelimit import BucketPolicy, RateLimiter
from dispatcher.alerting.responder_links import hash_token, link_usable, well_formed
from dispatcher.audit import RESPONDER_ACKNOWLEDGE, RESPONDER_ON_SITE, RESPONDER_OPEN, RESPONDER_REFUSED
from dispatcher.metrics import Metrics
from dispatcher.settings import ResponderSettings
from dispatcher.store.base import ResponderLink
from dispatcher.web.api.deps import ApiContext, client_ip
from dispatcher.web.console.routes import _csp as console_csp
from dispatcher.web.responder.actions import record_on_site
from dispatcher.web.responder.view import page_state

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
NOT_FOUND_BODY = (
    '<!doctype html><html lang="fr"><meta charset="utf-8"><title>Vigie</title>'
    "<p>Ce lien n'est pas valide.</p></html>"
)
BUSY_BODY = (
    '<!doctype html><html lang="fr"><meta charset="utf-8"><title>Vigie</title>'
    "<p>Trop de requêtes : réessayez dans une minute.</p></html>"
)


def csp(tile_url: str) -> str:
    """The console's policy (own scripts and styles, tiles from their one origin), and no form posts."""
    return f"{console_csp(tile_url)}; form-action 'none'"


class Refused(Exception):
    """The request gets the neutral 404 (or 429 when ``busy``)."""

    def __init__(self, busy: bool = False) -> None:
        self.busy = busy


class Gate:
    """Per-address buckets and the token check; writes the refusals to the audit log."""

    def __init__(self, ctx: ApiContext, settings: ResponderSettings) -> None:
        self._ctx = ctx
        self._grace_s = settings.link_grace_s
        self._requests = RateLimiter(BucketPolicy(settings.requests_burst, settings.requests_per_s))
        self._misses = RateLimiter(BucketPolicy(settings.misses_burst, 1 / settings.misses_refill_s))

    async def open(self, request: Request, token: str) -> ResponderLink:
        """The link ``token`` names, if it may be used now and from there; else :class:`Refused`."""
        ip = client_ip(request)
        if self._misses.tokens(ip) < 1 or not self._requests.allow(ip):
            log.warning("lien de prise en charge refusé à %s : trop de tentatives", ip)
            raise Refused(busy=True)
        link = await self._ctx.store.responder_link(hash_token(token)) if well_formed(token) else None
        if link is not None and link_usable(link, datetime.now(UTC), self._grace_s):
            return link
        reason = "malformé" if not well_formed(token) else "inconnu" if link is None else "expiré"
        self._misses.allow(ip)
        log.warning("lien de prise en charge refusé à %s : lien %s", ip, reason)
        await self._ctx.audit.record(
            None,
            RESPONDER_REFUSED,
            target_kind="alert" if link else None,
            target_id=link.alert_id if link else None,
            ip=ip,
            reason=reason,
            token_hash=hash_token(token)[:12],
        )
        raise Refused


def mount_responder(app: FastAPI, ctx: ApiContext, metrics: Metrics | None = None) -> None:
    """Add ``/r/<token>`` (page, JSON, buttons) and the page's static files to ``app``."""
    settings = ctx.settings.responder
    gate = Gate(ctx, settings)
    headers = {
        "Content-Security-Policy": csp(ctx.settings.api.tile_url),
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",  # the token is in the path: never in a Referer
    }
    router = APIRouter(include_in_schema=False)
    opened = Depends(gate.open)  # every route: the link, or the neutral 404 / 429 (``refused``)

    async def refused(_request: Request, exc: Exception) -> Response:
        busy = isinstance(exc, Refused) and exc.busy
        if metrics is not None:
            metrics.http_refused.labels("responder_rate" if busy else "responder_link").inc()
        if busy:
            return HTMLResponse(BUSY_BODY, status_code=429, headers={**headers, "Retry-After": "60"})
        return HTMLResponse(NOT_FOUND_BODY, status_code=404, headers=headers)

    async def state_of(link: ResponderLink) -> JSONResponse:
        record = await ctx.store.get_alert(link.alert_id)
        events = await ctx.store.alert_events(link.alert_id)
        live = await ctx.store.latest_alert_position(link.alert_id)
        view = page_state(record, link, events, datetime.now(UTC), live=live, poll_s=settings.poll_s)
        return JSONResponse({**view, "tile_url": ctx.settings.api.tile_url}, headers=headers)

    async def audit(link: ResponderLink, action: str, request: Request, **detail: Any) -> None:
        await ctx.audit.record_contact(
            link.contact_id,
            action,
            target_kind="alert",
            target_id=link.alert_id,
            ip=client_ip(request),
            **detail,
        )

    @router.get("/r/{token}")
    async def page(request: Request, link: ResponderLink = opened) -> Response:
        await audit(link, RESPONDER_OPEN, request)
        return FileResponse(STATIC / "index.html", headers=headers)

    @router.get("/r/{token}/etat")
    async def state(link: ResponderLink = opened) -> Response:
        return await state_of(link)

    @router.post("/r/{token}/prise-en-charge")
    async def acknowledge(request: Request, link: ResponderLink = opened) -> Response:
        # Exactly what a "1" from this contact does: the escalation engine takes it.
        changed = await ctx.engine.handle(link.alert_id, esc.Acknowledged(by=link.contact_id, via="link"))
        await audit(link, RESPONDER_ACKNOWLEDGE, request, changed=changed)
        return await state_of(link)

    @router.post("/r/{token}/sur-place")
    async def on_site(request: Request, link: ResponderLink = opened) -> Response:
        changed = await record_on_site(ctx.store, ctx.bus, link.alert_id, link.contact_id)
        await audit(link, RESPONDER_ON_SITE, request, changed=changed)
        return await state_of(link)

    app.include_router(router)
    app.add_exception_handler(Refused, refused)
    app.mount("/responder/static", StaticFiles(directory=STATIC), name="responder-static")
