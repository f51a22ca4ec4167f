"""A simulated gpsd: the real protocol on a loopback port, with a position a test or a key can move.

Speaks what :class:`device.gnss.GpsdClient` reads from a real gpsd (its JSON
protocol over TCP): after the client's ``?WATCH``, a ``VERSION`` line, then a
``TPV`` report every ``period_s`` (gpsd's once a second) and at once whenever
the position changes. Without a fix it reports ``mode`` 1, as a receiver
indoors does. ``vigie-device --simulate --gnss LAT,LON`` runs one in-process;
tests start one and move it (tests/device/test_positions_live.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

_EARTH_M_PER_DEG = 111_320.0


@dataclass(frozen=True, slots=True)
class SimulatedFix:
    """Where the simulated receiver is, and how sure it is (metres, gpsd's ``eph``)."""

    lat: float
    lon: float
    accuracy_m: float = 5.0


class SimulatedGpsd:
    """A gpsd stand-in on ``127.0.0.1:port`` (0 = a free port); thread-safe."""

    def __init__(self, fix: SimulatedFix | None = None, *, port: int = 0, period_s: float = 1.0) -> None:
        self._fix = fix
        self._period_s = period_s
        self._changed = threading.Condition()
        self._version = 0
        self._stopped = threading.Event()
        self._server = socket.create_server(("127.0.0.1", port))
        self.port: int = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="vigie-gpsd-sim", daemon=True)

    def start(self) -> SimulatedGpsd:
        """Accept clients in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the server and every client connection."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # close() alone does not wake a blocked accept()
        self._server.close()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(timeout=5)

    @property
    def fix(self) -> SimulatedFix | None:
        """The position reported now (None: no fix)."""
        with self._changed:
            return self._fix

    def move_to(self, fix: SimulatedFix | None) -> None:
        """Report ``fix`` from now on (None: the fix is lost); clients hear it at once."""
        with self._changed:
            self._fix = fix
            self._version += 1
            self._changed.notify_all()

    def walk(self, north_m: float, east_m: float) -> SimulatedFix | None:
        """Move by a few metres (the simulator's keys); nothing happens without a fix."""
        fix = self.fix
        if fix is None:
            return None
        moved = walked(fix, north_m, east_m)
        self.move_to(moved)
        return moved

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed by stop()
            client = threading.Thread(
                target=self._serve, args=(conn,), name="vigie-gpsd-sim-client", daemon=True
            )
            client.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(1024)  # ?WATCH={"enable":true,"json":true};
                conn.sendall(b'{"class":"VERSION","release":"3.25","proto_major":3,"proto_minor":15}\n')
                self._stream(conn)
            except OSError:
                return  # the client left

    def _stream(self, conn: socket.socket) -> None:
        while not self._stopped.is_set():
            with self._changed:
                fix, version = self._fix, self._version
            conn.sendall(_tpv(fix))
            self._wait_change(version)

    def _wait_change(self, version: int) -> None:
        """Until the position changes, the server stops, or the next periodic report is due."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._version != version or self._stopped.is_set(), timeout=self._period_s
            )


def walked(fix: SimulatedFix, north_m: float, east_m: float) -> SimulatedFix:
    """``fix`` moved by a few metres (flat-earth approximation, rounded to gpsd's 7 decimals)."""
    lat = fix.lat + north_m / _EARTH_M_PER_DEG
    lon = fix.lon + east_m / (_EARTH_M_PER_DEG * math.cos(math.radians(fix.lat)))
    return SimulatedFix(round(lat, 7), round(lon, 7), fix.accuracy_m)


def _tpv(fix: SimulatedFix | None) -> bytes:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    report: dict[str, object] = {"class": "TPV", "device": "/dev/ttyAMA0", "mode": 1, "time": now}
    if fix is not None:
        report |= {"mode": 2, "lat": fix.lat, "lon": fix.lon, "eph": fix.accuracy_m}
    return json.dumps(report).encode() + b"\n"
