"""Rejections recorded per device and reason per interval, not per message.

Every rejection is counted (``vigie_rejected_total``) at once. The first one of
a (device, reason) in an interval is also logged and stored with its detail,
so an isolated problem is visible immediately; the rest of that interval are
only counted here, and :meth:`RejectionLog.drain` turns them into one log line
and one stored row ("N more ... in 10 s"). A flood of a million bad messages
thus costs a few lines and rows per device per interval instead of a million
of each (it was 268 MB of log and 221 MB of database in a minute).

Thread-safe: the admission stage refuses messages on the event loop (as the MQTT socket
is read), but any thread may note one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dispatcher.alerting import alert_logs

log = logging.getLogger("dispatcher.alerting.ingest")

#: (device id or None, topic, reason, detail): a row of the store's ``rejections`` table.
Row = tuple[str | None, str, str, str]

#: Beyond this many (device, reason) keys in one interval, new keys share one bucket per reason.
MAX_KEYS = 10_000


@dataclass(slots=True)
class _Tally:
    topic: str
    suppressed: int = 0


class RejectionLog:
    """Samples rejection logging and storage: first of each (device, reason) per interval, then a sum."""

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str | None, str], _Tally] = {}
        self._pending: list[Row] = []
        self._since = clock()

    def note(self, device_id: str | None, topic: str, reason: str, detail: str) -> bool:
        """One rejection; True (and logged, queued for storage) if the first of its kind this interval."""
        key = (device_id, reason)
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None and len(self._tallies) >= MAX_KEYS:
                key = (None, reason)
                tally = self._tallies.get(key)
            if tally is not None:
                tally.suppressed += 1
                return False
            self._tallies[key] = _Tally(topic)
            self._pending.append((device_id, topic, reason, detail))
        log.warning(alert_logs.REJECTED, topic, device_id or "?", reason, alert_logs.reason(reason), detail)
        return True

    def due(self) -> bool:
        """True when the interval has elapsed (or first rejections wait to be stored)."""
        return bool(self._pending) or self._clock() - self._since >= self.interval_s

    def drain(self) -> list[Row]:
        """Rows to store now: first rejections, and once per interval one summary per (device, reason)."""
        now = self._clock()
        with self._lock:
            rows, self._pending = self._pending, []
            if now - self._since < self.interval_s:
                return rows
            elapsed = now - self._since
            tallies, self._tallies, self._since = self._tallies, {}, now
        for (device_id, reason), tally in tallies.items():
            if tally.suppressed:
                detail = alert_logs.REJECTED_MORE_DETAIL % (tally.suppressed, elapsed)
                log.warning(alert_logs.REJECTED_MORE, tally.suppressed, reason, device_id or "?")
                rows.append((device_id, tally.topic, reason, detail))
        return rows
