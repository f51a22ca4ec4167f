"""A burst of small device messages that reaches the dispatcher's bridge in one read of its socket.

Shared by the plain (tests/dispatcher) and TLS (tests/broker_config) bridge
tests: the event loop is held, as by a long ingest batch, until the device's
last QoS 1 message is acknowledged by the broker, which forwards each message
to the bridge before that; the socket then holds hundreds of packets, more
than ``MAX_PACKETS_PER_READ``, and no traffic follows. Every message must
still reach ``on_message``: those left in the bridge's read buffer must not
wait for a next packet.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt

from dispatcher.alerting.mqtt import MAX_PACKETS_PER_READ, Inbound, MqttBridge
from dispatcher.settings import MqttSettings
from protocol.topics import UplinkKind, uplink_topic

HEARTBEATS = 240  # QoS 0
ALERTS = 60  # QoS 1 (under the broker's 100 in flight, so that none is held back for our PUBACKs)


def burst(device: str) -> list[tuple[str, bytes, int]]:
    """Heartbeats and alerts interleaved, the last one an alert: (topic, payload, qos)."""
    out: list[tuple[str, bytes, int]] = []
    for n in range(HEARTBEATS + ALERTS):
        qos = 1 if n % 5 == 4 else 0
        kind = UplinkKind.ALERT if qos else UplinkKind.HEARTBEAT
        out.append((uplink_topic(device, kind), f"m-{n:04d}".encode(), qos))
    return out


def publish_all(client: mqtt.Client, messages: list[tuple[str, bytes, int]]) -> None:
    """Publish from a connected client with its network loop running; wait for every QoS 1 PUBACK."""
    sent = [client.publish(topic, payload, qos=qos) for topic, payload, qos in messages]
    for info in sent:
        info.wait_for_publish(20)
        assert info.is_published()


async def burst_reaches_the_bridge(
    settings: MqttSettings, device: str, send: Callable[[], None], *, packets_per_read: int
) -> None:
    """Start a bridge with ``settings``, hold the loop while ``send()`` publishes :func:`burst`
    (``device``'s), and check that every message is handed over, with ``packets_per_read``
    messages or more per read of the socket on average (the SUBACK may come in the window)."""
    messages = burst(device)
    handed: list[Inbound] = []
    all_in = asyncio.Event()

    def on_message(message: Inbound) -> None:
        handed.append(message)
        bridge.ack(message)
        if len(handed) == len(messages):
            all_in.set()

    # No keepalive traffic during the test (a PINGRESP is a packet that would flush a stuck buffer).
    bridge = MqttBridge(settings.model_copy(update={"keepalive_s": 60}), on_message=on_message)
    await bridge.start()
    try:
        loop = asyncio.get_running_loop()
        reads = bridge.socket_reads
        published = threading.Event()
        loop.call_soon(published.wait, 30)
        await asyncio.to_thread(lambda: (send(), published.set()))
        await asyncio.wait_for(all_in.wait(), 15)
        got = sorted((m.payload, m.qos) for m in handed)
        assert got == sorted((payload, qos) for _, payload, qos in messages)
        assert len(messages) > 4 * MAX_PACKETS_PER_READ
        reads = bridge.socket_reads - reads
        assert reads <= len(messages) // packets_per_read + 1, reads
    finally:
        await bridge.stop()
