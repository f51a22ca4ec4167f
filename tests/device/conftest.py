"""Fixtures for the device client: a real Mosquitto with a device account, configs, mock pins."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from broker_config.runner import DISPATCHER_USER, DevBroker
from device.client import DeviceClient
from device.config import DeviceConfig, load_config, read_hmac_key, read_mqtt_password
from device.feedback import PulseTiming
from device.link import Backoff
from device.watchdog import SystemdNotifier
from protocol.codec import encode_downlink
from protocol.messages import DownlinkType
from tests.support.broker import dispatcher_account, new_password

DEVICE_ID = "btn-test-1"
BUTTON_PIN = 17
FEEDBACK_PIN = 27
FAST_PULSES = PulseTiming(short_s=0.01, long_s=0.03, gap_s=0.01, pause_s=0.01)
# Slow enough to tell short from long, and one pattern from the next, on a loaded machine.
READABLE_PULSES = PulseTiming(short_s=0.02, long_s=0.25, gap_s=0.03, pause_s=0.35)


def felt_rhythms(pin: MockPin, timing: PulseTiming = READABLE_PULSES) -> list[str]:
    """The motor pin's history read back as rhythms, e.g. ``["S", "SSS", "L"]``.

    gpiozero's mock pin records each change with the time since the previous
    one: a rising edge carries how long the motor was off, a falling edge how
    long it was on.
    """
    groups: list[str] = []
    for change in pin.states[1:]:
        if change.state:
            if not groups or change.timestamp > (timing.gap_s + timing.pause_s) / 2:
                groups.append("")
        else:
            groups[-1] += "L" if change.timestamp > (timing.short_s + timing.long_s) / 2 else "S"
    return groups


def write_device_config(
    directory: Path,
    *,
    port: int,
    device_id: str = DEVICE_ID,
    password: str | None = None,
    state_dir: str = "state",
    hold_s: float = 0.2,
    extra_gestures: str = "",
    cancel: str = 'pin = "1234"\nduress_pin = "9999"',
    feedback: str = "",
    battery: str = 'sysfs_root = "power_supply"',
    gnss: str = "enabled = false",
    heartbeat_interval_s: float = 30,
) -> Path:
    """A complete device TOML (plus key and password files) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hmac.key").write_text(secrets.token_hex(32) + "\n")
    password_line = ""
    if password is not None:
        (directory / "mqtt.password").write_text(password + "\n")
        password_line = 'password_file = "mqtt.password"'
    path = directory / "device.toml"
    path.write_text(
        f"""
[device]
id = "{device_id}"
kind = "bracelet"
hmac_key_file = "hmac.key"
state_dir = "{state_dir}"

[mqtt]
host = "127.0.0.1"
port = {port}
keepalive_s = 10
heartbeat_interval_s = {heartbeat_interval_s}
{password_line}

[gpio]
button_pin = {BUTTON_PIN}
feedback_pin = {FEEDBACK_PIN}
feedback = "vibration"
pull_up = true

[gestures]
hold_s = {hold_s}
presses = 3
within_s = 2.0
cancel_presses = 5
cancel_within_s = 3.0
{extra_gestures}

[cancel]
{cancel}

[gnss]
{gnss}

[feedback]
{feedback}

[battery]
{battery}
"""
    )
    return path


