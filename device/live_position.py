"""Where she is now, every few seconds, while one of her alerts is open.

Runs on the client's logic thread, from its timers. Every
``gnss.position_interval_s`` (5 s), for each open alert the dispatcher has
confirmed (``received``, not yet ``resolved``/``cancelled``, not cancelled by
her), it signs a ``position`` with the latest GNSS fix and hands it to paho
with QoS 0. Nothing is sent without a fix newer than the last one sent (a
receiver that lost the sky keeps its last fix for ``max_fix_age_s``: that one
must not be repeated as "now"), nor while the link is down.

What it never does: write to the outbox (a position is not re-sent; the next
one replaces it), wait on the network (QoS 0, no PUBACK), or hold up an alert
or a cancel longer than one sequence-number commit (the same as a heartbeat;
sequence numbers must be durable before use, docs/protocol.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from device.ledger import Ledger
from protocol.codec import encode_uplink, new_event_id
from protocol.messages import Location
from protocol.topics import QOS, UplinkKind, uplink_topic

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """The part of :class:`device.link.MqttLink` this needs."""

    @property
    def is_connected(self) -> bool: ...

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> bool: ...


class PositionReporter:
    """Decides when a live position is due and sends it (logic thread only)."""

    def __init__(
        self,
        *,
        device_id: str,
        key: bytes,
        interval_s: float,
        ledger: Ledger,
        link: Publisher,
        location: Callable[[], Location | None],
        now_ms: Callable[[], int],
    ) -> None:
        self._device_id = device_id
        self._key = key
        self._interval_s = interval_s
        self._ledger = ledger
        self._link = link
        self._location = location
        self._now_ms = now_ms
        self._topic = uplink_topic(device_id, UplinkKind.POSITION)
        self._last_fix_ts = -1
        self.due_at = 0.0  # monotonic seconds
        self.checks = 0  # times a position was due (sent or not): for diagnostics and tests

    def poll(self, now: float) -> int:
        """Send what is due at ``now`` (monotonic seconds); the number of positions sent."""
        if now < self.due_at:
            return 0
        self.due_at = now + self._interval_s
        self.checks += 1
        if not self._link.is_connected:
            return 0
        alerts = [item for item in self._ledger.active_alerts() if item.delivered]
        if not alerts:
            return 0
        fix = self._location()
        if fix is None or fix.fix_ts <= self._last_fix_ts:
            return 0  # no fix, or nothing newer than what the dispatcher already has
        sent = sum(self._send(alert.event_id, fix) for alert in alerts)
        if sent:
            self._last_fix_ts = fix.fix_ts
        return sent

    def _send(self, alert_id: str, fix: Location) -> bool:
        _, payload = encode_uplink(
            kind=UplinkKind.POSITION.value,
            device_id=self._device_id,
            event_id=new_event_id(),
            seq=self._ledger.next_seq(),
            ts_ms=self._now_ms(),
            key=self._key,
            alert_id=alert_id,
            location=fix,
        )
        policy = QOS[UplinkKind.POSITION]
        if self._link.publish(self._topic, payload, qos=policy.qos, retain=policy.retain):
            return True
        log.info("position de l'alerte %s non envoyée (liaison coupée)", alert_id)
        return False
