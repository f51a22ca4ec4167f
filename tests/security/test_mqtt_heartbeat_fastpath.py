"""Issue 16: heartbeats take a fast path (signature over the received bytes, msgspec, no model).

A device writes the signed layout that path reads; whatever it does not accept
goes through the full decoder, so a forged, tampered, replayed, stale or
oversized heartbeat is still refused with its own counted reason, on the real
broker and dispatcher, and never moves the device's health.
"""

from __future__ import annotations

import asyncio
import json
import time

from protocol.fastbeat import decode_heartbeat
from protocol.signing import signed_bytes
from protocol.topics import UplinkKind
from tests.security.mqtt_stack import Stack, eventually

READINGS = {"battery_pct": 64, "signal_dbm": -70, "firmware": "vigie-device 0.1.0", "uptime_s": 60}


async def test_forged_replayed_stale_and_oversized_heartbeats_are_refused_with_their_reason(
    stack: Stack,
) -> None:
    device = await stack.add_device("btn-fastbeat")
    monitor = stack.system.dispatcher.health

    async def counted(reason: str, at_least: float) -> None:
        async def seen() -> bool:
            return (await stack.rejected()).get(reason, 0) >= at_least

        await eventually(seen)

    async def heard() -> float:
        return (await stack.metrics("vigie_ingested_total", "type")).get("heartbeat", 0)

    # A genuine heartbeat: in the layout the fast path reads, accepted, health updated.
    _, genuine = device.encode(UplinkKind.HEARTBEAT, **READINGS)
    assert decode_heartbeat(genuine, device.device_id, device.key) is not None
    await asyncio.to_thread(device.publish_raw, UplinkKind.HEARTBEAT, genuine)

    async def accepted() -> bool:
        return await heard() >= 1

    await eventually(accepted)
    assert monitor.devices[device.device_id].battery_pct == 64

    # The same bytes again: a replay.
    await asyncio.to_thread(device.publish_raw, UplinkKind.HEARTBEAT, genuine)
    await counted("replay", 1)

    # Signed with another key (an attacker logged in as the device, without its key).
    _, honest = device.encode(UplinkKind.HEARTBEAT, **READINGS | {"battery_pct": 5})
    fields = json.loads(honest)
    forged = signed_bytes(fields, bytes(32))
    await asyncio.to_thread(device.publish_raw, UplinkKind.HEARTBEAT, forged)
    await counted("bad_signature", 1)
    # The genuine bytes with their body changed after signing.
    tampered = honest.replace(b'"battery_pct":5', b'"battery_pct":1')
    await asyncio.to_thread(device.publish_raw, UplinkKind.HEARTBEAT, tampered)
    await counted("bad_signature", 2)

    # Properly signed but eleven minutes old: a capture replayed after the time window.
    _, old = device.encode(UplinkKind.HEARTBEAT, **READINGS | {"battery_pct": 5})
    stale_fields = json.loads(old) | {"ts": int((time.time() - 660) * 1000)}
    stale_fields.pop("sig")
    await asyncio.to_thread(
        device.publish_raw, UplinkKind.HEARTBEAT, signed_bytes(stale_fields, device.key)
    )
    await counted("stale", 1)

    # Larger than the protocol allows, however it is signed.
    big = signed_bytes(json.loads(old) | {"firmware": "x" * 5000}, device.key)
    await asyncio.to_thread(device.publish_raw, UplinkKind.HEARTBEAT, big)
    await counted("too_large", 1)

    # None of them counted as a heartbeat, nor moved the battery reading.
    assert await heard() == 1
    assert monitor.devices[device.device_id].battery_pct == 64

    # The device goes on: its next genuine heartbeat is accepted.
    _, fresh = device.encode(UplinkKind.HEARTBEAT, **READINGS | {"battery_pct": 63})
    await asyncio.to_thread(device.publish_raw, UplinkKind.HEARTBEAT, fresh)

    async def fresh_heard() -> bool:
        return await heard() >= 2

    await eventually(fresh_heard)
    assert monitor.devices[device.device_id].battery_pct == 63
