"""The dispatcher's MQTT bridge, driven by the event loop, against a real Mosquitto.

A message is handed over on the event loop's own thread (paho has no network
thread any more); a QoS 1 message stays the broker's until ``ack`` — the
persistent session gets it again after a restart — and the bridge reconnects
by itself after the broker was killed, then publishes downlinks again.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import paho.mqtt.client as mqtt

from broker_config.runner import DISPATCHER_USER, DevBroker
from dispatcher.alerting.mqtt import Inbound, MqttBridge
from dispatcher.settings import MqttSettings
from protocol.topics import UplinkKind, downlink_topic, uplink_topic
from tests.security.mqtt_stack import eventually
from tests.support.broker import mqtt_recorder, new_password
from tests.support.burst import burst, burst_reaches_the_bridge, publish_all

DEVICE = "btn-bridge-1"
CLIENT_ID = "vigie-bridge-test"


def _settings(broker: DevBroker) -> MqttSettings:
    return MqttSettings(
        port=broker.port,
        username=DISPATCHER_USER,
        password=broker.accounts[DISPATCHER_USER],
        client_id=CLIENT_ID,
        keepalive_s=5,
    )


class Received:
    """What ``on_message`` got, with the thread it ran on."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Inbound, int]] = asyncio.Queue()

    def __call__(self, message: Inbound) -> None:
        self.queue.put_nowait((message, threading.get_ident()))

    async def next(self, within: float = 20.0) -> tuple[Inbound, int]:
        return await asyncio.wait_for(self.queue.get(), within)


async def _connected(bridge: MqttBridge) -> bool:
    return bridge.is_connected


def _device(broker: DevBroker) -> None:
    broker.add_account(DEVICE, new_password())
    broker.reload()


def _publish_alert(broker: DevBroker, payload: bytes) -> None:
    """Publish QoS 1 as the device and wait for the broker's PUBACK."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=mqtt.MQTTv5)
    client.username_pw_set(DEVICE, broker.accounts[DEVICE])
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish(uplink_topic(DEVICE, UplinkKind.ALERT), payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


@asynccontextmanager
async def running_bridge(broker: DevBroker) -> AsyncIterator[tuple[MqttBridge, Received]]:
    """A started bridge (same client id, hence the same persistent session, each time)."""
    received = Received()
    bridge = MqttBridge(_settings(broker), on_message=received)
    await bridge.start()
    try:
        yield bridge, received
    finally:
        await bridge.stop()  # a message not acknowledged by then: as if its commit had not happened


async def test_messages_come_on_the_loop_and_stay_the_brokers_until_acknowledged(broker: DevBroker) -> None:
    _device(broker)
    async with running_bridge(broker) as (_, received):
        # paho names its network thread after the client id (other tests' clients may have theirs).
        assert f"paho-mqtt-client-{CLIENT_ID}" not in [t.name for t in threading.enumerate()]
        await asyncio.to_thread(_publish_alert, broker, b"alert-1")
        message, thread = await received.next()
        assert (message.payload, message.qos, thread) == (b"alert-1", 1, threading.get_ident())

    async with running_bridge(broker) as (bridge, received):
        redelivered, _ = await received.next()
        assert redelivered.payload == b"alert-1"
        bridge.ack(redelivered)  # written at once; the DISCONNECT of stop() follows it

    async with running_bridge(broker) as (bridge, received):
        await asyncio.to_thread(_publish_alert, broker, b"alert-2")
        first, _ = await received.next()
        assert first.payload == b"alert-2"  # alert-1 was acknowledged: not delivered a third time
        bridge.ack(first)


async def test_reconnects_after_the_broker_was_killed_and_publishes_again(broker: DevBroker) -> None:
    _device(broker)
    async with running_bridge(broker) as (bridge, received):
        await asyncio.to_thread(broker.restart, signal.SIGKILL)
        # Mosquitto 2.0 does not queue for the share group while its only member is away after a
        # SIGKILL (the same on the threaded paho bridge): devices re-send until 'received'.
        await eventually(lambda: _connected(bridge))
        await asyncio.to_thread(_publish_alert, broker, b"after-restart")
        message, thread = await received.next()
        assert (message.payload, thread) == (b"after-restart", threading.get_ident())
        bridge.ack(message)
        with mqtt_recorder(broker, DEVICE, downlink_topic(DEVICE), client_id=DEVICE) as device:
            bridge.publish(downlink_topic(DEVICE), b"received")
            got = await asyncio.to_thread(device.wait_for, 1)
        assert [m.payload for m in got] == [b"received"]
    assert not bridge.is_connected


def _publish_alerts(broker: DevBroker, payloads: list[bytes]) -> None:
    """Publish QoS 1 as the device, one connection, and wait for every PUBACK."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=mqtt.MQTTv5)
    client.username_pw_set(DEVICE, broker.accounts[DEVICE])
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        sent = [client.publish(uplink_topic(DEVICE, UplinkKind.ALERT), p, qos=1) for p in payloads]
        for info in sent:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_a_backlog_is_handed_over_in_one_turn_of_the_loop(broker: DevBroker) -> None:
    """Messages that arrived while the loop was busy reach the ingest together (one batch, one
    commit), not one per turn of the loop."""
    _device(broker)
    loop = asyncio.get_running_loop()
    turns = 0

    def tick() -> None:  # runs once per turn of the loop
        nonlocal turns
        turns += 1
        loop.call_soon(tick)

    handed: list[tuple[Inbound, int]] = []  # each message with the turn it was handed over in
    bridge = MqttBridge(_settings(broker), on_message=lambda m: handed.append((m, turns)))
    await bridge.start()
    try:
        payloads = [f"alert-{i}".encode() for i in range(20)]
        published = threading.Event()
        loop.call_soon(tick)
        # The loop is held (as by a long ingest batch) until the broker has taken every alert;
        # it forwards each one to us before its PUBACK to the device.
        loop.call_soon(published.wait, 20)
        await asyncio.to_thread(lambda: (_publish_alerts(broker, payloads), published.set()))
        await eventually(lambda: _all_handed(handed, len(payloads)))
        assert [m.payload for m, _ in handed] == payloads
        assert len({turn for _, turn in handed}) == 1, [turn for _, turn in handed]
        for message, _ in handed:
            bridge.ack(message)
    finally:
        await bridge.stop()


