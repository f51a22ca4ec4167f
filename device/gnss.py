"""Optional position from gpsd (its JSON protocol over TCP, port 2947).

A background thread keeps the latest TPV fix in memory, so attaching a
position to an alert costs a lock, never a network round trip: an alert is
never delayed, and never dropped, for lack of a fix.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from protocol.messages import Location

log = logging.getLogger(__name__)

WATCH_COMMAND = b'?WATCH={"enable":true,"json":true};\n'


@dataclass(frozen=True, slots=True)
class Fix:
    """A position and the local monotonic time it was received."""

    location: Location
    received_at: float


def _accuracy_m(report: Mapping[str, Any]) -> float | None:
    # gpsd >= 3.20 reports eph (horizontal 95 % error); older ones only epx/epy.
    eph = report.get("eph")
    if isinstance(eph, int | float):
        return float(eph)
    errors = [float(e) for e in (report.get("epx"), report.get("epy")) if isinstance(e, int | float)]
    return max(errors) if len(errors) == 2 else None


def _fix_time_ms(report: Mapping[str, Any], wall_clock: Callable[[], float]) -> int:
    text = report.get("time")
    if isinstance(text, str):
        with contextlib.suppress(ValueError):  # gpsd gave no usable time: use ours
            return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    return int(wall_clock() * 1000)


def location_from_tpv(
    report: Mapping[str, Any], *, wall_clock: Callable[[], float] = time.time
) -> Location | None:
    """A :class:`Location` from a gpsd TPV report, or None without a usable 2D/3D fix."""
    if report.get("class") != "TPV" or not isinstance(report.get("mode"), int) or report["mode"] < 2:
        return None
    lat, lon, accuracy = report.get("lat"), report.get("lon"), _accuracy_m(report)
    if not isinstance(lat, int | float) or not isinstance(lon, int | float) or accuracy is None:
        return None  # a position whose error is unknown would mislead the responders
    try:
        return Location(
            lat=float(lat),
            lon=float(lon),
            accuracy_m=min(accuracy, 100_000.0),
            fix_ts=_fix_time_ms(report, wall_clock),
            source="gnss",
        )
    except ValidationError:
        return None


class GpsdClient:
    """Reads gpsd's TPV reports in a thread; :meth:`latest` returns a fresh fix or None."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 2947,
        max_fix_age_s: float = 30.0,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._address = (host, port)
        self._max_age = max_fix_age_s
        self._retry_s = retry_s
        self._clock = clock
        self._lock = threading.Condition()
        self._fix: Fix | None = None
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="vigie-gpsd", daemon=True)

    def start(self) -> None:
        """Connect (and keep reconnecting) in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Disconnect and stop the thread."""
        self._stop.set()
        sock = self._sock
        if sock is not None:
            # The reader's makefile() keeps the descriptor open past close(): shutdown
            # is what ends its blocked read (stop() used to wait its 5 s join).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._thread.join(timeout=5)

    def latest(self) -> Location | None:
        """The last fix if younger than ``max_fix_age_s``; never blocks on gpsd."""
        with self._lock:
            fix = self._fix
        if fix is None or self._clock() - fix.received_at > self._max_age:
            return None
        return fix.location

    def wait_for_fix(self, timeout: float) -> Location | None:
        """Wait until a fix is known (for diagnostics and tests)."""
        with self._lock:
            self._lock.wait_for(lambda: self._fix is not None, timeout)
        return self.latest()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._read_reports()
            except OSError as exc:
                if not self._stop.is_set():
                    log.info("gpsd indisponible à %s:%d (%s) : pas de position", *self._address, exc)
            self._stop.wait(self._retry_s)

    def _read_reports(self) -> None:
        with socket.create_connection(self._address, timeout=self._retry_s) as sock:
            self._sock = sock
            sock.settimeout(None)
            sock.sendall(WATCH_COMMAND)
            for line in sock.makefile("rb"):
                self._handle_line(line)

    def _handle_line(self, line: bytes) -> None:
        try:
            report = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return
        if not isinstance(report, dict):
            return
        location = location_from_tpv(report)
        if location is not None:
            with self._lock:
                self._fix = Fix(location, self._clock())
                self._lock.notify_all()
