"""Live positions of open alerts: checked, stored and announced off the ingest's hot path.

A device with a GNSS fix sends a signed ``position`` every few seconds while
one of its alerts is open (docs/protocol.md). The ingest verifies it like any
uplink (signature, replay and time windows, the fair per-device admission),
acknowledges it at once and hands it here. This recorder then, in its own
task:

* refuses a position whose alert is unknown or another device's
  (``not_its_alert``) or no longer open (``alert_closed``), counted and logged
  by the ingest's rejection log; for its own closed alert the device is told
  again that it is over (the downlink the engine sent it, which it may have
  missed: then it stops sending), a duress staying a "cancelled";
* stores it (:meth:`Store.record_alert_position`, a low-priority write that
  lets alert transactions go first);
* publishes ``alert`` with ``alert_id`` on the event bus, so that open pages
  (console, responders' page) refresh.

Invariants: at most one position per alert waits here (a newer fix replaces
an older one still waiting), and at most ``max_pending`` alerts wait in all,
so a flood of positions costs bounded memory and one write per alert per
pass; no alert ever waits behind a position (alerts never come here).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from dispatcher.alerting import alert_logs
from dispatcher.alerting.escalation_state import TERMINAL_STATES
from dispatcher.domain import DownlinkKind
from dispatcher.events import EventBus
from dispatcher.store.base import AlertRecord, NotFound, PositionFix, Store, StoreUnavailable
from protocol.codec import Rejected, RejectReason
from protocol.messages import Position

log = logging.getLogger(__name__)

#: ``(device id, topic, rejection)``: how the recorder reports a refused position.
Refuse = Callable[[str, str, Rejected], None]
#: Seconds between attempts while the store is unavailable.
RETRY_S = 1.0
#: ``(device id, kind, alert id)``: sends a signed downlink (the ingest's ``send_downlink``).
Downlinks = Callable[[str, DownlinkKind, str], None]


@dataclass(frozen=True, slots=True)
class _Waiting:
    position: Position
    topic: str
    received_at: datetime


def closing_downlink(alert: AlertRecord) -> DownlinkKind:
    """What told the device its alert is over: ``cancelled`` after a cancel or a duress, else ``resolved``."""
    duress = bool((alert.escalation or {}).get("duress"))
    return "cancelled" if alert.state == "cancelled" or duress else "resolved"


def position_fix(position: Position, received_at: datetime) -> PositionFix:
    """The stored form of a position uplink (the fix time is the device's)."""
    location = position.location
    return PositionFix(
        lat=location.lat,
        lon=location.lon,
        accuracy_m=location.accuracy_m,
        at=datetime.fromtimestamp(location.fix_ts / 1000, UTC),
        received_at=received_at,
    )


class PositionRecorder:
    """Takes verified positions from the ingest; checks, stores and announces them in :meth:`run`."""

    def __init__(
        self, store: Store, bus: EventBus, refuse: Refuse, tell: Downlinks, limit: int = 10_000
    ) -> None:
        self._store, self._bus = store, bus
        self._refuse, self._downlinks = refuse, tell
        self._max_pending = limit  # alerts with a position waiting
        self._waiting: dict[str, _Waiting] = {}
        self._ready = asyncio.Event()

    @property
    def pending(self) -> int:
        """Positions waiting to be stored (one per alert at most)."""
        return len(self._waiting)

    def offer(self, position: Position, topic: str) -> None:
        """Queue a verified position (event loop only); a newer fix replaces a waiting one."""
        waiting = self._waiting.get(position.alert_id)
        if waiting is not None and waiting.position.location.fix_ts > position.location.fix_ts:
            return  # an older fix delivered late: the waiting one is where she is now
        if waiting is None and len(self._waiting) >= self._max_pending:
            self._refuse(
                position.device, topic, Rejected(RejectReason.QUEUE_FULL, alert_logs.POSITIONS_WAITING)
            )
            return
        self._waiting[position.alert_id] = _Waiting(position, topic, datetime.now(UTC))
        self._ready.set()

    async def run(self) -> None:
        """Store what waits, forever; a store outage keeps the positions waiting (newest kept)."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._waiting = list(self._waiting.items()), {}
            for index, (alert_id, waiting) in enumerate(batch):
                try:
                    await self._record(waiting)
                except StoreUnavailable as exc:
                    log.error(alert_logs.POSITIONS_STORE_DOWN, exc)
                    for later_id, later in batch[index:]:
                        self._waiting.setdefault(later_id, later)  # unless a newer one came meanwhile
                    self._ready.set()
                    await asyncio.sleep(RETRY_S)
                    break
                except Exception:  # one position must never stop the others
                    log.exception(alert_logs.POSITION_FAILED, alert_id)
                    self._refuse(
                        waiting.position.device,
                        waiting.topic,
                        Rejected(RejectReason.INTERNAL_ERROR, alert_logs.POSITION_NOT_RECORDED),
                    )

    async def _record(self, waiting: _Waiting) -> None:
        position = waiting.position
        try:
            alert = await self._store.get_alert(position.alert_id)
        except NotFound:
            alert = None
        if alert is None or alert.device_id != position.device:
            self._refuse(
                position.device,
                waiting.topic,
                Rejected(RejectReason.NOT_ITS_ALERT, alert_logs.NOT_ITS_ALERT % position.alert_id),
            )
            return
        if alert.state in TERMINAL_STATES:
            self._refuse(
                position.device,
                waiting.topic,
                Rejected(
                    RejectReason.ALERT_CLOSED, alert_logs.ALERT_CLOSED % (position.alert_id, alert.state)
                ),
            )
            self._downlinks(position.device, closing_downlink(alert), position.alert_id)
            return
        await self._store.record_alert_position(
            position.alert_id, position_fix(position, waiting.received_at)
        )
        self._bus.publish("alert", alert_id=position.alert_id)
