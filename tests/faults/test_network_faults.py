"""Broker restarts and a device offline for a minute: no alert lost, order kept."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from bench.cluster import Cluster, device_ids, read_db
from device.client import DeviceClient
from device.config import load_config, read_hmac_key, read_mqtt_password
from device.link import Backoff
from tests.device.conftest import FAST_PULSES, write_device_config
from tests.faults.conftest import MakeCluster, provider_log
from tests.faults.harness import (
    ResendingFleet,
    TcpProxy,
    all_first_tier_sent,
    assert_exactly_once,
    persisted,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
DEVICE = "bracelet-faults-1"


def test_broker_restarts_sigterm_then_sigkill_lose_no_alert(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(devices=25)
    assert cluster.broker is not None
    fleet = ResendingFleet(cluster)
    devices = device_ids("dev", 25)

    def restarts() -> None:
        time.sleep(1.5)
        cluster.broker.restart(signal.SIGTERM)  # type: ignore[union-attr]
        time.sleep(2.0)
        cluster.broker.restart(signal.SIGKILL)  # type: ignore[union-attr]

    chaos = threading.Thread(target=restarts)
    chaos.start()
    try:
        start, ids = time.monotonic(), []
        for i in range(100):
            time.sleep(max(0.0, start + i * 0.05 - time.monotonic()))
            ids.append(fleet.press(devices[i % len(devices)]))
        chaos.join()
        alerts = set(ids)
        assert fleet.wait_received(alerts, 90), f"{len(alerts - fleet.received)} alerts never got 'received'"
    finally:
        chaos.join()
        fleet.close()
    assert persisted(cluster, alerts) == alerts
    assert wait_until(all_first_tier_sent(cluster, provider_log(cluster), alerts), 60)
    assert_exactly_once(cluster, provider_log(cluster), alerts)


class RealDevice:
    """The real device client (gpiozero MockFactory pins), registered in the cluster's broker."""

    def __init__(self, tmp_path: Path, cluster: Cluster, port: int, device_id: str = DEVICE) -> None:
        assert cluster.broker is not None
        password = "device-password-" + device_id
        cluster.broker.add_account(device_id, password)
        cluster.broker.reload()
        workdir = tmp_path / ("device" if device_id == DEVICE else device_id)
        path = write_device_config(workdir, port=port, device_id=device_id, password=password)
        # Keep the key the dispatcher registered (writing the config drew a new one).
        (path.parent / "hmac.key").write_text(cluster.keys[device_id].hex() + "\n")
        config = load_config(path)
        self.client = DeviceClient(
            config,
            key=read_hmac_key(config),
            password=read_mqtt_password(config),
            pin_factory=MockFactory(),
            pulse_timing=FAST_PULSES,
            resend_interval_s=1.0,
            backoff=Backoff(min_s=1, max_s=1),
        )
        self.client.start()

    def wait_delivered(self, timeout: float) -> bool:
        """Until the outbox holds nothing the dispatcher has not confirmed ('received')."""
        return wait_until(lambda: not self.client.pending(), timeout, 0.2)

    def stop(self) -> None:
        self.client.stop()


def device_key(tmp_path: Path, device_id: str = DEVICE) -> bytes:
    """The key the device config will carry, to register the device before the dispatcher starts."""
    workdir = tmp_path / ("device" if device_id == DEVICE else device_id)
    path = write_device_config(workdir, port=1, device_id=device_id)
    return read_hmac_key(load_config(path))


@pytest.fixture
def real_device_cluster(tmp_path: Path, make_cluster: MakeCluster) -> Iterator[tuple[Cluster, Path]]:
    key = device_key(tmp_path)
    yield make_cluster(devices=1, known_keys={DEVICE: key}), tmp_path


def stored_alerts_of(cluster: Cluster) -> list[tuple[str, int]]:
    """(id, seq) of the device's stored alerts, in the order the dispatcher received them."""
    rows = read_db(cluster.db, "SELECT id, seq FROM alerts WHERE device_id=? ORDER BY rowid", (DEVICE,))
    return [(str(a), int(s)) for a, s in rows]


def test_real_device_client_rides_through_a_broker_crash(real_device_cluster: tuple[Cluster, Path]) -> None:
    cluster, tmp_path = real_device_cluster
    assert cluster.broker is not None
    device = RealDevice(tmp_path, cluster, cluster.broker.port)
    try:
        assert device.client.wait_for(lambda s: s.connects >= 1, 10)
        device.client.request_alert("hold")
        cluster.broker.stop(signal.SIGKILL)
        device.client.request_alert("multi_press")  # pressed while the broker is down
        cluster.broker.start()
        assert device.wait_delivered(60), f"still pending: {device.client.pending()}"
    finally:
        device.stop()
    alerts = stored_alerts_of(cluster)
    assert len(alerts) == 2
    ids = {a for a, _ in alerts}
    assert wait_until(all_first_tier_sent(cluster, provider_log(cluster), ids), 30)
    assert_exactly_once(cluster, provider_log(cluster), ids)


def test_device_offline_for_a_minute_delivers_every_press_in_order_on_reconnect(
    real_device_cluster: tuple[Cluster, Path],
) -> None:
    cluster, tmp_path = real_device_cluster
    assert cluster.broker is not None
    proxy = TcpProxy(cluster.broker.port)  # the device's only way to the broker
    device = RealDevice(tmp_path, cluster, proxy.port)
    try:
        assert device.client.wait_for(lambda s: s.connects >= 1, 10)
        proxy.cut()
        for gesture in ("hold", "multi_press", "hold"):
            device.client.request_alert(gesture)
            time.sleep(0.05)  # three distinct presses, a few ms apart
        assert wait_until(lambda: len(device.client.pending()) == 3, 10)
        pressed = [item.event_id for item in device.client.pending()]
        time.sleep(60)  # the outage itself: a minute without network
        assert stored_alerts_of(cluster) == []  # nothing could have left
        proxy.restore()
        assert device.wait_delivered(60), f"still pending: {device.client.pending()}"
    finally:
        device.stop()
        proxy.close()
    stored = stored_alerts_of(cluster)
    assert [a for a, _ in stored] == pressed  # received in the order they were pressed
    assert [s for _, s in stored] == sorted(s for _, s in stored)
    assert wait_until(all_first_tier_sent(cluster, provider_log(cluster), set(pressed)), 30)
    assert_exactly_once(cluster, provider_log(cluster), set(pressed))
