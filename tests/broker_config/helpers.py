"""Real MQTT-over-TLS clients and a provisioned PKI for the transport tests."""

from __future__ import annotations

import asyncio
import secrets
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker_config import provision
from broker_config.dynsec import DynsecAdmin
from broker_config.pki import Validity
from broker_config.provision import DeviceSpec
from broker_config.tls_runner import TlsBroker
from dispatcher.domain import Address, DeviceKind, Practitioner, Site, SiteKind
from dispatcher.settings import MqttSettings
from dispatcher.store.sqlite import SqliteStore
from tests.support import external_broker
from tests.support.external_broker import ExternalBroker

PRACTITIONER = Practitioner(
    id="dr-martin",
    first_name="Claire",
    last_name="Martin",
    rpps="10101010101",
    phones=["+33639980001"],
)
SITE = Site(
    id="mmg-ecusson",
    kind=SiteKind.MMG,
    name="MMG de l'Écusson",
    address=Address(label="12 rue de la Loge, 34000 Montpellier"),
)

# The broker under test: one the tests started, or the operator's (VIGIE_TEST_BROKER).
AnyBroker = TlsBroker | ExternalBroker


@dataclass(frozen=True)
class Identity:
    """A client's TLS material."""

    ca: Path
    cert: Path | None
    key: Path | None


@dataclass
class Pki:
    """A CA directory, a database and where bundles go, all under tmp_path.

    On an external broker (``VIGIE_TEST_BROKER``) the CA is a copy of the
    operator's, ``cert_days`` keeps the test certificates short-lived and
    ``server_ca`` (if given) verifies the broker's own certificate.
    """

    root: Path
    cert_days: int | None = None
    server_ca: Path | None = None

    def _identity(self, ca: Path, cert: Path, key: Path) -> Identity:
        return Identity(self.server_ca or ca, cert, key)

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def db(self) -> Path:
        return self.root / "vigie.db"

    @property
    def server_dir(self) -> Path:
        return self.root / "server"

    @property
    def dispatcher(self) -> Identity:
        d = self.root / "dispatcher"
        return self._identity(d / "ca.pem", d / "dispatcher.pem", d / "dispatcher.key")

    def bundle(self, device_id: str) -> Path:
        return self.root / "bundles" / device_id

    def device(self, device_id: str) -> Identity:
        b = self.bundle(device_id)
        return self._identity(b / "ca.pem", b / "device.pem", b / "device.key")

    def provision(self, device_id: str, *, broker: DynsecAdmin | None = None, **spec: Any) -> Path:
        """Provision ``device_id`` by the real code path (store; broker registration with ``broker``)."""
        fields: dict[str, Any] = {"kind": DeviceKind.POCKET, "broker_host": "localhost"}
        if self.cert_days is not None:
            fields["validity"] = Validity.days(self.cert_days)
        fields.update({"practitioner_id": PRACTITIONER.id} | spec)
        return run_with_store(
            self.db,
            lambda store: provision.provision_device(
                store, self.ca_dir, DeviceSpec(id=device_id, **fields), self.bundle(device_id), broker=broker
            ),
        )


def run_with_store(db: Path, work: Any) -> Any:
    """Open the SQLite store, run ``await work(store)``, close it."""

    async def run() -> Any:
        store = await SqliteStore.open(db)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def make_pki(root: Path, external: ExternalBroker | None = None) -> Pki:
    """CA, broker certificate for localhost, dispatcher certificate, seeded directory.

    With ``external``, the CA is a copy of the one the external broker trusts
    and every certificate is issued for :data:`external_broker.TEST_CERT_DAYS`.
    """
    if external is None:
        pki = Pki(root)
        provision.init_ca(pki.ca_dir)
        hosts = ["localhost", "127.0.0.1"]
    else:
        pki = Pki(root, external_broker.TEST_CERT_DAYS, external.server_ca)
        external_broker.copy_ca(external, pki.ca_dir)
        hosts = [external.host]
    (root / "bundles").mkdir(parents=True)
    days = {"validity_days": pki.cert_days} if pki.cert_days is not None else {}
    provision.issue_server_cert(pki.ca_dir, pki.server_dir, hosts=hosts, **days)
    provision.issue_dispatcher_cert(pki.ca_dir, root / "dispatcher", **days)

    async def seed(store: SqliteStore) -> None:
        await store.upsert_practitioner(PRACTITIONER)
        await store.upsert_site(SITE)

    run_with_store(pki.db, seed)
    return pki


@dataclass
class Client:
    """A connected paho client that records messages and waits on events."""

    client: mqtt.Client
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    disconnected: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        """Wait until ``predicate(messages)`` holds; return the messages."""
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.messages), timeout):
                topics = [m.topic for m in self.messages]
                raise TimeoutError(f"condition not met; received {topics}")
            return list(self.messages)

    def topics(self) -> list[str]:
        with self.cond:
            return [m.topic for m in self.messages]

    def subscribe(self, topic: str, qos: int = 1) -> list[Any]:
        """Subscribe and return the broker's reason codes."""
        done = threading.Event()
        codes: list[Any] = []

        def on_subscribe(_c: Any, _u: Any, _mid: Any, reason_codes: list[Any], _p: Any) -> None:
            codes.extend(reason_codes)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe(topic, qos=qos)
        if not done.wait(5):
            raise TimeoutError("subscription not acknowledged")
        return codes

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish and wait for the broker's PUBACK (QoS 1)."""
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Refused(Exception):
    """The broker did not accept the connection."""


