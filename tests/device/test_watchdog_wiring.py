"""The running device client keeps systemd's watchdog fed from its logic loop."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from device.watchdog import SystemdNotifier
from tests.device.conftest import DeviceFactory


def test_logic_loop_pings_the_watchdog_repeatedly(devices: DeviceFactory, tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd_side:
        systemd_side.bind(path)
        systemd_side.settimeout(5)
        # WatchdogSec=1: the client must ping at least every 0.5 s.
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
        devices.start(systemd=SystemdNotifier(env=env))
        pings = [systemd_side.recv(64) for _ in range(3)]
    assert pings == [b"WATCHDOG=1"] * 3
