"""Replays with two instances: a captured cancel or heartbeat is refused by whichever instance gets it.

Each instance keeps its own in-memory windows; the one that took the original
refuses a copy at once, and the other one must refuse it too: a cancel by the
sequence number the store admitted, a heartbeat by the highest heartbeat
sequence number merged in ``device_health``. The shared subscription chooses
the instance, so the captured bytes are sent again until each instance has
refused at least one copy, and every copy must have been refused.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest

from bench import promstats
from protocol.topics import UplinkKind
from sandbox.fleet import SimulatedDevice
from tests.scaleout.conftest import Cluster, Instance
from tests.scaleout.test_health_instances import FLAGGED_WITHIN_S, INTERVAL_S, wait_for_event
from tests.support.system import METRICS_HEADERS

pytestmark = pytest.mark.faults

CANCEL_PIN = "2468"  # dr-claire-fabre's normal PIN in the Hérault directory


async def counters(instance: Instance, name: str, label: str) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(instance.url + "/metrics", headers=METRICS_HEADERS)).text
    return promstats.labelled(text, name, label)


async def replays_refused(cluster: Cluster) -> list[float]:
    """Per instance: messages refused as replays so far."""
    return [
        (await counters(i, "vigie_rejected_total", "reason")).get("replay", 0.0) for i in cluster.instances
    ]


async def replay_until_each_instance_refused(
    cluster: Cluster, device: SimulatedDevice, kind: UplinkKind, payload: bytes, *, max_copies: int = 12
) -> int:
    """Send ``payload`` again, one copy at a time (each one refused before the next), until both
    instances have refused at least one; return the number of copies sent."""
    before = await replays_refused(cluster)
    for copies in range(1, max_copies + 1):
        await asyncio.to_thread(device.publish_raw, kind, payload)
        deadline = time.monotonic() + 15
        while sum(await replays_refused(cluster)) - sum(before) < copies:
            if time.monotonic() > deadline:
                now = await replays_refused(cluster)
                raise AssertionError(f"copy {copies} of the {kind} not refused: {before} -> {now}")
            await asyncio.sleep(0.2)  # polling two other processes' /metrics
        now = await replays_refused(cluster)
        if all(n > b for n, b in zip(now, before, strict=True)):
            return copies
    raise AssertionError(f"{max_copies} copies never reached both instances")


@pytest.mark.timeout(240)
async def test_a_captured_cancel_replayed_to_the_other_instance_is_refused(cluster: Cluster) -> None:
    await cluster.add_devices(1)
    await cluster.start_instance("dispatcher-1")
    await cluster.start_instance("dispatcher-2")
    device = cluster.devices[0]
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id, 20.0)
    cancel_id, cancel = device.encode(UplinkKind.CANCEL, alert_id=alert_id, pin=CANCEL_PIN)
    await asyncio.to_thread(device.publish_raw, UplinkKind.CANCEL, cancel)
    await asyncio.to_thread(device.wait_downlink, "received", cancel_id, 20.0)
    events = await cluster.store.alert_events(alert_id)

    await replay_until_each_instance_refused(cluster, device, UplinkKind.CANCEL, cancel)

    assert await cluster.store.alert_events(alert_id) == events, cluster.logs()
    assert sum(1 for d in device.downlinks if d.type == "received" and d.ref == cancel_id) == 1


@pytest.mark.timeout(240)
async def test_a_captured_heartbeat_replayed_to_the_other_instance_does_not_keep_a_device_alive(
    cluster: Cluster,
) -> None:
    await cluster.add_devices(1, heartbeat_interval_s=INTERVAL_S)
    await cluster.start_instance("dispatcher-1")
    await cluster.start_instance("dispatcher-2")
    device = cluster.devices[0]
    _, heartbeat = device.encode(UplinkKind.HEARTBEAT, battery_pct=80, firmware="1.0", uptime_s=60)
    await asyncio.to_thread(device.publish_raw, UplinkKind.HEARTBEAT, heartbeat)
    sent_at = time.time()

    async def merged() -> asyncpg.Record | None:
        return await cluster.db.fetchrow(
            "SELECT hb_seq, last_seen_at, battery_pct FROM device_health WHERE device_id=$1", device.device_id
        )

    deadline = time.monotonic() + 15
    while (row := await merged()) is None or row["hb_seq"] is None:
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.2)  # polling the shared database for the instance's merge

    # The device falls silent; someone keeps sending its last heartbeat to the dispatchers.
    await replay_until_each_instance_refused(cluster, device, UplinkKind.HEARTBEAT, heartbeat)
    assert await merged() == row, cluster.logs()  # not seen again, readings unchanged
    await wait_for_event(cluster, device.device_id, "offline", FLAGGED_WITHIN_S + 5)
    flagged_at = await cluster.db.fetchval(
        "SELECT extract(epoch FROM at) FROM operator_events WHERE device_id=$1 AND kind='offline'",
        device.device_id,
    )
    assert float(flagged_at) - sent_at <= FLAGGED_WITHIN_S