def tls_context(ident: Identity, *, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context trusting our CA, presenting ``ident``'s certificate if any."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ident.ca))
    if ident.cert is not None and ident.key is not None:
        ctx.load_cert_chain(str(ident.cert), str(ident.key))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


@contextmanager
def connected(
    broker: AnyBroker,
    ident: Identity | None,
    *,
    client_id: str | None = None,
    clean_start: bool = True,
    session_expiry: int | None = None,
    max_version: ssl.TLSVersion | None = None,
    port: int | None = None,
    mqtt311: bool = False,
) -> Iterator[Client]:
    """Connect (TLS unless ``ident`` is None) and yield the client; raise Refused if refused."""
    client = connect(
        broker,
        ident,
        client_id=client_id,
        clean_start=clean_start,
        session_expiry=session_expiry,
        max_version=max_version,
        port=port,
        mqtt311=mqtt311,
    )
    try:
        yield client
    finally:
        client.close()


def connect(
    broker: AnyBroker,
    ident: Identity | None,
    *,
    client_id: str | None = None,
    clean_start: bool = True,
    session_expiry: int | None = None,
    max_version: ssl.TLSVersion | None = None,
    port: int | None = None,
    timeout: float = 5.0,
    mqtt311: bool = False,
) -> Client:
    """Connect and wait for the CONNACK; raise :class:`Refused` on any failure.

    ``mqtt311``: as the dispatcher does by default (``VIGIE_MQTT__PROTOCOL``), MQTT 3.1.1, where
    ``clean_start=False`` is a persistent session whose expiry is the broker's (``session_expiry``
    is not sent)."""
    client_id = client_id or f"t-{secrets.token_hex(4)}"
    paho = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311 if mqtt311 else mqtt.MQTTv5,
        clean_session=(clean_start if mqtt311 else None),
        reconnect_on_failure=False,
    )
    if ident is not None:
        paho.tls_set_context(tls_context(ident, max_version=max_version))
    persistent = (not clean_start) if mqtt311 else bool(session_expiry)
    if isinstance(broker, ExternalBroker) and persistent and ident and ident.cert and ident.key:
        broker.remember_session(ident.cert, ident.key, client_id)
    client = Client(paho)
    outcome: list[str] = []
    done = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        outcome.append("ok" if not rc.is_failure else f"refused: {rc}")
        done.set()

    def on_disconnect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        outcome.append(f"disconnected: {rc}")
        client.disconnected.set()
        done.set()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with client.cond:
            client.messages.append(msg)
            client.cond.notify_all()

    paho.on_connect = on_connect
    paho.on_disconnect = on_disconnect

    def on_connect_fail(_c: Any, _u: Any) -> None:
        outcome.append("connect failed")
        done.set()

    paho.on_connect_fail = on_connect_fail
    paho.on_message = on_message
    props = None
    if session_expiry is not None and not mqtt311:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
    try:
        if mqtt311:
            paho.connect(host_of(broker), port or broker.tls_port)
        else:
            paho.connect(host_of(broker), port or broker.tls_port, clean_start=clean_start, properties=props)
    except (OSError, ssl.SSLError) as exc:  # TLS 1.2 fails inside the handshake, here
        raise Refused(repr(exc)) from None
    paho.loop_start()
    if not done.wait(timeout) or outcome[0] != "ok":
        paho.loop_stop()
        raise Refused(outcome[0] if outcome else "no CONNACK")
    return client


def dispatcher_mqtt_settings(broker: AnyBroker, ident: Identity) -> MqttSettings:
    """The dispatcher's MQTT settings for ``broker`` (mutual TLS with ``ident``), as in production."""
    return MqttSettings(
        host=host_of(broker),
        port=broker.tls_port,
        username="vigie-dispatcher",
        client_id="vigie-dispatcher",
        ca_file=ident.ca,
        cert_file=ident.cert,
        key_file=ident.key,
    )


def host_of(broker: AnyBroker) -> str:
    """Where the broker listens: the external broker's host, else loopback."""
    return broker.host if isinstance(broker, ExternalBroker) else "127.0.0.1"


def end_sessions(broker: ExternalBroker, ca: Path) -> None:
    """End the persistent sessions the tests opened on an external broker.

    A clean start with no session expiry replaces each session, and the
    disconnect then discards it: an offline test session left in a share group
    would otherwise take its share of the next test's messages (and hold them
    on the operator's broker until it expires).
    """
    for cert, key, client_id in sorted(broker.sessions):
        try:
            connect(broker, Identity(ca, cert, key), client_id=client_id).close()
        except Refused:  # a revoked or expired test certificate: its session expires on its own
            continue
    broker.sessions.clear()
