"""Bad input through the real broker and dispatcher: refused, counted by reason, nobody blocked."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from bench.promstats import labelled
from broker_config.runner import DevBroker
from protocol.codec import encode_uplink, new_event_id, to_bytes
from protocol.signing import sign
from protocol.topics import UplinkKind, uplink_topic
from sandbox.fleet import SimulatedDevice
from tests.support.system import METRICS_HEADERS, System, running_system


async def button(system: System, device_id: str) -> SimulatedDevice:
    """A desk button at the Boutonnet practice (police zone, three first-tier notifications)."""
    return await system.add_device(device_id, practitioner="dr-claire-fabre", site="cabinet-boutonnet")


@pytest.fixture
async def system(broker: DevBroker, tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(broker, tmp_path) as s:
        yield s


async def rejected_counts(system: System) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(system.public_url + "/metrics", headers=METRICS_HEADERS)).text
    return labelled(text, "vigie_rejected_total", "reason")


async def wait_counts(
    system: System, expected: Mapping[str, float], within: float = 15.0
) -> dict[str, float]:
    """Until /metrics shows at least ``expected`` (re-checked on every dispatcher event)."""

    async def reached() -> bool:
        counts = await rejected_counts(system)
        return all(counts.get(reason, 0) >= n for reason, n in expected.items())

    await system.until(reached, within)
    return await rejected_counts(system)


def signed(device: SimulatedDevice, kind: str = "alert", **override: object) -> bytes:
    fields: dict[str, object] = {
        "v": 1,
        "type": kind,
        "id": new_event_id(),
        "device": device.device_id,
        "seq": next(device.seq),
        "ts": int(time.time() * 1000),
        "gesture": "hold",
    }
    fields.update(override)
    return to_bytes(sign(fields, device.key))


async def test_every_kind_of_bad_uplink_is_refused_and_counted_by_reason(system: System) -> None:
    device = await button(system, "btn-bad-input")
    publish = device.publish_raw
    now = int(time.time() * 1000)
    bad: list[tuple[UplinkKind, bytes]] = [
        (UplinkKind.ALERT, b"\xff\xfe not json"),
        (UplinkKind.ALERT, json.dumps({"v": 2, "type": "alert"}).encode()),
        (UplinkKind.ALERT, signed(device, kind="test")),  # type differs from the topic leaf
        (UplinkKind.ALERT, signed(device, gesture="wave")),  # signed, but not the schema
        (UplinkKind.ALERT, to_bytes(sign(json.loads(signed(device)), b"k" * 32))),  # wrong key
        (UplinkKind.ALERT, signed(device, ts=now - 2 * 24 * 3600 * 1000)),
        (UplinkKind.ALERT, signed(device, ts=now + 3600 * 1000)),
        (UplinkKind.ALERT, signed(device, gesture="x" * 5000)),  # > 4 KiB, < the broker's 8 KiB
    ]
    for kind, payload in bad:
        await asyncio.to_thread(publish, kind, payload)
    genuine = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", genuine)
    genuine_seq = next(device.seq) - 1  # a new alert reusing the genuine one's sequence number
    _, replayed = encode_uplink(
        kind="alert",
        device_id=device.device_id,
        event_id=new_event_id(),
        seq=genuine_seq,
        ts_ms=now,
        key=device.key,
        gesture="hold",
    )
    await asyncio.to_thread(publish, UplinkKind.ALERT, replayed)
    ghost_password = secrets.token_urlsafe(12)
    system.broker.add_account("ghost-device", ghost_password)
    system.broker.reload()
    ghost = SimulatedDevice(
        "ghost-device", secrets.token_bytes(32), "127.0.0.1", system.broker.port, ghost_password
    )
    await asyncio.to_thread(ghost.connect)
    try:
        await asyncio.to_thread(ghost.alert)
        expected = {
            "not_json": 1,
            "bad_version": 1,
            "topic_mismatch": 1,
            "bad_schema": 1,
            "bad_signature": 1,
            "stale": 1,
            "future_ts": 1,
            "too_large": 1,
            "replay": 1,
            "unknown_device": 1,
        }
        counts = await wait_counts(system, expected)
    finally:
        ghost.close()
    assert counts == expected
    stored = await system.store.rejection_counts()
    assert stored == expected
    assert [a.id for a in await system.store.list_alerts()] == [genuine]


async def test_the_broker_refuses_a_packet_over_its_maximum_size(system: System) -> None:
    """The first layer: Mosquitto's max_packet_size (8 KiB) disconnects the sender."""
    device = await button(system, "btn-oversized")
    device.close()  # its own client id is the only one the broker lets this login use
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device.device_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(device.device_id, device.password)
    connected, dropped = threading.Event(), threading.Event()
    reasons: list[object] = []

    def on_connect(_c: object, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if not reason.is_failure:  # a refused CONNECT would pass the test below for the wrong reason
            connected.set()

    client.on_connect = on_connect

    def on_disconnect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        reasons.append(reason)
        dropped.set()

    client.on_disconnect = on_disconnect
    client.connect("127.0.0.1", system.broker.port)
    client.loop_start()
    try:
        assert await asyncio.to_thread(connected.wait, 5)
        payload = signed(device, gesture="x" * 70_000)
        client.publish(uplink_topic(device.device_id, UplinkKind.ALERT), payload, qos=1)
        assert await asyncio.to_thread(dropped.wait, 10), "the broker kept a client sending 70 KB packets"
    finally:
        client.loop_stop()
    # It never reached the dispatcher: a genuine alert after it is the first thing counted.
    await asyncio.to_thread(device.connect)
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id)
    assert (await rejected_counts(system)).get("too_large", 0) == 0
    assert "too large" in system.broker.log_text().lower() or reasons


async def test_a_flooding_device_is_rate_limited_without_blocking_another(system: System) -> None:
    flooder = await button(system, "btn-flooder")
    victim = await button(system, "btn-victim")
    flood_ids = [await asyncio.to_thread(flooder.alert) for _ in range(40)]
    victim_alert = await asyncio.to_thread(victim.alert)

    await asyncio.to_thread(victim.wait_downlink, "received", victim_alert)

    async def victim_notified() -> bool:
        return any(n.provider_sid for n in await system.store.notifications_for(victim_alert))

    await system.until(victim_notified, within=10)
    counts = await wait_counts(system, {"rate_limited": 35})
    assert counts == {"rate_limited": 35}  # burst of 5 accepted, the rest refused
    stored = {a.id for a in await system.store.list_alerts(limit=1000)}
    assert stored & set(flood_ids) == set(flood_ids[:5])
    assert victim_alert in stored
