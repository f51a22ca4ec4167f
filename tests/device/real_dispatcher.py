"""The real device client (gpiozero mock pins) registered with a running dispatcher."""

from __future__ import annotations

from pathlib import Path

from gpiozero.pins.mock import MockFactory

from broker_config.runner import DevBroker
from device.client import DeviceClient
from device.config import load_config, read_hmac_key, read_mqtt_password
from device.haptics import PulseTiming
from device.link import Backoff
from device.watchdog import SystemdNotifier
from dispatcher.domain import Device, DeviceKind
from tests.device.conftest import FAST_PULSES
from tests.support.system import System


async def register(
    system: System, broker: DevBroker, config: Path, password: str, *, practitioner: str = "dr-claire-fabre"
) -> bytes:
    """What provisioning does: the device's key in the store, its account on the broker."""
    loaded = load_config(config)
    key = read_hmac_key(loaded)
    device = Device(
        id=loaded.device.id,
        kind=DeviceKind.BRACELET,
        practitioner_id=practitioner,
        site_id="cabinet-boutonnet",
        label=loaded.device.id,
    )
    await system.store.add_device(device, key)
    await system.dispatcher.cache.refresh()
    broker.add_account(loaded.device.id, password)
    broker.reload()
    return key


def run_device(
    config: Path, *, pulses: PulseTiming = FAST_PULSES, pins: MockFactory | None = None
) -> DeviceClient:
    """Start the client on mock pins (``pins``, to watch the motor); the caller stops it."""
    loaded = load_config(config)
    client = DeviceClient(
        loaded,
        key=read_hmac_key(loaded),
        password=read_mqtt_password(loaded),
        pin_factory=pins or MockFactory(),
        pulse_timing=pulses,
        resend_interval_s=0.5,
        backoff=Backoff(min_s=1, max_s=1),
        systemd=SystemdNotifier(env={}),
    )
    client.start()
    return client
