"""device/watchdog.py against a real AF_UNIX datagram socket standing in for systemd's."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.watchdog import SystemdNotifier, watchdog_interval_s


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_outside_systemd_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier(env={})
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.watchdog()


def test_ready_status_and_watchdog_reach_the_socket(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    now = [100.0]
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = SystemdNotifier(env=env, clock=lambda: now[0])
    assert notifier.ready("connected")
    assert sock.recv(100) == b"READY=1\nSTATUS=connected"
    assert notifier.watchdog()
    assert sock.recv(100) == b"WATCHDOG=1"
    now[0] += 10  # less than half of 30 s: no ping needed yet
    assert not notifier.watchdog()
    now[0] += 6
    assert notifier.watchdog()
    assert sock.recv(100) == b"WATCHDOG=1"


def test_watchdog_meant_for_another_pid_is_ignored() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "5000000"}) == 5.0


def test_a_vanished_socket_is_not_fatal(tmp_path: Path) -> None:
    notifier = SystemdNotifier(env={"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled and not notifier.ready()
