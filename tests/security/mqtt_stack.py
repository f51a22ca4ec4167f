"""One running Vigie per broker profile (dev: passwords; prod: mutual TLS) for the MQTT attacks.

The broker is the real Mosquitto started from ``broker_config/dev`` or
``broker_config/prod`` with the shipped ACL; in prod every device is made by
the provisioning code (certificate + HMAC key + store row). The dispatcher is
the real one (``tests.support.system.running_system``). Attack clients log in
with a device's own credentials — what a stolen or hostile device has.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.promstats import labelled
from broker_config.pki import CaPaths
from broker_config.runner import DevBroker
from broker_config.tls_runner import TlsBroker, TlsFiles
from dispatcher.domain import Device, DeviceKind
from dispatcher.fleet.dynsec_commands import restricted_client_id
from protocol.topics import UplinkKind
from sandbox.fleet import SimulatedDevice, new_device_secrets
from tests.broker_config.helpers import (
    Client,
    Pki,
    dispatcher_mqtt_settings,
    end_sessions,
    host_of,
    make_pki,
    tls_context,
)
from tests.support import external_broker
from tests.support.broker import dispatcher_account, new_password
from tests.support.external_broker import ExternalBroker
from tests.support.system import METRICS_HEADERS, System, running_system

PROFILES = ["dev", "prod"]
# Short, for the tests (default 300 s): a quarantine ends while the test watches (fixture short_quarantine).
QUARANTINE_S = 10.0
MONITOR = "vigie-monitor"
# A desk button at the Boutonnet practice (police zone) in the demo directory.
PLACE_IDS = {"practitioner_id": "dr-claire-fabre", "site_id": "cabinet-boutonnet"}


@dataclass
class Stack:
    """A running system on one broker profile, and ways to log in to it."""

    profile: str
    broker: DevBroker | TlsBroker | ExternalBroker
    system_factory: Callable[[], AbstractAsyncContextManager[System]]
    pki: Pki | None = None
    monitor_password: str = ""
    _running: AsyncExitStack = field(default_factory=AsyncExitStack)
    _system: System | None = None

    @property
    def system(self) -> System:
        assert self._system is not None, "the dispatcher is not running"
        return self._system

    async def start_dispatcher(self) -> System:
        """Start the dispatcher (store, broker session, HTTP) on this stack's store and broker."""
        self._system = await self._running.enter_async_context(self.system_factory())
        return self._system

    async def stop_dispatcher(self) -> None:
        """Stop it as systemd would (SIGTERM: the service's own shutdown path); devices stay provisioned."""
        await self._running.aclose()
        self._running = AsyncExitStack()
        self._system = None

    @property
    def port(self) -> int:
        return self.broker.port if isinstance(self.broker, DevBroker) else self.broker.tls_port

    @property
    def host(self) -> str:
        return "127.0.0.1" if isinstance(self.broker, DevBroker) else host_of(self.broker)

    async def add_device(self, device_id: str, *, connect: bool = True) -> SimulatedDevice:
        """Provision a device (dev: store + password account; prod: the provisioning code).

        Connected unless ``connect`` is False (then log in with :meth:`login`: in prod the
        client id is the certificate's CN, so a second session would replace the first).
        """
        if self.pki is None:
            key, password = new_device_secrets()
            device = Device(id=device_id, kind=DeviceKind.BRACELET, label=device_id, **PLACE_IDS)
            await self.system.store.add_device(device, key)
            assert isinstance(self.broker, DevBroker)
            self.broker.add_account(device_id, password)
            self.broker.reload()
            sim = SimulatedDevice(device_id, key, "127.0.0.1", self.port, password)
        else:
            pki = self.pki
            # Registered with our broker like `vigie provision device --broker-admin-port`; an
            # external broker enforces it its own way (docs/broker-suite.md).
            admin = self.broker.admin() if isinstance(self.broker, TlsBroker) else None
            await asyncio.to_thread(pki.provision, device_id, broker=admin, **PLACE_IDS)
            key = bytes.fromhex((pki.bundle(device_id) / "hmac.key").read_text().strip())
            tls = tls_context(pki.device(device_id))
            sim = SimulatedDevice(device_id, key, self.host, self.port, "", tls=tls)
        await self.system.dispatcher.cache.refresh()
        if connect:
            await asyncio.to_thread(sim.connect)
            self.system.devices[device_id] = sim
        return sim

    def _credentials(self, client: mqtt.Client, username: str, session_expiry: int | None) -> None:
        if self.pki is not None and username != MONITOR:
            ident = self.pki.device(username)
            client.tls_set_context(tls_context(ident))
            if isinstance(self.broker, ExternalBroker) and session_expiry and ident.cert and ident.key:
                self.broker.remember_session(ident.cert, ident.key, username)  # client id = CN
        elif username == MONITOR:
            client.username_pw_set(MONITOR, self.monitor_password)
        else:
            assert isinstance(self.broker, DevBroker)
            client.username_pw_set(username, self.broker.accounts[username])

    def flooder_credentials(self, username: str) -> tuple[list[str], dict[str, str]]:
        """A device's credentials for tests/security/flooder.py: its arguments and environment."""
        if self.pki is not None:
            ident = self.pki.device(username)
            return ["--ca", str(ident.ca), "--cert", str(ident.cert), "--key", str(ident.key)], {}
        assert isinstance(self.broker, DevBroker)
        return ["--username", username], {"FLOOD_PASSWORD": self.broker.accounts[username]}

    def login(
        self,
        username: str,
        *,
        client_id: str | None = None,
        clean_start: bool = True,
        session_expiry: int | None = None,
    ) -> Client:
        """Connect with a device's (or the loopback monitor's) credentials; wait for CONNACK.

        The client id defaults to the account's own (the device id, the monitor's fixed id):
        the broker refuses any other on a password listener.
        """
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or restricted_client_id(username) or username,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        self._credentials(client, username, session_expiry)
        raw = Client(client)
        connected = threading.Event()
        outcome: list[str] = []

        def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            outcome.append("ok" if not rc.is_failure else f"refused: {rc}")
            connected.set()

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            with raw.cond:
                raw.messages.append(msg)
                raw.cond.notify_all()

        def on_disconnect(*_a: Any) -> None:
            raw.disconnected.set()
            connected.set()

        client.on_connect, client.on_message, client.on_disconnect = on_connect, on_message, on_disconnect
        props = None
        if session_expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry
        if self.pki is not None and username == MONITOR:
            assert isinstance(self.broker, TlsBroker), "the monitor uses our own broker's loopback listener"
            host, port = "127.0.0.1", self.broker.local_port
        else:
            host, port = self.host, self.port
        client.connect(host, port, clean_start=clean_start, properties=props)
        client.loop_start()
        if not connected.wait(15) or outcome[:1] != ["ok"]:
            client.loop_stop()
            raise ConnectionRefusedError(outcome[0] if outcome else "no CONNACK")
        return raw

    async def metrics(self, name: str, label: str) -> dict[str, float]:
        async with httpx.AsyncClient() as http:
            text = (await http.get(self.system.public_url + "/metrics", headers=METRICS_HEADERS)).text
        return labelled(text, name, label)

    async def rejected(self) -> dict[str, float]:
        """Rejections counted so far, by reason (reasons never seen left out)."""
        return {k: v for k, v in (await self.metrics("vigie_rejected_total", "reason")).items() if v}

    async def healthz(self) -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.get(self.system.public_url + "/healthz")


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    """Until ``check()`` holds (state such as counters, which no dispatcher event announces)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within} s")
        await asyncio.sleep(0.05)


def press_until_received(device: SimulatedDevice, within: float = 20.0, resend_s: float = 1.0) -> str:
    """Store-and-forward like device/: the same bytes again until the 'received' downlink."""
    alert_id, payload = device.encode(UplinkKind.ALERT, gesture="hold")
    deadline = time.monotonic() + within
    while True:
        device.publish_raw(UplinkKind.ALERT, payload)
        try:
            device.wait_downlink("received", alert_id, timeout=min(resend_s, deadline - time.monotonic()))
            return alert_id
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise


@asynccontextmanager
async def dev_stack(workdir: Path) -> AsyncIterator[Stack]:
    broker = DevBroker(workdir / "broker")
    dispatcher_account(broker)
    broker.add_account(MONITOR, new_password())
    broker.start()
    stack = Stack(
        "dev", broker, lambda: running_system(broker, workdir), monitor_password=broker.accounts[MONITOR]
    )
    try:
        await stack.start_dispatcher()
        yield stack
    finally:
        await stack.stop_dispatcher()
        broker.stop()


@asynccontextmanager
async def prod_stack(workdir: Path) -> AsyncIterator[Stack]:
    ext = external_broker.current()
    pki = await asyncio.to_thread(make_pki, workdir / "pki", ext)
    ca = CaPaths(pki.ca_dir)
    monitor_password = new_password()
    broker: TlsBroker | ExternalBroker
    if ext is None:
        files = TlsFiles(ca.cert, pki.server_dir / "server.pem", pki.server_dir / "server.key", ca.crl)
        broker = TlsBroker(workdir / "broker", files, accounts={MONITOR: monitor_password})
        broker.start()
    else:
        broker = ext
    ident = pki.dispatcher
    mqtt_settings = dispatcher_mqtt_settings(broker, ident)
    factory = lambda: running_system(  # noqa: E731
        broker,  # type: ignore[arg-type]  # only add_device needs a DevBroker; Stack provisions instead
        workdir,
        database_url=f"sqlite:///{pki.db}",
        mqtt=mqtt_settings,
    )
    stack = Stack("prod", broker, factory, pki=pki, monitor_password=monitor_password)
    try:
        await stack.start_dispatcher()
        yield stack
    finally:
        await stack.stop_dispatcher()
        if isinstance(broker, ExternalBroker):
            assert ident.cert is not None and ident.key is not None
            broker.remember_session(ident.cert, ident.key, mqtt_settings.client_id)
            await asyncio.to_thread(end_sessions, broker, ident.ca)
        else:
            broker.stop()


def stack_for(profile: str, workdir: Path) -> Any:
    """The async context manager of ``profile`` ('dev' or 'prod')."""
    return dev_stack(workdir) if profile == "dev" else prod_stack(workdir)
