"""In-process publish/subscribe of live events for the console (WebSocket/SSE)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

log = logging.getLogger(__name__)

# An account's sessions or rights changed (logout, disabled, password, re-scoped): ``user_id``.
# Its open console feeds re-check their session at once and close if it ended or changed.
ACCOUNT_EVENT = "account"
# A subscriber fell behind and its unread events were dropped: it must re-read what it shows
# (the console sends a fresh snapshot) instead of trusting a feed with holes in it.
RESYNC_EVENT = "resync"


class EventBus:
    """Fan-out of small JSON-able events; a slow subscriber loses events, never blocks us.

    A subscriber whose queue is full does not silently miss what follows: its
    unread events are dropped and replaced by one :data:`RESYNC_EVENT`, after
    which it gets new events again. An alert raised while a console was behind
    therefore reaches it through the re-read, never only through a lost event.
    """

    def __init__(self, queue_size: int = 1000) -> None:
        if queue_size < 2:  # room for the resync marker and the event that overflowed
            raise ValueError("queue_size must be at least 2")
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size

    def publish(self, kind: str, **data: Any) -> None:
        event = {"kind": kind, **data}
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                _resync(queue, kind)
                queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


def _resync(queue: asyncio.Queue[dict[str, Any]], kind: str) -> None:
    dropped = queue.qsize()
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait({"kind": RESYNC_EVENT})
    log.warning(
        "console trop lente : %d événements non lus abandonnés (dernier : %s), elle se resynchronise",
        dropped,
        kind,
    )
