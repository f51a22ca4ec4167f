"""Publish/subscribe of live events for the console (WebSocket/SSE).

In-process; with several instances on PostgreSQL, :mod:`dispatcher.event_relay`
forwards each instance's events to the others' buses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from dispatcher.live_alerts import LiveAlerts

log = logging.getLogger(__name__)

# An account's sessions or rights changed (logout, disabled, password, re-scoped): ``user_id``.
# Its open console feeds re-check their session at once and close if it ended or changed.
ACCOUNT_EVENT = "account"
# A subscriber fell behind and its unread events were dropped: it must re-read what it shows
# (the console sends a fresh snapshot) instead of trusting a feed with holes in it.
RESYNC_EVENT = "resync"


#: Rewrites a subscriber's waiting events into fewer that say as much (its own semantics).
Compactor = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


class EventBus:
    """Fan-out of small JSON-able events; a slow subscriber loses events, never blocks us.

    A subscriber whose queue is full does not silently miss what follows. If it
    gave a ``compact`` function and its waiting events compact to at most half
    its queue (one per alert, say), they are replaced by the compacted ones:
    nothing is lost and it goes on reading events. Otherwise its unread events
    are dropped and replaced by one :data:`RESYNC_EVENT`, after which it gets
    new events again. An alert raised while a console was behind therefore
    reaches it, through its own event or through the re-read, never only
    through a lost event.

    The bus also carries this process's newest record of each recent alert
    (:attr:`alerts`, :mod:`dispatcher.live_alerts`): whoever commits an alert
    hands its new record there before publishing the event about it, so the
    console feeds answer from memory instead of each reading the store.
    ``alerts`` defaults to a view that trusts only versions named by events
    (safe with several instances); one dispatcher on SQLite is its alerts'
    only writer and passes ``LiveAlerts(sole_writer=True)``.
    """

    def __init__(self, queue_size: int = 1000, *, alerts: LiveAlerts | None = None) -> None:
        if queue_size < 2:  # room for the resync marker and the event that overflowed
            raise ValueError("queue_size must be at least 2")
        self.alerts = alerts if alerts is not None else LiveAlerts(sole_writer=False)
        self._subscribers: dict[asyncio.Queue[dict[str, Any]], Compactor | None] = {}
        self._queue_size = queue_size
        self._relay: Callable[[dict[str, Any]], None] | None = None
        # The system alarms open now (topic -> text: no alert taken, provider down), as told by
        # the events this process saw: a console connecting shows them from its first snapshot.
        self.system_alarms: dict[str, str] = {}

    def remember_system_alarms(self, alarms: Mapping[str, str]) -> None:
        """The system alarms open when this instance started (topic → text), read from the store."""
        self.system_alarms.update(alarms)

    def relay_to(self, send: Callable[[dict[str, Any]], None] | None) -> None:
        """Also hand every event published here to ``send`` (the other instances' relay)."""
        self._relay = send

    def publish(self, kind: str, **data: Any) -> None:
        """Tell this process's subscribers and, through the relay, every other instance's."""
        event = {"kind": kind, **data}
        self.deliver(event)
        if self._relay is not None:
            self._relay(event)

    def deliver(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to this process's subscribers only (what another instance published)."""
        self._note_system_alarm(event)
        for queue, compact in list(self._subscribers.items()):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                _make_room(queue, compact, event)

    @asynccontextmanager
    async def subscribe(
        self, *, compact: Compactor | None = None
    ) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of every event published from now on, until the block ends."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers[queue] = compact
        try:
            yield queue
        finally:
            self._subscribers.pop(queue, None)

    def _note_system_alarm(self, event: dict[str, Any]) -> None:
        topic = event.get("topic")
        if not isinstance(topic, str) or event.get("alert_id"):
            return
        if event.get("kind") == "operator_alarm":
            self.system_alarms[topic] = str(event.get("reason"))
        elif event.get("kind") == "system":
            self.system_alarms.pop(topic, None)


def _make_room(
    queue: asyncio.Queue[dict[str, Any]], compact: Compactor | None, event: dict[str, Any]
) -> None:
    waiting = [queue.get_nowait() for _ in range(queue.qsize())]
    waiting.append(event)
    # At most half the queue, so that a subscriber far behind is not compacted again at
    # every event (each compaction reads the whole queue).
    kept = compact(waiting) if compact is not None else waiting
    if len(kept) <= queue.maxsize // 2:
        for e in kept:
            queue.put_nowait(e)
        log.debug("console en retard : %d événements en attente ramenés à %d", len(waiting), len(kept))
        return
    queue.put_nowait({"kind": RESYNC_EVENT})
    queue.put_nowait(event)
    log.warning(
        "console trop lente : %d événements non lus abandonnés (dernier : %s), elle se resynchronise",
        len(waiting) - 1,
        event["kind"],
    )
