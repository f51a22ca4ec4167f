"""Live positions through the real ingest: real Mosquitto, signed uplinks, the store, the event bus.

A simulated device (protocol level, signs what the test asks) stands for the
cases a genuine device never produces: a position for another device's alert,
a forged one, one for a closed alert. tests/device/test_positions_live.py drives
the real device client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker_config.runner import DevBroker
from dispatcher.alerting import escalation as esc
from protocol.codec import encode_uplink
from protocol.messages import Location
from protocol.topics import UplinkKind
from sandbox.fleet import SimulatedDevice
from tests.support.system import System, running_system


@pytest.fixture
async def system(broker: DevBroker, tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(broker, tmp_path) as s:
        yield s


def here(lat: float, lon: float = 3.8781, accuracy_m: float = 6.0, age_ms: int = 800) -> Location:
    return Location(
        lat=lat, lon=lon, accuracy_m=accuracy_m, fix_ts=int(time.time() * 1000) - age_ms, source="gnss"
    )


def send_position(device: SimulatedDevice, alert_id: str, fix: Location) -> str:
    return device.send(UplinkKind.POSITION, location=fix, alert_id=alert_id)


async def pressed(system: System, device_id: str) -> tuple[SimulatedDevice, str]:
    device = await system.add_device(device_id, practitioner="dr-claire-fabre", site="cabinet-boutonnet")
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id)
    return device, alert_id


async def latest_is(system: System, alert_id: str, lat: float) -> None:
    async def there() -> bool:
        fix = await system.store.latest_alert_position(alert_id)
        return fix is not None and fix.lat == lat

    await system.until(there)


async def refused(system: System, reason: str, count: int = 1) -> None:
    async def counted() -> bool:
        return (await system.store.rejection_counts()).get(reason, 0) >= count

    await system.until(counted)


async def test_positions_of_an_open_alert_are_stored_and_announced(system: System) -> None:
    device, alert_id = await pressed(system, "bra-fabre")
    async with system.dispatcher.bus.subscribe() as events:
        first = here(43.6115)
        await asyncio.to_thread(send_position, device, alert_id, first)
        await latest_is(system, alert_id, 43.6115)
        announced = await asyncio.wait_for(_next_alert_event(events, alert_id), 5)
        assert announced == {"kind": "alert", "alert_id": alert_id}

    stored = await system.store.latest_alert_position(alert_id)
    assert stored is not None
    assert (stored.lat, stored.lon, stored.accuracy_m) == (43.6115, 3.8781, 6.0)
    assert stored.at == datetime.fromtimestamp(first.fix_ts / 1000, UTC)  # the device's fix time
    assert stored.at <= stored.received_at

    await asyncio.to_thread(send_position, device, alert_id, here(43.6121, age_ms=100))
    await latest_is(system, alert_id, 43.6121)
    assert await system.store.rejection_counts() == {}


async def _next_alert_event(events: asyncio.Queue[dict[str, object]], alert_id: str) -> dict[str, object]:
    while True:
        event = await events.get()
        if event.get("kind") == "alert" and event.get("alert_id") == alert_id:
            return event


async def test_a_position_for_another_devices_alert_is_refused(system: System) -> None:
    _, hers = await pressed(system, "bra-fabre")
    other = await system.add_device("btn-other", practitioner="dr-claire-fabre", site="cabinet-boutonnet")
    await asyncio.to_thread(send_position, other, hers, here(43.70))
    await asyncio.to_thread(send_position, other, "no-such-alert", here(43.71))
    counter = system.dispatcher.metrics.rejected.labels("not_its_alert")

    async def both_counted() -> bool:
        return bool(counter._value.get() == 2)

    await system.until(both_counted)
    await refused(system, "not_its_alert")  # and logged, stored once for the interval
    assert await system.store.latest_alert_position(hers) is None


async def test_a_forged_position_is_refused(system: System) -> None:
    device, alert_id = await pressed(system, "bra-fabre")
    _, forged = encode_uplink(
        kind="position",
        device_id=device.device_id,
        event_id="f0f0f0f0-0000-4000-8000-000000000001",
        seq=10_000,
        ts_ms=int(time.time() * 1000),
        key=bytes(32),  # not the device's key
        alert_id=alert_id,
        location=here(43.70),
    )
    await asyncio.to_thread(device.publish_raw, UplinkKind.POSITION, forged)
    await refused(system, "bad_signature")
    assert await system.store.latest_alert_position(alert_id) is None


async def test_positions_are_refused_once_the_alert_is_closed(system: System) -> None:
    device, alert_id = await pressed(system, "bra-fabre")
    await asyncio.to_thread(send_position, device, alert_id, here(43.6115))
    await latest_is(system, alert_id, 43.6115)

    assert await system.dispatcher.engine.handle(alert_id, esc.Resolved(by="opérateur test"))
    await asyncio.to_thread(device.wait_downlink, "resolved", alert_id)
    await asyncio.to_thread(send_position, device, alert_id, here(43.62, age_ms=0))
    await refused(system, "alert_closed")
    fix = await system.store.latest_alert_position(alert_id)
    assert fix is not None and fix.lat == 43.6115  # where she was last seen while it was open
    # A device still sending has missed the close: it is told again, and stops.
    await asyncio.to_thread(device.wait_downlinks, "resolved", alert_id, 2)


async def test_after_a_duress_a_closed_alert_is_only_ever_told_cancelled(system: System) -> None:
    device, alert_id = await pressed(system, "bra-fabre")
    await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=alert_id, pin="1357")  # her duress PIN
    await asyncio.to_thread(device.wait_downlink, "cancelled", alert_id)
    assert (await system.store.get_alert(alert_id)).state == "duress"
    await asyncio.to_thread(send_position, device, alert_id, here(43.6115))  # the alert is still open
    await latest_is(system, alert_id, 43.6115)

    assert await system.dispatcher.engine.handle(alert_id, esc.Resolved(by="opérateur test"))
    await asyncio.to_thread(send_position, device, alert_id, here(43.62, age_ms=0))
    await refused(system, "alert_closed")
    assert await asyncio.to_thread(device.wait_downlinks, "cancelled", alert_id, 2) == 2
    assert not [
        d for d in device.downlinks if d.ref == alert_id and d.type != "cancelled" and d.type != "received"
    ]


async def test_positions_do_not_spend_the_tokens_of_her_next_alert(system: System) -> None:
    device, alert_id = await pressed(system, "bra-fabre")
    for step in range(12):  # more than the per-device alert burst (5)
        await asyncio.to_thread(
            send_position, device, alert_id, here(43.61 + step / 10_000, age_ms=12 - step)
        )
    await latest_is(system, alert_id, 43.61 + 11 / 10_000)
    again = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", again)
    counts = await system.store.rejection_counts()
    assert "rate_limited" not in counts and "queue_full" not in counts
