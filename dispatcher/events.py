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


class EventBus:
    """Fan-out of small JSON-able events; a slow subscriber loses events, never blocks us."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size

    def publish(self, kind: str, **data: Any) -> None:
        event = {"kind": kind, **data}
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("console trop lente : événement %s non transmis (elle se resynchronise)", kind)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
