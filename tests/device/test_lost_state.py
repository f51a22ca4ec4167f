"""A device whose state directory is lost comes back; captured old messages stay refused.

The real device client (gpiozero mock pins) against the real dispatcher, broker
and sandbox provider: the device raises an alert, its state directory is then
deleted (an SD card reflashed), and the restarted device's next alert must be
taken, while the old heartbeat and alert, replayed byte for byte, change nothing.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import paho.mqtt.client as mqtt

from broker_config.runner import DISPATCHER_USER, DevBroker
from device.client import DeviceClient
from protocol.topics import UplinkKind, parse_topic
from sandbox.fleet import SimulatedDevice
from tests.device.conftest import write_device_config
from tests.device.real_dispatcher import register, run_device
from tests.support.broker import mqtt_recorder, new_password
from tests.support.system import System, running_system

DEVICE = "bra-reflashed"


def alert_until_received(client: DeviceClient) -> None:
    """Raise an alert and wait for the dispatcher's ``received`` (it was accepted and stored)."""
    assert client.wait_for(lambda s: s.connects >= 1 and s.heartbeats >= 1, 10), "device never connected"
    client.request_alert()
    assert client.wait_for(lambda s: s.alerts == 1, 5)
    assert client.wait_for(lambda s: s.downlinks_applied >= 1, 15), "the dispatcher never confirmed the alert"
    assert client.pending() == []


def drills_until_received(client: DeviceClient, count: int) -> None:
    """A few test alerts: the old counter runs well ahead of what the new one uses before its alert."""
    applied = client.stats().downlinks_applied
    for _ in range(count):
        client.request_test()
    assert client.wait_for(lambda s: s.downlinks_applied >= applied + count, 15), "tests not confirmed"


async def device_alerts(system: System) -> list[str]:
    return [a.id for a in await system.store.list_alerts() if a.device_id == DEVICE and a.kind == "alert"]


async def test_lost_state_directory_is_accepted_and_old_captured_messages_stay_refused(
    broker: DevBroker, tmp_path: Path
) -> None:
    password = new_password()
    config = write_device_config(tmp_path / "pi", port=broker.port, device_id=DEVICE, password=password)
    async with running_system(broker, tmp_path / "server") as system:
        key = await register(system, broker, config, password)
        with mqtt_recorder(broker, DISPATCHER_USER, f"vigie/v1/dev/{DEVICE}/up/+") as wire:
            before = await asyncio.to_thread(run_device, config)
            await asyncio.to_thread(alert_until_received, before)
            await asyncio.to_thread(drills_until_received, before, 5)
            await asyncio.to_thread(before.stop)
            captured: list[mqtt.MQTTMessage] = list(wire.messages)
        assert {parse_topic(m.topic).kind for m in captured} >= {UplinkKind.HEARTBEAT, UplinkKind.ALERT}
        (first_alert,) = await device_alerts(system)

        shutil.rmtree(tmp_path / "pi" / "state")  # the SD card is reflashed: counter and outbox gone
        after = await asyncio.to_thread(run_device, config)
        try:
            await asyncio.to_thread(alert_until_received, after)
        finally:
            await asyncio.to_thread(after.stop)
        assert len(await device_alerts(system)) == 2

        # Someone replays what was captured before the reflash, byte for byte.
        replayer = SimulatedDevice(DEVICE, key, "127.0.0.1", broker.port, password)
        await asyncio.to_thread(replayer.connect)
        try:
            for message in captured:
                kind = parse_topic(message.topic).kind
                assert kind is not None
                await asyncio.to_thread(replayer.publish_raw, kind, bytes(message.payload))

            async def heartbeat_refused() -> bool:
                return (await system.store.rejection_counts()).get("replay", 0) >= 1

            await system.until(heartbeat_refused, within=10)
            # The old alert is recognised by its id: answered "received" again, nothing new raised.
            await asyncio.to_thread(replayer.wait_downlink, "received", first_alert)
        finally:
            replayer.close()
        assert len(await device_alerts(system)) == 2
