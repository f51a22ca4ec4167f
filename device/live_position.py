"""Where she is now, every few seconds, while one of her alerts is open.

Runs on the client's logic thread, from its timers. Every
``gnss.position_interval_s`` (5 s), for each open alert the dispatcher has
confirmed (``received``, not yet ``resolved``/``cancelled``, not cancelled by
her), it signs a ``position`` with the latest GNSS fix and hands it to paho
with QoS 0. Nothing is sent without a fix newer than the last one sent (a
receiver that lost the sky keeps its last fix for ``max_fix_age_s``: that one
must not be repeated as "now"), nor while the link is down.

After a duress cancel the alert looks over on the device but stays open at
the dispatcher: the police are on their way and need to know where she is
taken. So that alert is still followed, silently (no vibration, no light:
a position is only a QoS 0 message), until the dispatcher shows the alert is
really over — a closing downlink that comes *after* a position was sent past
the first one (the answer to her cancel, identical for a duress and for a real
cancel): the dispatcher refuses a position for a closed alert and repeats the
closing downlink. At most :data:`DURESS_FOLLOW_MAX_S`; not kept across a
restart of the device.

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

#: How long an alert cancelled under duress is still followed, at most.
DURESS_FOLLOW_MAX_S = 2 * 3600.0


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
        # Alerts cancelled under duress, still followed: alert id -> (until, positions
        # sent since the first closing downlink, None before it).
        self._after_duress: dict[str, tuple[float, int | None]] = {}
        self.due_at = 0.0  # monotonic seconds
        self.checks = 0  # times a position was due (sent or not): for diagnostics and tests

    def follow_after_duress(self, alert_id: str, now: float) -> None:
        """She cancelled ``alert_id`` with the duress PIN: keep sending where she is."""
        self._after_duress[alert_id] = (now + DURESS_FOLLOW_MAX_S, None)

    def closing_downlink(self, alert_id: str) -> None:
        """The dispatcher said ``alert_id`` is over (resolved or cancelled)."""
        if alert_id not in self._after_duress:
            return
        until, sent_since = self._after_duress[alert_id]
        if sent_since is None:  # the answer to her (duress) cancel: the alert is still open
            self._after_duress[alert_id] = (until, 0)
        elif sent_since > 0:  # said again in answer to a position: really over
            del self._after_duress[alert_id]

    @property
    def following_after_duress(self) -> frozenset[str]:
        """Alerts cancelled under duress whose position is still sent."""
        return frozenset(self._after_duress)

    def poll(self, now: float) -> int:
        """Send what is due at ``now`` (monotonic seconds); the number of positions sent."""
        if now < self.due_at:
            return 0
        self.due_at = now + self._interval_s
        self.checks += 1
        if not self._link.is_connected:
            return 0
        self._after_duress = {a: v for a, v in self._after_duress.items() if v[0] > now}
        alert_ids = [item.event_id for item in self._ledger.active_alerts() if item.delivered]
        alert_ids += [a for a in self._after_duress if a not in alert_ids]
        if not alert_ids:
            return 0
        fix = self._location()
        if fix is None or fix.fix_ts <= self._last_fix_ts:
            return 0  # no fix, or nothing newer than what the dispatcher already has
        sent = 0
        for alert_id in alert_ids:
            if self._send(alert_id, fix):
                sent += 1
                self._count_after_duress(alert_id)
        if sent:
            self._last_fix_ts = fix.fix_ts
        return sent

    def _count_after_duress(self, alert_id: str) -> None:
        if alert_id in self._after_duress:
            until, sent_since = self._after_duress[alert_id]
            if sent_since is not None:
                self._after_duress[alert_id] = (until, sent_since + 1)

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
