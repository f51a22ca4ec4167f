"""What she feels when the real dispatcher answers: received, cancel refused, closed.

The device client on mock pins, the dispatcher, Mosquitto and the sandbox
provider, all real. Dr Fabre's PINs in the directory are 2468 (cancel) and
1357 (duress); this device was set up with a wrong cancel PIN.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gpiozero.pins.mock import MockFactory, MockPin

from broker_config.runner import DevBroker
from device.client import DeviceClient
from tests.device.conftest import FEEDBACK_PIN, READABLE_PULSES, felt_rhythms, write_device_config
from tests.device.real_dispatcher import register, run_device
from tests.support.broker import new_password
from tests.support.system import running_system

DEVICE = "bra-fabre-pins"


def felt_after(client: DeviceClient, pins: MockFactory, count: int) -> list[str]:
    """Wait until ``count`` patterns were played, then read the motor pin."""
    assert client.feedback.wait_played(count, 20), client.feedback.played
    assert client.feedback.wait_idle(10)
    motor: MockPin = pins.pin(FEEDBACK_PIN)
    return felt_rhythms(motor)


async def test_wrong_pin_is_felt_as_refused_and_the_duress_pin_as_an_ordinary_close(
    broker: DevBroker, tmp_path: Path
) -> None:
    password = new_password()
    config = write_device_config(
        tmp_path / "pi",
        port=broker.port,
        device_id=DEVICE,
        password=password,
        cancel='pin = "1111"\nduress_pin = "1357"',
    )
    async with running_system(broker, tmp_path / "server") as system:
        await register(system, broker, config, password)
        pins = MockFactory()
        client = await asyncio.to_thread(run_device, config, pulses=READABLE_PULSES, pins=pins)
        try:
            assert await asyncio.to_thread(client.wait_for, lambda s: s.connects >= 1, 10)
            client.request_alert()
            assert await asyncio.to_thread(felt_after, client, pins, 1) == ["S"]  # received

            client.request_cancel()  # the wrong PIN
            assert await asyncio.to_thread(felt_after, client, pins, 2) == ["S", "LL"]
            active = client.ledger.latest_active_alert()
            assert active is not None  # still open: she knows to act, and can cancel again

            client.request_cancel(duress=True)
            assert await asyncio.to_thread(felt_after, client, pins, 3) == ["S", "LL", "L"]
            (alert,) = [a for a in await system.store.list_alerts() if a.device_id == DEVICE]
            assert alert.id == active.event_id and alert.state == "duress"
        finally:
            await asyncio.to_thread(client.stop)


async def test_a_real_devices_low_battery_reaches_the_dispatchers_device_health(
    broker: DevBroker, tmp_path: Path
) -> None:
    supply = tmp_path / "pi" / "power_supply" / "ups-hat"
    supply.mkdir(parents=True)
    (supply / "type").write_text("Battery\n")
    (supply / "capacity").write_text("9\n")
    password = new_password()
    config = write_device_config(
        tmp_path / "pi",
        port=broker.port,
        device_id=DEVICE,
        password=password,
        battery='sysfs_root = "power_supply"',
    )
    async with running_system(broker, tmp_path / "server") as system:
        await register(system, broker, config, password)
        client = await asyncio.to_thread(run_device, config)
        try:

            async def flagged() -> bool:
                health = system.dispatcher.health.devices.get(DEVICE)
                return health is not None and health.battery_pct == 9 and "low_battery" in health.flags

            await system.until(flagged, within=15)
        finally:
            await asyncio.to_thread(client.stop)
