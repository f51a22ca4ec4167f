"""Finding 1, the service side: ``vigie serve`` tells systemd it is ready and feeds its watchdog.

The process is started as the unit starts it (environment only), with a real
AF_UNIX datagram socket standing in for systemd's notify socket. What happens
when the ingest dies (no more pings, /healthz 503) is tested in-process in
test_mqtt_poison.py.
"""

from __future__ import annotations

import socket
from pathlib import Path

from bench.cluster import Cluster, DeviceSpec, Process, vigie_serve
from tests.deploy.test_watchdog import notify_socket as notify_socket  # systemd's socket, for real


def test_vigie_serve_says_ready_then_pings_the_watchdog(
    tmp_path: Path, notify_socket: tuple[str, socket.socket]
) -> None:
    path, sock = notify_socket
    sock.settimeout(60)  # a cold start on a loaded machine
    cluster = Cluster(tmp_path / "cluster", [DeviceSpec("btn", 1)])
    try:
        cluster.start(with_dispatcher=False)
        env = cluster.dispatcher_env() | {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
        cluster.dispatcher = Process("dispatcher", vigie_serve(), cluster.workdir / "dispatcher.log", env=env)
        cluster.dispatcher.start()
        assert sock.recv(200).startswith(b"READY=1")
        sock.settimeout(5)
        assert sock.recv(200) == b"WATCHDOG=1"
        assert sock.recv(200) == b"WATCHDOG=1"  # again within the 2 s period, not just once
        cluster.wait_dispatcher_ready(30)
    finally:
        cluster.stop()
