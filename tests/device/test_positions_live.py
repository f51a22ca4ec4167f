"""The real device client sends where she is while her alert is open, and the dispatcher follows.

Real Mosquitto, the real dispatcher and sandbox provider, the real device
client (gpiozero mock pins) reading a simulated gpsd over TCP with its real
GpsdClient; the test moves the receiver. Also ``vigie-device --simulate
--gnss`` as a process, moved with its keys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broker_config.runner import DevBroker
from device.client import DeviceClient
from device.gnss_sim import SimulatedFix, SimulatedGpsd, walked
from dispatcher.alerting import escalation as esc
from tests.device.conftest import write_device_config
from tests.device.real_dispatcher import register, run_device
from tests.device.test_process import CONNECTED, STORED, DeviceProcess
from tests.support.broker import new_password
from tests.support.system import System, running_system

DEVICE = "bra-fabre-gnss"
START = SimulatedFix(43.6109, 3.8772, 5.0)  # Cabinet Boutonnet's street


@pytest.fixture
def gpsd() -> Iterator[SimulatedGpsd]:
    receiver = SimulatedGpsd(START, period_s=0.5).start()
    try:
        yield receiver
    finally:
        receiver.stop()


def gnss_config(tmp_path: Path, broker: DevBroker, password: str, gpsd_port: int, **extra: str) -> Path:
    return write_device_config(
        tmp_path / "pi",
        port=broker.port,
        device_id=DEVICE,
        password=password,
        gnss=f"enabled = true\ngpsd_port = {gpsd_port}\nposition_interval_s = 1",
        **extra,
    )


async def press_with_a_fix(system: System, client: DeviceClient) -> str:
    """She presses once the receiver has a fix; the alert's id once the dispatcher confirmed it."""
    assert await asyncio.to_thread(client.wait_for, lambda s: s.connects >= 1, 10)
    assert await asyncio.to_thread(lambda: client.gnss is not None and client.gnss.wait_for_fix(10))
    client.request_alert()
    assert await asyncio.to_thread(client.wait_for, lambda s: s.downlinks_applied >= 1, 15)
    (alert,) = await system.store.list_alerts()
    return alert.id


async def followed(system: System, alert_id: str, fix: SimulatedFix, within: float = 15) -> None:
    """Until the dispatcher's latest position of ``alert_id`` is ``fix``."""

    async def there() -> bool:
        latest = await system.store.latest_alert_position(alert_id)
        return latest is not None and (latest.lat, latest.lon) == (fix.lat, fix.lon)

    await system.until(there, within)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def two_more_checks(client: DeviceClient) -> None:
    """Until the position timer has fired twice more (each one a chance to send)."""
    start = client.positions.checks
    wait_until(lambda: client.positions.checks >= start + 2)


async def test_the_dispatcher_follows_her_until_the_alert_is_closed(
    broker: DevBroker, tmp_path: Path, gpsd: SimulatedGpsd
) -> None:
    password = new_password()
    config = gnss_config(tmp_path, broker, password, gpsd.port)
    async with running_system(broker, tmp_path / "server") as system:
        await register(system, broker, config, password)
        client = await asyncio.to_thread(run_device, config)
        try:
            assert await asyncio.to_thread(client.wait_for, lambda s: s.connects >= 1, 10)
            assert await asyncio.to_thread(lambda: client.gnss is not None and client.gnss.wait_for_fix(10))
            client.request_alert()
            assert await asyncio.to_thread(client.wait_for, lambda s: s.downlinks_applied >= 1, 15)
            (alert,) = await system.store.list_alerts()
            assert alert.fix is not None and alert.fix["lat"] == START.lat  # the press carried the fix
            await followed(system, alert.id, START)

            for north_m in (30, 60):  # she is moved, twice
                moved = SimulatedFix(round(START.lat + north_m / 111_320, 7), START.lon, 8.0)
                gpsd.move_to(moved)
                await followed(system, alert.id, moved)
            latest = await system.store.latest_alert_position(alert.id)
            assert latest is not None and latest.accuracy_m == 8.0

            # The receiver loses the sky: its last fix is not repeated as "now".
            gpsd.move_to(None)
            await asyncio.to_thread(two_more_checks, client)  # a fix read just before may still go
            sent = client.stats().positions
            await asyncio.to_thread(two_more_checks, client)
            assert client.stats().positions == sent

            assert await system.dispatcher.engine.handle(alert.id, esc.Resolved(by="opérateur test"))
            assert await asyncio.to_thread(client.wait_for, lambda s: s.downlinks_applied >= 2, 15)
            gpsd.move_to(SimulatedFix(43.62, 3.88))  # a fresh fix, after the close
            sent = client.stats().positions
            await asyncio.to_thread(two_more_checks, client)
            assert client.stats().positions == sent, "positions sent after the alert was closed"
            after = await system.store.latest_alert_position(alert.id)
            assert after is not None and (after.lat, after.lon) == (moved.lat, moved.lon)
        finally:
            await asyncio.to_thread(client.stop)