@pytest.fixture
def device_broker(tmp_path: Path) -> Iterator[DevBroker]:
    """A real Mosquitto whose accounts (dispatcher + the test device) exist before it starts."""
    broker = DevBroker(tmp_path / "broker")
    dispatcher_account(broker)
    broker.add_account(DEVICE_ID, new_password())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class ManualClock:
    """A monotonic clock the test moves by hand, for taps of a known length."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RunningDevice:
    """A started client with mock pins, and what a test needs to drive and observe it."""

    client: DeviceClient
    config: DeviceConfig
    key: bytes
    factory: MockFactory
    clock: ManualClock | None

    @property
    def button(self) -> MockPin:
        pin: MockPin = self.factory.pin(BUTTON_PIN)
        return pin

    @property
    def motor(self) -> MockPin:
        pin: MockPin = self.factory.pin(FEEDBACK_PIN)
        return pin

    def wait_connected(self, count: int = 1, timeout: float = 10.0) -> None:
        assert self.client.wait_for(lambda s: s.connects >= count, timeout), "device never connected"

    def hold_until_alert(self, timeout: float = 5.0) -> None:
        """Hold the (real-time) button until the client has raised an alert, then release."""
        before = self.client.stats().alerts
        self.button.drive_low()
        try:
            assert self.client.wait_for(lambda s: s.alerts > before, timeout), "hold did not alert"
        finally:
            self.button.drive_high()

    def tap(self, length: float = 0.1, gap: float = 0.2) -> None:
        """One tap measured on the manual clock (needs ``clock``)."""
        assert self.clock is not None
        self.button.drive_low()
        self.clock.advance(length)
        self.button.drive_high()
        self.clock.advance(gap)


def wait_applied(device: RunningDevice, applied: int) -> None:
    """Wait until ``applied`` downlinks were handled and their vibrations played out."""
    assert device.client.wait_for(lambda s: s.downlinks_applied >= applied, 5)
    assert device.client.feedback.wait_idle(5)


@dataclass
class DeviceFactory:
    """Builds clients for a test and stops them all at teardown."""

    tmp_path: Path
    broker: DevBroker
    started: list[DeviceClient] = field(default_factory=list)

    def config_path(self, name: str = "dev", **kwargs: Any) -> Path:
        return write_device_config(
            self.tmp_path / name, port=self.broker.port, password=self.broker.accounts[DEVICE_ID], **kwargs
        )

    def start(
        self,
        config_path: Path | None = None,
        *,
        manual_clock: bool = False,
        resend_interval_s: float = 0.5,
        systemd: SystemdNotifier | None = None,
        pulses: PulseTiming = FAST_PULSES,
    ) -> RunningDevice:
        config = load_config(config_path or self.config_path())
        factory = MockFactory()
        clock = ManualClock() if manual_clock else None
        options: dict[str, Any] = {"gesture_clock": clock} if clock else {}
        options["systemd"] = systemd or SystemdNotifier(env={})  # not under systemd
        client = DeviceClient(
            config,
            key=read_hmac_key(config),
            password=read_mqtt_password(config),
            pin_factory=factory,
            pulse_timing=pulses,
            resend_interval_s=resend_interval_s,
            backoff=Backoff(min_s=1, max_s=1),
            **options,
        )
        client.start()
        self.started.append(client)
        return RunningDevice(client, config, read_hmac_key(config), factory, clock)

    def stop(self, device: RunningDevice) -> None:
        self.started.remove(device.client)
        device.client.stop()


@pytest.fixture
def devices(tmp_path: Path, device_broker: DevBroker) -> Iterator[DeviceFactory]:
    factory = DeviceFactory(tmp_path, device_broker)
    try:
        yield factory
    finally:
        for client in list(factory.started):
            client.stop()


class Dispatcher:
    """Publishes signed downlinks as the dispatcher account would."""

    def __init__(self, broker: DevBroker) -> None:
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"disp-{secrets.token_hex(4)}", protocol=mqtt.MQTTv5
        )
        self._client.username_pw_set(DISPATCHER_USER, broker.accounts[DISPATCHER_USER])
        connected = threading.Event()
        self._client.on_connect = lambda *_a: connected.set()
        self._client.connect("127.0.0.1", broker.port)
        self._client.loop_start()
        if not connected.wait(5):
            raise TimeoutError("dispatcher test client could not connect")

    def send_raw(self, device_id: str, payload: bytes) -> None:
        info = self._client.publish(f"vigie/v1/dev/{device_id}/down", payload, qos=1)
        info.wait_for_publish(5)

    def send(self, kind: DownlinkType, ref: str, key: bytes, device_id: str = DEVICE_ID) -> bytes:
        _, payload = encode_downlink(
            kind=kind, device_id=device_id, ref=ref, ts_ms=int(time.time() * 1000), key=key
        )
        self.send_raw(device_id, payload)
        return payload

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def dispatcher(device_broker: DevBroker) -> Iterator[Dispatcher]:
    d = Dispatcher(device_broker)
    try:
        yield d
    finally:
        d.close()
