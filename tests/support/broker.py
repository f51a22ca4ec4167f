"""Fixtures helpers that start a real Mosquitto with the project's dev config."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from broker_config.runner import DISPATCHER_USER, DevBroker
from dispatcher.secretcheck import generate_secret


@dataclass
class Recorder:
    """A real MQTT subscriber that records what it receives, with waitable events."""

    client: mqtt.Client
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        """Wait until at least ``count`` messages arrived; return them all."""
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(f"got {len(self.messages)} messages, expected {count}")
            return list(self.messages)


def new_password() -> str:
    return generate_secret()


@contextmanager
def mqtt_recorder(
    broker: DevBroker, username: str, topic: str, *, client_id: str | None = None, qos: int = 1
) -> Iterator[Recorder]:
    """Connect as ``username`` (account must exist) and subscribe to ``topic``."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or f"rec-{secrets.token_hex(4)}",
        protocol=mqtt.MQTTv5,
    )
    rec = Recorder(client)
    client.on_message = rec._on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    client.username_pw_set(username, broker.accounts[username])
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.subscribe(topic, qos=qos)
    if not subscribed.wait(5):
        raise TimeoutError("subscription not acknowledged")
    try:
        yield rec
    finally:
        client.loop_stop()
        client.disconnect()


def dispatcher_account(broker: DevBroker) -> str:
    """Make sure the dispatcher account exists; return its username."""
    if DISPATCHER_USER not in broker.accounts:
        broker.add_account(DISPATCHER_USER, new_password())
    return DISPATCHER_USER
