"""Device health end to end: heartbeats and Last Will reach the operators."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker_config.runner import DevBroker
from protocol.topics import UplinkKind
from sandbox.fleet import SimulatedDevice
from tests.support.system import System, running_system


@pytest.fixture
async def system(broker: DevBroker, tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(broker, tmp_path) as s:
        yield s


async def device_with_interval(system: System, device_id: str, interval_s: int) -> SimulatedDevice:
    sim = await system.add_device(device_id, practitioner="dr-claire-fabre")
    device = await system.store.get_device(device_id)
    await system.store.update_device(device.model_copy(update={"heartbeat_interval_s": interval_s}))
    await system.dispatcher.cache.refresh()
    return sim


async def heartbeat(system: System, sim: SimulatedDevice, battery: int) -> None:
    await asyncio.to_thread(sim.send, UplinkKind.HEARTBEAT, battery_pct=battery, firmware="t", uptime_s=60)

    async def seen() -> bool:
        health = system.dispatcher.health.devices.get(sim.device_id)
        return health is not None and health.battery_pct == battery

    await system.until(seen)


async def kinds_of_events(system: System, device_id: str) -> list[str]:
    return [e["kind"] for e in await system.store.operator_events() if e["device_id"] == device_id]


async def test_low_battery_is_raised_once_and_cleared_when_charged(system: System) -> None:
    sim = await device_with_interval(system, "bracelet-low", 30)
    await heartbeat(system, sim, battery=12)
    await system.dispatcher.health.tick(time.time())
    await system.dispatcher.health.tick(time.time())
    assert await kinds_of_events(system, "bracelet-low") == ["low_battery"]

    await heartbeat(system, sim, battery=95)
    await system.dispatcher.health.tick(time.time())
    assert sorted(await kinds_of_events(system, "bracelet-low")) == ["low_battery", "low_battery_cleared"]


async def test_a_device_silent_for_two_intervals_is_flagged_offline(system: System) -> None:
    sim = await device_with_interval(system, "bracelet-quiet", 10)
    await heartbeat(system, sim, battery=80)
    now = time.time()
    assert not [c for c in await system.dispatcher.health.tick(now + 15) if c.device_id == sim.device_id]
    changes = await system.dispatcher.health.tick(now + 23)  # 2 intervals and the arrival grace (2 s)
    assert [(c.device_id, c.flag, c.raised) for c in changes if c.device_id == sim.device_id] == [
        ("bracelet-quiet", "offline", True)
    ]
    rows = {r["device_id"]: r for r in await system.store.device_health()}
    assert "offline" in rows["bracelet-quiet"]["flags"]


async def test_an_interval_shortened_in_the_directory_counts_from_the_next_pass(system: System) -> None:
    """A directory edit re-evaluates only the devices it changed; a device whose heartbeat interval
    an administrator shortened is still flagged at its new limit, not at the old one."""
    sim = await device_with_interval(system, "bracelet-edited", 3600)
    await heartbeat(system, sim, battery=80)
    now = time.time()
    assert not [c for c in await system.dispatcher.health.tick(now + 1) if c.device_id == sim.device_id]
    device = await system.store.get_device(sim.device_id)
    await system.store.update_device(device.model_copy(update={"heartbeat_interval_s": 10}))
    await system.dispatcher.cache.refresh()
    assert not [c for c in await system.dispatcher.health.tick(now + 5) if c.device_id == sim.device_id]
    changes = await system.dispatcher.health.tick(now + 23)  # 2 new intervals and the arrival grace
    assert [(c.device_id, c.flag, c.raised) for c in changes if c.device_id == sim.device_id] == [
        ("bracelet-edited", "offline", True)
    ]


async def test_a_flag_the_store_could_not_record_is_raised_again_at_the_next_pass(
    system: System, tmp_path: Path
) -> None:
    """The store refuses the pass's write (a disk full, say): the pass fails, and the next one
    raises the flag again, with its operator event, instead of holding it in memory untold."""
    sim = await device_with_interval(system, "bracelet-untold", 10)
    await heartbeat(system, sim, battery=80)
    now = time.time()
    db = sqlite3.connect(tmp_path / "vigie.db", timeout=30)
    db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON operator_events BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    db.commit()
    with pytest.raises(Exception, match="disk full"):
        await system.dispatcher.health.tick(now + 23)
    assert "offline" not in system.dispatcher.health.devices[sim.device_id].flags
    db.execute("DROP TRIGGER refuse")
    db.commit()
    db.close()
    changes = await system.dispatcher.health.tick(now + 24)
    assert [(c.flag, c.raised) for c in changes if c.device_id == sim.device_id] == [("offline", True)]
    assert await kinds_of_events(system, "bracelet-untold") == ["offline"]
    rows = {r["device_id"]: r for r in await system.store.device_health()}
    assert "offline" in rows["bracelet-untold"]["flags"]


async def test_last_will_offline_is_flagged_without_waiting_for_silence(system: System) -> None:
    sim = await device_with_interval(system, "btn-lwt", 30)
    await heartbeat(system, sim, battery=80)
    await asyncio.to_thread(sim.publish_status, "offline")

    async def offline_status() -> bool:
        return system.dispatcher.health.devices[sim.device_id].status == "offline"

    await system.until(offline_status)
    changes = await system.dispatcher.health.tick(time.time())
    assert ("btn-lwt", "offline", True) in [(c.device_id, c.flag, c.raised) for c in changes]
