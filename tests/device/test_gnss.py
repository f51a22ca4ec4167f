"""gpsd TPV parsing and the background reader against a real TCP socket."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from device.gnss import GpsdClient, location_from_tpv
from device.gnss_sim import SimulatedFix, SimulatedGpsd

TPV = {
    "class": "TPV",
    "mode": 3,
    "time": "2024-05-01T21:14:03.000Z",
    "lat": 45.7578,
    "lon": 4.832,
    "eph": 7.5,
}


def test_tpv_with_fix_becomes_a_location() -> None:
    location = location_from_tpv(TPV)
    assert location is not None
    assert (location.lat, location.lon, location.accuracy_m, location.source) == (45.7578, 4.832, 7.5, "gnss")
    assert location.fix_ts == 1714598043000


def test_older_gpsd_error_fields_are_used() -> None:
    report = {k: v for k, v in TPV.items() if k != "eph"} | {"epx": 4.0, "epy": 9.0}
    location = location_from_tpv(report)
    assert location is not None and location.accuracy_m == 9.0


@pytest.mark.parametrize(
    "report",
    [
        TPV | {"mode": 1},
        {k: v for k, v in TPV.items() if k != "lat"},
        {k: v for k, v in TPV.items() if k != "eph"},  # unknown error: not sent
        TPV | {"class": "SKY"},
        TPV | {"lat": 123.0},
    ],
)
def test_reports_without_a_usable_fix_are_ignored(report: dict[str, object]) -> None:
    assert location_from_tpv(report) is None


@pytest.fixture
def fake_gpsd() -> Iterator[tuple[int, threading.Event]]:
    """A one-client gpsd: waits for ?WATCH, answers VERSION then one TPV."""
    server = socket.create_server(("127.0.0.1", 0))
    watched = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            watched.set()
            conn.sendall(b'{"class":"VERSION","release":"3.25"}\n' + json.dumps(TPV).encode() + b"\n")
            conn.recv(1024)  # hold the connection until the client leaves

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], watched
    server.close()


def test_reader_keeps_the_latest_fix_and_expires_it(fake_gpsd: tuple[int, threading.Event]) -> None:
    port, watched = fake_gpsd
    now = [100.0]
    client = GpsdClient(port=port, max_fix_age_s=30, clock=lambda: now[0])
    client.start()
    try:
        assert watched.wait(5)
        location = client.wait_for_fix(5)
        assert location is not None and location.lat == 45.7578
        now[0] += 31
        assert client.latest() is None  # too old: the alert goes without position
    finally:
        client.stop()


def test_no_gpsd_means_no_position() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = GpsdClient(port=port, retry_s=0.1)
    client.start()
    try:
        assert client.latest() is None
    finally:
        client.stop()


def test_the_simulated_gpsd_moves_the_real_reader() -> None:
    receiver = SimulatedGpsd(SimulatedFix(43.6109, 3.8772, 4.0), period_s=0.2).start()
    client = GpsdClient(port=receiver.port, retry_s=0.1)
    client.start()
    try:
        first = client.wait_for_fix(5)
        assert first is not None and (first.lat, first.lon, first.accuracy_m) == (43.6109, 3.8772, 4.0)
        moved = receiver.walk(north_m=20, east_m=0)
        assert moved is not None and moved.lat > first.lat
        with client._lock:  # the reader notifies on every fix it keeps
            assert client._lock.wait_for(lambda: (client.latest() or first).lat == moved.lat, 5)
        receiver.move_to(None)  # mode 1 reports: the last fix stays until max_fix_age_s
        assert receiver.walk(north_m=20, east_m=0) is None
    finally:
        client.stop()
        receiver.stop()
