"""Serves the console's files and its WebSocket feed of live alerts.

The WebSocket authenticates with the session cookie (browsers send it on the
same-origin handshake; SameSite=Strict keeps other sites from doing so) and
also checks the Origin header against Host. Without a valid session it is
closed with code 4401 right after the handshake, so the page can tell
"log in again" from a network failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from dispatcher.events import ACCOUNT_EVENT, RESYNC_EVENT
from dispatcher.store.base import AlertQuery, AlertRecord
from dispatcher.web.api import views
from dispatcher.web.api.access import Access
from dispatcher.web.api.deps import ApiContext
from dispatcher.web.api.operator_events import HANDLED_EVENT
from dispatcher.web.auth import SESSION_COOKIE, Role, User
from dispatcher.web.console.coalesce import coalesce
from dispatcher.web.console.frames import frame_of
from dispatcher.web.console.live import FeedAlerts

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
CLOSE_UNAUTHENTICATED = 4401
CLOSE_RESCOPED = 4409  # role or conventions changed: the page reconnects and gets the new scope
CLOSE_POLICY = 1008
PING_EVERY_S = 20.0
MAX_PAUSE_S = 0.5  # a feed's pause after a batch, at most
SNAPSHOT_OPEN_MAX = 5000  # open alerts: every one, short of a surge far beyond any convention's


def _csp(tile_url: str) -> str:
    tiles = urlsplit(tile_url)
    tile_origin = f" {tiles.scheme}://{tiles.netloc}" if tiles.netloc else ""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        f" img-src 'self' data:{tile_origin}; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def _coalesced(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return coalesce(events, RESYNC_EVENT)


def mount_console(app: FastAPI, ctx: ApiContext) -> None:
    """Add the console pages, static files and WebSocket to ``app``."""
    router = APIRouter(include_in_schema=False)
    csp = _csp(ctx.settings.api.tile_url)
    alerts = FeedAlerts(ctx.store, ctx.bus.alerts)  # shared by every feed of this process

    @router.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    @router.get("/console/")
    async def index() -> FileResponse:
        return FileResponse(
            STATIC / "index.html",
            headers={"Content-Security-Policy": csp, "Cache-Control": "no-store", "X-Frame-Options": "DENY"},
        )

    @router.get("/console/config")
    async def config() -> dict[str, str]:
        return {"tile_url": ctx.settings.api.tile_url}

    @router.websocket("/api/ws")
    async def feed(websocket: WebSocket) -> None:
        await ConsoleFeed(ctx, websocket, alerts).run()

    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")


def _waiting(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events already queued behind the one being answered."""
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


def _listed(record: AlertRecord, access: Access, *, mine: bool) -> bool:
    """Whether a snapshot lists ``record`` (in scope; for her, never a duress she cannot see)."""
    return access.sees_alert(record) and not (mine and views.hidden_from_practitioner(record))


def _json(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)  # as WebSocket.send_json


def _same_origin(origin: str, host: str | None) -> bool:
    return bool(host) and urlsplit(origin).netloc == host