async def test_no_fix_means_no_position(broker: DevBroker, tmp_path: Path) -> None:
    receiver = SimulatedGpsd(None, period_s=0.5).start()  # indoors: gpsd answers, without a fix
    password = new_password()
    config = gnss_config(tmp_path, broker, password, receiver.port)
    try:
        async with running_system(broker, tmp_path / "server") as system:
            await register(system, broker, config, password)
            client = await asyncio.to_thread(run_device, config)
            try:
                assert await asyncio.to_thread(client.wait_for, lambda s: s.connects >= 1, 10)
                client.request_alert()
                assert await asyncio.to_thread(client.wait_for, lambda s: s.downlinks_applied >= 1, 15)
                (alert,) = await system.store.list_alerts()
                await asyncio.to_thread(two_more_checks, client)
                assert client.stats().positions == 0
                assert await system.store.latest_alert_position(alert.id) is None
                assert alert.fix is None
            finally:
                await asyncio.to_thread(client.stop)
    finally:
        receiver.stop()


async def test_the_simulator_walks_with_its_keys(broker: DevBroker, tmp_path: Path) -> None:
    password = new_password()
    config = gnss_config(tmp_path, broker, password, 1)  # --gnss replaces the gpsd port
    async with running_system(broker, tmp_path / "server") as system:
        await register(system, broker, config, password)
        device = DeviceProcess(config, "--gnss", f"{START.lat},{START.lon}")
        try:
            await asyncio.to_thread(device.wait_line, CONNECTED)
            device.press("a")
            alert_id = (await asyncio.to_thread(device.wait_line, STORED)).group(1)
            await followed(system, alert_id, START, within=20)
            north = walked(START, 20, 0)
            device.press("n")
            await followed(system, alert_id, north)
            north_east = walked(north, 0, 20)
            device.press("e")
            await followed(system, alert_id, north_east)
        finally:
            assert await asyncio.to_thread(device.terminate) == 0


async def test_after_a_duress_cancel_the_police_still_follow_her_until_the_alert_is_closed(
    broker: DevBroker, tmp_path: Path, gpsd: SimulatedGpsd
) -> None:
    password = new_password()
    config = gnss_config(tmp_path, broker, password, gpsd.port, cancel='pin = "1111"\nduress_pin = "1357"')
    async with running_system(broker, tmp_path / "server") as system:
        await register(system, broker, config, password)
        client = await asyncio.to_thread(run_device, config)
        try:
            alert_id = await press_with_a_fix(system, client)
            await followed(system, alert_id, START)

            client.request_cancel(duress=True)  # forced to cancel: she is taken away
            assert await asyncio.to_thread(client.wait_for, lambda s: s.downlinks_applied >= 2, 15)
            assert (await system.store.get_alert(alert_id)).state == "duress"
            assert client.ledger.latest_active_alert() is None  # over, as far as the device shows
            taken = SimulatedFix(round(START.lat + 200 / 111_320, 7), START.lon, 6.0)
            gpsd.move_to(taken)
            await followed(system, alert_id, taken)  # the police still see where she is

            # Once the operator closes it, the device stops after one refused position.
            assert await system.dispatcher.engine.handle(alert_id, esc.Resolved(by="opérateur test"))
            assert await asyncio.to_thread(
                client.wait_for, lambda _s: not client.positions.following_after_duress, 20
            )
            gpsd.move_to(SimulatedFix(43.62, 3.88))
            sent = client.stats().positions
            await asyncio.to_thread(two_more_checks, client)
            assert client.stats().positions == sent, "positions sent after the alert was closed"
        finally:
            await asyncio.to_thread(client.stop)
