"""Device health with two instances sharing each device's heartbeats (shared subscription).

Each instance receives only part of each device's heartbeats and Last Wills;
the observations are merged in the store and one instance, the lease holder,
decides the flags. Asserted over two minutes of 20 devices heartbeating every
5 s: no false flag, silenced devices flagged once each within two intervals
and one pass, a Last Will received by one instance cleared by a heartbeat the
other one receives, and the flags carried on when the leader is killed.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import pytest

from dispatcher.fleet.devicehealth import ARRIVAL_GRACE_S
from protocol.topics import UplinkKind
from sandbox.fleet import SimulatedDevice
from tests.scaleout.conftest import Cluster

pytestmark = pytest.mark.faults

INTERVAL_S = 5
# Two intervals and the arrival grace, one health pass (1 s), one flush of the
# receiving instance (1 s), and scheduling slack on two shared cores.
FLAGGED_WITHIN_S = 2 * INTERVAL_S + ARRIVAL_GRACE_S + 1 + 1 + 2


class Heartbeats:
    """Every device heartbeats every INTERVAL_S until silenced (as a real device does)."""

    def __init__(self, devices: list[SimulatedDevice]) -> None:
        self.devices = devices
        self.silenced: set[str] = set()
        self.last_sent: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            for sim in self.devices:
                if sim.device_id not in self.silenced:
                    await asyncio.to_thread(
                        sim.send, UplinkKind.HEARTBEAT, battery_pct=80, firmware="1.0", uptime_s=60
                    )
                    self.last_sent[sim.device_id] = time.time()
            # Pacing the simulated devices, not waiting on a result.
            await asyncio.sleep(max(0.0, started + INTERVAL_S - time.monotonic()))


async def health_events(cluster: Cluster) -> list[tuple[str, str, float]]:
    rows = await cluster.db.fetch(
        "SELECT device_id, kind, extract(epoch FROM at) AS at FROM operator_events"
        " WHERE device_id IS NOT NULL ORDER BY id"
    )
    return [(r["device_id"], r["kind"], float(r["at"])) for r in rows]


async def wait_for_event(cluster: Cluster, device_id: str, kind: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not any(d == device_id and k == kind for d, k, _ in await health_events(cluster)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {kind} event for {device_id} within {within} s\n{cluster.logs()}")
        await asyncio.sleep(0.2)  # polling the shared database: no in-process event to wait on


@pytest.mark.timeout(300)
async def test_two_instances_flag_silent_devices_once_and_nothing_else(cluster: Cluster) -> None:
    await cluster.add_devices(20, heartbeat_interval_s=INTERVAL_S)
    first = await cluster.start_instance("dispatcher-1")
    await cluster.start_instance("dispatcher-2")
    beats = Heartbeats(cluster.devices)
    task = asyncio.create_task(beats.run())
    try:
        # A minute of steady heartbeats split across both instances: nothing to flag.
        await asyncio.sleep(60)  # the soak itself: the assertion is that nothing happens during it
        assert not task.done(), task  # the simulated devices are still heartbeating
        assert await health_events(cluster) == [], cluster.logs()

        # Three devices fall silent.
        silent = [d.device_id for d in cluster.devices[:3]]
        beats.silenced.update(silent)
        for device_id in silent:
            await wait_for_event(cluster, device_id, "offline", FLAGGED_WITHIN_S + 5)

        # A Last Will (received by one instance) then a reconnect whose heartbeats go to either.
        will = cluster.devices[5]
        beats.silenced.add(will.device_id)
        await asyncio.to_thread(will.publish_status, "offline")
        await wait_for_event(cluster, will.device_id, "offline", 5)
        await asyncio.to_thread(will.publish_status, "online")
        beats.silenced.discard(will.device_id)
        await wait_for_event(cluster, will.device_id, "offline_cleared", INTERVAL_S + 5)

        # The leader dies: the other instance takes over the flags without raising them again.
        leader = await cluster.db.fetchval("SELECT owner FROM leases WHERE name='health'")
        victim = next(i for i in cluster.instances if i.name == leader)
        victim.kill(signal.SIGKILL)
        await asyncio.sleep(30)  # lease (5 s) taken over, then six passes of the new leader
    finally:
        task.cancel()

    events = await health_events(cluster)
    per_episode = Counter((d, k) for d, k, _ in events)
    assert {d for d, k in per_episode if k == "offline"} == set(silent) | {will.device_id}, events
    assert all(n == 1 for n in per_episode.values()), events
    for device_id in silent:
        flagged_at = next(at for d, k, at in events if d == device_id and k == "offline")
        assert flagged_at - beats.last_sent[device_id] <= FLAGGED_WITHIN_S, (device_id, events)
    assert await cluster.db.fetchval("SELECT owner FROM leases WHERE name='health'") != victim.name
    assert first.name in {i.name for i in cluster.instances}
