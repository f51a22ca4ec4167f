"""Simulated devices that speak the real protocol: for the demo, tests and benchmark.

Unlike ``device/`` (the on-device client, with gestures and a durable queue),
these publish signed uplinks directly, so a test can also forge, replay and
flood — which a real device would never do.
"""

from __future__ import annotations

import itertools
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from protocol.codec import Rejected, decode_downlink, encode_status, encode_uplink, new_event_id
from protocol.messages import Downlink, Location
from protocol.topics import QOS, UplinkKind, downlink_topic, status_topic, uplink_topic


@dataclass
class SimulatedDevice:
    """One MQTT session publishing as ``device_id`` and recording its downlinks."""

    device_id: str
    key: bytes
    host: str
    port: int
    password: str
    on_downlink: Callable[[str, Downlink], None] | None = None  # called from paho's thread
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    downlinks: list[Downlink] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _client: mqtt.Client | None = None
    # Mutual TLS (the production broker): the certificate is the identity, no password.
    tls: ssl.SSLContext | None = None

    def connect(self, timeout: float = 5.0) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=mqtt.MQTTv5)
        if self.tls is not None:
            client.tls_set_context(self.tls)
        else:
            client.username_pw_set(self.device_id, self.password)
        subscribed = threading.Event()
        client.on_subscribe = lambda *_a: subscribed.set()
        client.on_message = self._on_message
        client.connect(self.host, self.port)
        client.loop_start()
        client.subscribe(downlink_topic(self.device_id), qos=1)
        if not subscribed.wait(timeout):
            raise TimeoutError(f"{self.device_id}: downlink subscription not acknowledged")
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            downlink = decode_downlink(bytes(msg.payload), self.device_id, self.key)
        except Rejected:
            return
        with self._cond:
            self.downlinks.append(downlink)
            self._cond.notify_all()
        if self.on_downlink is not None:
            self.on_downlink(self.device_id, downlink)

    def publish_raw(self, kind: UplinkKind, payload: bytes) -> None:
        assert self._client is not None
        policy = QOS[kind]
        self._client.publish(uplink_topic(self.device_id, kind), payload, qos=policy.qos).wait_for_publish(5)

    def publish_status(self, state: str) -> None:
        """Retained presence, as the device (online) or the broker's Last Will (offline) does."""
        assert self._client is not None
        policy = QOS["status"]
        payload = encode_status(self.device_id, state)
        self._client.publish(
            status_topic(self.device_id), payload, qos=policy.qos, retain=policy.retain
        ).wait_for_publish(5)

    def encode(self, kind: UplinkKind, *, location: Location | None = None, **body: Any) -> tuple[str, bytes]:
        """Sign one new uplink (next sequence number, current time): its event id and wire bytes."""
        event_id = new_event_id()
        _, payload = encode_uplink(
            kind=kind.value,
            device_id=self.device_id,
            event_id=event_id,
            seq=next(self.seq),
            ts_ms=int(time.time() * 1000),
            key=self.key,
            location=location,
            **body,
        )
        return event_id, payload

    def send(self, kind: UplinkKind, *, location: Location | None = None, **body: Any) -> str:
        """Sign and publish one uplink; return its event id."""
        event_id, payload = self.encode(kind, location=location, **body)
        self.publish_raw(kind, payload)
        return event_id

    def alert(self, location: Location | None = None) -> str:
        return self.send(UplinkKind.ALERT, location=location, gesture="hold")

    def wait_downlinks(self, kind: str, ref: str, count: int, timeout: float = 10.0) -> int:
        """Block until ``count`` verified downlinks of ``kind`` about ``ref`` arrived; return how many."""

        def seen() -> int:
            return sum(1 for d in self.downlinks if d.type == kind and d.ref == ref)

        with self._cond:
            if not self._cond.wait_for(lambda: seen() >= count, timeout):
                raise TimeoutError(f"{self.device_id}: {seen()} {kind!r} downlink(s) for {ref}, not {count}")
            return seen()

    def wait_downlink(self, kind: str, ref: str, timeout: float = 10.0) -> Downlink:
        """Block until a verified downlink of ``kind`` about ``ref`` arrived."""

        def found() -> Downlink | None:
            return next((d for d in self.downlinks if d.type == kind and d.ref == ref), None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise TimeoutError(f"{self.device_id}: no {kind!r} downlink for {ref} within {timeout} s")
            result = found()
            assert result is not None
            return result


def new_device_secrets() -> tuple[bytes, str]:
    """A fresh HMAC key and MQTT password for a simulated device."""
    return secrets.token_bytes(32), secrets.token_urlsafe(18)