async def _all_handed(handed: list[tuple[Inbound, int]], count: int) -> bool:
    return len(handed) >= count


async def test_a_burst_read_at_once_is_handed_over_whole_with_no_traffic_after(broker: DevBroker) -> None:
    """Hundreds of heartbeats (QoS 0) and alerts (QoS 1) from one read of the socket, then silence:
    none may wait in the bridge's read buffer for a next packet (tests/support/burst.py)."""
    _device(broker)

    def send() -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=mqtt.MQTTv5)
        client.username_pw_set(DEVICE, broker.accounts[DEVICE])
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            publish_all(client, burst(DEVICE))
        finally:
            client.disconnect()
            client.loop_stop()

    await burst_reaches_the_bridge(_settings(broker), DEVICE, send, packets_per_read=10)


async def test_a_web_only_bridge_leaves_the_alerts_to_the_others_even_from_an_old_session(
    broker: DevBroker,
) -> None:
    """VIGIE_ROLE=web: the session this client id held as role all is still in the share group."""
    _device(broker)
    async with running_bridge(broker):
        pass  # role all: its persistent session joins the dispatchers' share group
    taker_received = Received()
    taker = MqttBridge(
        _settings(broker).model_copy(update={"client_id": "vigie-bridge-taker"}), on_message=taker_received
    )
    web_received = Received()
    web = MqttBridge(_settings(broker), on_message=web_received, takes_alerts=False)
    await taker.start()
    await web.start()
    try:
        payloads = [f"alert-{i}".encode() for i in range(6)]
        await asyncio.to_thread(_publish_alerts, broker, payloads)
        got = [(await taker_received.next())[0] for _ in payloads]
        # The broker deals a share group's messages out in turn: the web bridge, had it stayed
        # in the group, would have been dealt some of them.
        assert [m.payload for m in got] == payloads
        for message in got:
            taker.ack(message)
        assert web_received.queue.empty()
        with mqtt_recorder(broker, DEVICE, downlink_topic(DEVICE), client_id=DEVICE) as device:
            web.publish(downlink_topic(DEVICE), b"acknowledged")  # its session still talks to devices
            assert [m.payload for m in await asyncio.to_thread(device.wait_for, 1)] == [b"acknowledged"]
    finally:
        await web.stop()
        await taker.stop()