class ConsoleFeed:
    """One console's WebSocket: a snapshot, then every change in its scope."""

    def __init__(self, ctx: ApiContext, websocket: WebSocket, alerts: FeedAlerts | None = None) -> None:
        self._ctx = ctx
        self._ws = websocket
        self._alerts = alerts if alerts is not None else FeedAlerts(ctx.store, ctx.bus.alerts)
        self._taken_at = 0.0  # when the batch being answered was taken off the queue (monotonic)

    async def _authenticate(self) -> User | None:
        token = self._ws.cookies.get(SESSION_COOKIE)
        return await self._ctx.auth.user_for(token) if token else None

    async def run(self) -> None:
        origin = self._ws.headers.get("origin")
        user = await self._authenticate()
        await self._ws.accept()
        if origin and not _same_origin(origin, self._ws.headers.get("host")):
            await self._ws.close(CLOSE_POLICY, "origine refusée")
            return
        if user is None:
            await self._ws.close(CLOSE_UNAUTHENTICATED, "session invalide ou expirée")
            return
        reader = asyncio.create_task(self._drain())
        try:
            # WebSocketDisconnect / RuntimeError: the client went away, nothing to do.
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                async with self._ctx.bus.subscribe(compact=_coalesced) as queue:
                    await self._send_snapshot(user)
                    await self._forward(user, queue, reader)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _drain(self) -> None:
        """Read (and ignore) client frames, so that a disconnect is noticed."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await self._ws.receive_text()

    def _access(self, user: User) -> Access:
        return Access(user, self._ctx.cache.current)

    async def _send_snapshot(self, user: User) -> None:
        access = self._access(user)
        mine = user.role is Role.PRACTITIONER  # she sees a duress as a plain cancel
        alerts = await self._snapshot_summaries(access, mine=mine)
        system = [] if mine else [{"topic": t, "alarm": a} for t, a in self._ctx.bus.system_alarms.items()]
        alarms = [] if mine else await self._open_alarms(access)
        head = _json({"type": "snapshot", "user": user.display_name})
        tail = _json({"system": system, "alarms": alarms})
        # The alerts' JSON joined as it is: one json.dumps of thousands of summaries would
        # build them all as dicts again, and hold the loop as long.
        await self._ws.send_text(f'{head[:-1]},"alerts":[{",".join(alerts)}],{tail[1:]}')

    async def _open_alarms(self, access: Access) -> list[dict[str, Any]]:
        """The must-act alarms in scope that nobody has handled yet (a reload keeps them)."""
        events = await self._ctx.store.open_scoped_alarms()
        return [{"id": e["id"], "alarm": e["message"]} for e in events if access.sees_scope(e["scope"])]

    async def _snapshot_summaries(self, access: Access, *, mine: bool) -> list[str]:
        """The JSON summaries of the most recent alerts in scope and, for a responder's console,
        of every one still open; most recent first.

        The page replaces its list with each snapshot, and a feed that fell
        behind is re-sent one: recent alerts alone would drop from the screen
        an open alert that a burst pushed out of the most recent ones.
        The practitioner's console keeps to her recent alerts: which of hers
        are "open" would tell a duress (still going on) from a cancel.

        The summaries the feeds already built for the very version the store
        holds are taken from memory; the other records are read a page at a
        time (:meth:`FeedAlerts.snapshot`): in a surge, reading, decoding and
        summarising thousands of open alerts held the alerts arriving meanwhile
        (docs/performance.md, "A console opening in a surge").
        """
        recent = access.alert_query(AlertQuery(limit=self._ctx.settings.api.console_recent_alerts))
        queries = [recent]
        if not mine:
            states = tuple(sorted(views.OPEN_STATES))
            queries.append(access.alert_query(AlertQuery(states=states, limit=SNAPSHOT_OPEN_MAX)))
        return await self._alerts.snapshot(
            queries,
            as_practitioner=mine,
            listed=lambda record: _listed(record, access, mine=mine),
            from_memory=not mine,
        )

    async def _forward(
        self, user: User, queue: asyncio.Queue[dict[str, Any]], reader: asyncio.Task[None]
    ) -> None:
        while not reader.done():
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that comes as an event arrives, and this loop would go on.
                async with asyncio.timeout(PING_EVERY_S):
                    first = await queue.get()
            except TimeoutError:
                # Also catches changes made through another instance (the bus is per process).
                if await self._account_changed(user):
                    return
                await self._ws.send_json({"type": "ping"})
                continue
            started = self._taken_at = time.monotonic()
            if not await self._answer(user, coalesce([first, *_waiting(queue)], RESYNC_EVENT)):
                return
            # As long again before the next batch: a feed with much to say takes at most
            # about half the event loop, the alert path keeps the rest, and what arrives
            # meanwhile is answered once per alert in the next batch.
            await asyncio.sleep(min(time.monotonic() - started, MAX_PAUSE_S))

    async def _answer(self, user: User, events: list[dict[str, Any]]) -> bool:
        """Send what ``events`` call for, in one frame (dispatcher/web/console/frames.py).

        False once the feed was closed: what the batch had gathered is not sent
        to a session that ended or whose rights changed.
        """
        messages: list[dict[str, Any]] = []
        for event in events:
            kind = event.get("kind")
            if kind == RESYNC_EVENT:  # this feed fell behind and lost events: re-read everything
                # coalesce() keeps nothing before a resync; a snapshot goes alone, first.
                if await self._account_changed(user):
                    return False
                await self._send_snapshot(user)
            elif kind == ACCOUNT_EVENT:
                if event.get("user_id") == user.id and await self._account_changed(user):
                    return False
            elif (message := await self._message(user, event)) is not None:
                messages.append(message)
        frame = frame_of(messages)
        if frame is not None:
            await self._ws.send_json(frame)
        return True

    async def _account_changed(self, user: User) -> bool:
        """Close the feed (and say so) when its session ended or its user's rights changed."""
        now = await self._authenticate()
        if now is None:
            await self._ws.close(CLOSE_UNAUTHENTICATED, "session terminée")
            return True
        if now != user:
            await self._ws.close(CLOSE_RESCOPED, "droits modifiés")
            return True
        return False

    def _alarm_message(self, user: User, event: dict[str, Any]) -> dict[str, Any] | None:
        """An alarm about no alert, or its end: operators only, each within their scope.

        With a ``topic``: about the whole system (no alert taken, provider down), for
        every operator. With a ``scope``: a home visit's alarm, must-act, for the operators
        of those conventions. About a device: its operators re-read the events list.
        """
        if user.role is Role.PRACTITIONER:
            return None
        kind, topic, scope = event.get("kind"), event.get("topic"), event.get("scope")
        access = self._access(user)
        if topic:
            if kind == "operator_alarm":
                return {"type": "system", "topic": topic, "alarm": event.get("reason")}
            return {"type": "system", "topic": topic, "cleared": event.get("cleared")}
        if isinstance(scope, list):
            if not access.sees_scope(scope):
                return None
            if kind == HANDLED_EVENT:
                return {"type": "alarm_handled", "id": event.get("event_id"), "by": event.get("by")}
            return {"type": "alarm", "id": event.get("event_id"), "alarm": event.get("reason")}
        device = self._ctx.cache.current.devices.get(str(event.get("device_id")))
        if device is not None and not access.sees_device(device):
            return None
        return {"type": "events"}

    async def _message(self, user: User, event: dict[str, Any]) -> dict[str, Any] | None:
        kind = event.get("kind")
        if kind == "device_health":
            device = self._ctx.cache.current.devices.get(str(event.get("device_id")))
            if device is None or not self._access(user).sees_device(device):
                return None
            return {
                "type": "health",
                "device_id": device.id,
                "flag": event.get("flag"),
                "raised": event.get("raised"),
            }
        if (
            kind == "visit"
        ):  # a home visit moved: no data here, the console re-reads /api/open-visits (scoped)
            return {"type": "visit"}
        alert_id = event.get("alert_id")
        if kind in ("operator_alarm", "system", HANDLED_EVENT) and not alert_id:
            return self._alarm_message(user, event)
        if kind not in ("alert", "notification", "operator_alarm") or not alert_id:
            return None
        # From memory when as fresh as the store for this event, else read (dispatcher/live_alerts.py).
        version = event.get("version")
        record = await self._alerts.record(
            str(alert_id), version=version if isinstance(version, int) else None, since=self._taken_at
        )
        if record is None:
            return None
        mine = user.role is Role.PRACTITIONER  # she sees a duress as a plain cancel, and no alarm
        if not self._access(user).sees_alert(record) or (mine and views.hidden_from_practitioner(record)):
            return None
        summary = self._alerts.summary(record, as_practitioner=mine)
        message: dict[str, Any] = {"type": "alert", "alert": summary}
        if kind == "operator_alarm" and not mine:
            message["alarm"] = event.get("reason")
        return message
