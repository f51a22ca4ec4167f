"""The MQTT link: paho-mqtt 2.x, MQTT v5, QoS 1, a persistent session and a Last Will.

paho runs its own network thread. Its callbacks only translate what happened
into :class:`LinkEvent` values handed to ``on_event`` (which must return
quickly, e.g. put them on a queue); all decisions, disk and signing happen in
the client's own thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device.config import MqttSection
from protocol.codec import encode_status
from protocol.topics import QOS, downlink_topic, status_topic

log = logging.getLogger(__name__)

# A week: downlinks (received / acknowledged) sent while the device was out of
# coverage wait in the broker session until it comes back.
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Connected:
    """The broker accepted us; ``session_present`` tells whether it remembered our session."""

    session_present: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection is gone; paho reconnects by itself with backoff."""

    reason: str


@dataclass(frozen=True, slots=True)
class DownlinkReceived:
    """Raw bytes received on our downlink topic (not yet verified)."""

    payload: bytes


LinkEvent = Connected | Disconnected | DownlinkReceived


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays in seconds: doubled after each failure, capped at ``max_s``."""

    min_s: int = 1
    max_s: int = 30


class MqttLink:
    """One device's connection to the broker."""

    def __init__(
        self,
        *,
        device_id: str,
        settings: MqttSection,
        username: str,
        password: str | None,
        on_event: Callable[[LinkEvent], None],
        backoff: Backoff | None = None,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
    ) -> None:
        self.device_id = device_id
        self._settings = settings
        self._on_event = on_event
        self._session_expiry_s = session_expiry_s
        self._connected = threading.Event()
        self._client = self._build_client(username, password, backoff or Backoff())

    def _build_client(self, username: str, password: str | None, backoff: Backoff) -> mqtt.Client:
        # The client id is the device id: the broker keys the persistent session on it.
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=mqtt.MQTTv5)
        client.username_pw_set(username, password)
        client.will_set(
            status_topic(self.device_id),
            encode_status(self.device_id, "offline"),
            qos=QOS["status"].qos,
            retain=QOS["status"].retain,
        )
        client.reconnect_delay_set(min_delay=backoff.min_s, max_delay=backoff.max_s)
        if self._settings.ca_file is not None:
            client.tls_set(
                ca_certs=str(self._settings.ca_file),
                certfile=None if self._settings.cert_file is None else str(self._settings.cert_file),
                keyfile=None if self._settings.key_file is None else str(self._settings.key_file),
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    @property
    def is_connected(self) -> bool:
        """True between a successful CONNACK and the next disconnection."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; paho keeps retrying until :meth:`stop`."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self._session_expiry_s
        self._client.connect_async(
            self._settings.host,
            self._settings.port,
            keepalive=self._settings.keepalive_s,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        """Say ``offline`` (retained), disconnect cleanly and stop paho's thread."""
        if self.is_connected:
            info = self._publish_status("offline")
            with contextlib.suppress(RuntimeError, ValueError):  # the Last Will covers us
                info.wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> bool:
        """Hand a message to paho; False if it was refused (e.g. not connected)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _publish_status(self, state: str) -> mqtt.MQTTMessageInfo:
        return self._client.publish(
            status_topic(self.device_id),
            encode_status(self.device_id, state),
            qos=QOS["status"].qos,
            retain=QOS["status"].retain,
        )

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning("le broker refuse la connexion : %s", reason_code)
            return
        # Subscribing again is cheap and covers an expired or lost session.
        client.subscribe(downlink_topic(self.device_id), qos=QOS["down"].qos)
        self._publish_status("online")
        self._connected.set()
        log.info("connectée à %s:%d", self._settings.host, self._settings.port)
        self._on_event(Connected(session_present=bool(flags.session_present)))

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected:
            log.warning("déconnectée du broker : %s", reason_code)
            self._on_event(Disconnected(str(reason_code)))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._on_event(DownlinkReceived(bytes(message.payload)))
