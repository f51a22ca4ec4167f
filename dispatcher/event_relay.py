"""The console's live events from every instance: the bus relayed over PostgreSQL LISTEN/NOTIFY.

The event bus (:mod:`dispatcher.events`) is per process, and with several
instances behind a load balancer the shared subscription hands each alert to
any one of them: an operator's console open on instance B saw nothing live of
the alerts instance A received, nor A's health flags, nor a logout made
through A, until she reloaded the page. Each instance therefore forwards what
its bus publishes to the others, and delivers what they forward to its own
subscribers.

Invariants (tests/dispatcher/test_event_relay.py, tests/scaleout):

* every event an instance publishes while its relay is connected reaches the
  subscribers of every other connected instance, in publication order, once
  — or, given a ``compact`` function (the console's, :mod:`dispatcher.web.console.coalesce`),
  as the events it compacts them to, which say as much; never its own
  subscribers a second time (a notification from the instance's own
  database session is skipped);
* a relay that was not listening (starting, or its connection lost) never
  lets a console believe it missed nothing: once listening, it tells its own
  subscribers to re-read (:data:`~dispatcher.events.RESYNC_EVENT`: they may
  have missed the others' events) and tells the others the same (they missed
  its own, which it does not keep while disconnected);
* what arrives on the channel is checked: a payload that is not a list of
  events (objects with a string ``kind``) is refused whole, logged and
  counted, and the relay goes on.

NOTIFY is delivered only after the publisher's own commit and in commit
order, and every event is published after the write it tells about, so a
console that reads the store on an event sees that write. Payloads are kept
under PostgreSQL's 8,000-byte limit by cutting a batch into several.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import asyncpg

from dispatcher.events import RESYNC_EVENT, Compactor, EventBus
from dispatcher.metrics import Metrics

__all__ = ["CHANNEL", "LINGER_S", "MAX_PAYLOAD_BYTES", "PostgresEventRelay", "decode_events", "encode_events"]

log = logging.getLogger(__name__)

CHANNEL = "vigie_events"
MAX_PAYLOAD_BYTES = 7_000  # PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more
_RECONNECT_S = 1.0
MAX_RECONNECT_S = 30.0
# Events are gathered this long before they are sent, then compacted as a console's queue is
# (one per alert: an alert, its notifications and callbacks publish many): at 100 alerts/s,
# tens of NOTIFY a second per instance instead of one per event, for 50 ms more on a console
# open on another instance than the one that received the alert.
LINGER_S = 0.05


def encode_events(events: list[dict[str, Any]], *, limit: int = MAX_PAYLOAD_BYTES) -> Iterator[str]:
    """``events`` as JSON arrays of at most ``limit`` bytes each, in order.

    An event alone over ``limit`` cannot be sent: it is replaced by a resync,
    so that the others re-read rather than miss it.
    """
    batch: list[str] = []
    size = 2  # the brackets
    for event in events:
        item = json.dumps(event, separators=(",", ":"))  # ASCII: as many bytes as characters
        if len(item) + 2 > limit:
            log.warning("événement trop long pour le relais (%d octets) : resynchronisation", len(item))
            item = json.dumps({"kind": RESYNC_EVENT})
        if batch and size + 1 + len(item) > limit:
            yield "[" + ",".join(batch) + "]"
            batch, size = [], 2
        size += len(item) + (1 if batch else 0)
        batch.append(item)
    if batch:
        yield "[" + ",".join(batch) + "]"


def decode_events(payload: str) -> list[dict[str, Any]]:
    """The events of one payload; ValueError (with the reason) if it is not a list of events."""
    try:
        events = json.loads(payload)
    except ValueError as exc:
        raise ValueError("JSON illisible") from exc
    if not isinstance(events, list):
        raise ValueError("pas une liste d'événements")
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
            raise ValueError("événement sans type")
    return events


class PostgresEventRelay:
    """Forwards this instance's bus events to the other instances, and theirs to its bus.

    Attach it to the bus (``bus.relay_to(relay.send)``) and run :meth:`run`
    for as long as the instance runs; it reconnects on its own.
    """

    def __init__(
        self,
        dsn: str,
        *,
        bus: EventBus,
        metrics: Metrics,
        compact: Compactor | None = None,
        linger_s: float = LINGER_S,
        reconnect_s: float = _RECONNECT_S,
    ) -> None:
        self._dsn = dsn
        self._bus = bus
        self._metrics = metrics
        self._compact = compact
        self._linger_s = linger_s
        self._reconnect_s = reconnect_s
        self._pending: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._own_pid: int | None = None  # our session's backend: its notifications are our own
        self._listens = 0  # sessions that got as far as listening
        self.connected = asyncio.Event()  # listening (tests wait on it)

    def send(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for the other instances (called by the bus for each publish)."""
        if self._own_pid is None:
            return  # disconnected: the resync sent on reconnection covers it
        self._pending.append(event)
        self._wake.set()

    async def run(self) -> None:
        """Listen and forward until cancelled, reconnecting after any loss.

        The first retry comes after ``reconnect_s``; while PostgreSQL stays out of
        reach the wait doubles, up to :data:`MAX_RECONNECT_S` (one warning each).
        """
        delay, listens = self._reconnect_s, self._listens
        while True:
            try:
                await self._session()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._metrics.event_relay.labels("connection_lost").inc()
                if self._listens > listens:  # it was listening: a fresh loss, retry soon
                    delay, listens = self._reconnect_s, self._listens
                log.warning(
                    "relais des événements console vers les autres instances coupé (%s) :"
                    " nouvel essai dans %g s",
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_S)

    async def _session(self) -> None:
        conn = await asyncpg.connect(self._dsn, server_settings={"application_name": "vigie-events"})
        lost = asyncio.Event()

        def on_lost(_conn: object) -> None:
            lost.set()
            self._wake.set()

        conn.add_termination_listener(on_lost)
        try:
            await conn.add_listener(CHANNEL, self._received)
            self._own_pid = conn.get_server_pid()
            self._pending.clear()
            # Both ways, at start too: consoles opened before now may have missed the others'
            # events, and theirs what this instance published unheard (its start's recovery).
            self._bus.deliver({"kind": RESYNC_EVENT})
            self._pending.append({"kind": RESYNC_EVENT})
            self._wake.set()
            if self._listens:
                log.info("relais des événements console rétabli : les consoles se resynchronisent")
            self._listens += 1
            self.connected.set()
            await self._forward(conn, lost)
        finally:
            self._own_pid = None
            self.connected.clear()
            if not conn.is_closed():
                conn.terminate()

    async def _forward(self, conn: asyncpg.Connection[Any], lost: asyncio.Event) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if lost.is_set():
                raise ConnectionError("connexion à PostgreSQL perdue")
            if self._linger_s:
                await asyncio.sleep(self._linger_s)  # what an alert's next steps publish goes along
            batch, self._pending = self._pending, []
            if self._compact is not None:
                batch = self._compact(batch)
            for payload in encode_events(batch):
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            self._metrics.event_relay.labels("sent").inc(len(batch))

    def _received(self, _conn: object, pid: int, _channel: str, payload: str) -> None:
        if pid == self._own_pid:
            return
        try:
            events = decode_events(payload)
        except ValueError as exc:
            self._metrics.event_relay.labels("refused").inc()
            log.warning("message refusé sur le canal %s (processus %d) : %s", CHANNEL, pid, exc)
            return
        for event in events:
            self._bus.deliver(event)
        self._metrics.event_relay.labels("received").inc(len(events))
