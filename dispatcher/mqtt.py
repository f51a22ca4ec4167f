"""The dispatcher's MQTT edge: paho-mqtt's network thread bridged to asyncio.

Messages are received with ``manual_ack``: the broker keeps a QoS 1 message
(and redelivers it to the session) until we call :meth:`MqttBridge.ack`,
which the ingest does only after the alert is committed to the store.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from dispatcher.settings import MqttSettings
from protocol.topics import DEFAULT_SHARE_GROUP, shared_status_filter, shared_uplink_filter

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker queues for us through a week-long outage


class MqttUnavailable(Exception):
    """The broker could not be reached or refused us."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message received from the broker, not yet acknowledged."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: float  # time.monotonic() when paho handed it over


class MqttBridge:
    """One persistent MQTT v5 session, shared-subscribed to every device uplink.

    ``on_message`` is called on paho's network thread for every message: it must be
    thread-safe and quick (the ingest's :meth:`~dispatcher.ingest.Ingest.submit` is).
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        on_message: Callable[[Inbound], None],
        share_group: str = DEFAULT_SHARE_GROUP,
    ) -> None:
        self._settings = settings
        self._share_group = settings.share_group or share_group
        self._on_message = on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._stopping = False
        self._client = self._build_client()

    def _build_client(self) -> mqtt.Client:
        s = self._settings
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if s.password is not None:
            client.username_pw_set(s.username, s.password.get_secret_value())
        if s.ca_file is not None:
            client.tls_set(
                ca_certs=str(s.ca_file),
                certfile=str(s.cert_file) if s.cert_file else None,
                keyfile=str(s.key_file) if s.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        return client

    async def start(self, *, connect_timeout_s: float = 10.0) -> None:
        """Connect (persistent session) and wait for the subscriptions."""
        self._loop = asyncio.get_running_loop()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        s = self._settings
        try:
            self._client.connect_async(
                s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=props
            )
        except (OSError, ValueError) as exc:
            raise MqttUnavailable(f"cannot reach broker {s.host}:{s.port}: {exc}") from exc
        self._client.loop_start()
        try:
            await asyncio.wait_for(self._connected.wait(), connect_timeout_s)
        except TimeoutError:
            self._client.loop_stop()
            raise MqttUnavailable(f"no CONNACK from {s.host}:{s.port} within {connect_timeout_s} s") from None

    async def stop(self) -> None:
        self._stopping = True  # the disconnection that follows is ours, not a fault
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected()

    def ack(self, message: Inbound) -> None:
        """Release a QoS 1 message: call only once its effects are durable."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Queue a publish; paho sends it (and re-sends QoS 1 after a reconnect)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish to %s queued while disconnected (rc=%s)", topic, info.rc)

    # paho's network thread calls these: hand everything to the event loop.

    def _handle_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the dispatcher: %s", reason)
            return
        group = self._share_group
        if group != DEFAULT_SHARE_GROUP:
            # A persistent session from before the secret group may still hold the public
            # one, which any device login can join; leave it (a no-op when absent).
            client.unsubscribe([shared_uplink_filter(), shared_status_filter()])
        client.subscribe([(shared_uplink_filter(group), 1), (shared_status_filter(group), 1)])
        log.info("connected to broker, subscribed to the dispatchers' share group")
        self._call(self._connected.set)

    def _handle_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if self._stopping:
            log.info("disconnected from broker (stopping)")
        else:
            log.warning("disconnected from broker (%s); paho reconnects with backoff", reason)
        self._call(self._connected.clear)

    def _handle_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        # On paho's thread: ``on_message`` (the ingest's admission) refuses a flood here,
        # without waking the event loop for each message.
        self._on_message(Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.monotonic()))

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)
