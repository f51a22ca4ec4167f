"""Finding 1 (critical): one deeply nested JSON message stopped all alert processing for good.

From a device's own login, with no HMAC key: a ~2 KB alert nested ~970
levels. ``json.loads`` accepted it, the signature check's ``json.dumps`` raised
RecursionError, the ingest task died, ``/healthz`` still said ok, and the
unacknowledged message killed the ingest again after every restart.
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from dispatcher.liveness import feed_watchdog
from protocol.topics import UplinkKind
from tests.deploy.test_watchdog import (
    notify_socket as notify_socket,  # a datagram socket standing in for systemd
)
from tests.security.mqtt_stack import Stack, press_until_received

DEPTH = 970


def poison(device_id: str) -> bytes:
    nested = b"[" * DEPTH + b"]" * DEPTH
    return b'{"v":1,"type":"alert","device":"%s","sig":"00","x":%s}' % (device_id.encode(), nested)


async def until_counted(stack: Stack, reason: str, n: float, within: float = 10.0) -> dict[str, float]:
    async def reached() -> bool:
        return (await stack.rejected()).get(reason, 0) >= n

    await stack.system.until(reached, within)
    return await stack.rejected()


async def test_nested_json_is_refused_acked_and_ingest_keeps_working(stack: Stack) -> None:
    attacker = await stack.add_device("btn-poison")
    victim = await stack.add_device("btn-victim")
    payload = poison("btn-poison")
    assert len(payload) < 2048
    await asyncio.to_thread(attacker.publish_raw, UplinkKind.ALERT, payload)
    counts = await until_counted(stack, "too_deep", 1)
    # Legitimate traffic after it, from another device and from the attacker's own device.
    for device in (victim, attacker):
        alert_id = await asyncio.to_thread(device.alert)
        await asyncio.to_thread(device.wait_downlink, "received", alert_id)
    response = await stack.healthz()
    assert response.status_code == 200 and response.json()["ok"] is True
    assert stack.system.dispatcher.dead_tasks() == []
    # Acknowledged, so a broker restart (persistent sessions) does not hand it over again.
    await asyncio.to_thread(stack.broker.restart)
    late = await stack.add_device("btn-after-restart")
    await asyncio.to_thread(press_until_received, late)
    assert (await stack.rejected()).get("too_deep") == counts["too_deep"] == 1


@pytest.mark.parametrize("stack", ["dev"], indirect=True)
async def test_a_dead_ingest_fails_healthz_and_starves_the_watchdog(
    stack: Stack, notify_socket: tuple[str, socket.socket]
) -> None:
    path, sock = notify_socket
    d = stack.system.dispatcher
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}
    feeder = asyncio.create_task(feed_watchdog(d.dead_tasks, env=env))
    try:
        assert (await asyncio.to_thread(sock.recv, 100)).startswith(b"READY=1")
        assert await asyncio.to_thread(sock.recv, 100) == b"WATCHDOG=1"
        assert (await stack.healthz()).status_code == 200
        ingest = next(t for t in d.tasks if t.get_name() == "ingest")
        ingest.cancel()  # the ingest stops, whatever the cause
        await asyncio.wait({ingest})
        response = await stack.healthz()
        assert response.status_code == 503
        assert response.json()["dead_tasks"] == ["ingest"] and response.json()["ok"] is False
        await asyncio.wait_for(feeder, 5)  # the feeder gives up: no more pings
        tail = []
        sock.settimeout(0.1)
        while True:
            try:
                tail.append(sock.recv(100))
            except TimeoutError:
                break
        assert tail[-1] == "STATUS=arrêt : tâche(s) de fond ingest morte(s)".encode()
        assert tail.count(b"WATCHDOG=1") <= 1  # at most one ping raced the cancellation
    finally:
        feeder.cancel()
