"""A whole Vigie on loopback for tests: broker, sandbox provider, dispatcher, devices."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from broker_config.runner import DISPATCHER_USER, DevBroker
from dispatcher.alerting.notifier import SMS_WEBHOOK_PATH
from dispatcher.directory.communes import load_communes
from dispatcher.directory.loader import load_directory
from dispatcher.domain import Device, DeviceKind
from dispatcher.service import WS_COMPRESSION, Dispatcher, proxy_options, running_dispatcher
from dispatcher.settings import (
    ApiSettings,
    DispatcherSettings,
    FallbackContactSettings,
    MqttSettings,
    TwilioSettings,
)
from dispatcher.store import open_store
from dispatcher.store.base import FlagChange, Store
from dispatcher.web.app import create_app
from sandbox.fleet import SimulatedDevice, new_device_secrets
from sandbox.twilio_server import TwilioSandbox

HERAULT = Path(__file__).resolve().parents[2] / "dispatcher" / "data" / "herault.yaml"
COMMUNES = Path(__file__).resolve().parents[2] / "sandbox" / "data" / "communes.geojson"
COMMUNE_DEPARTEMENTS = ("34", "30")
FROM_NUMBER = "+33465710199"
FALLBACK_NUMBER = "+33465710190"  # the deployment-wide fallback contact
# /metrics is not public (issue 13, finding 7): Prometheus, the benchmark and the tests send this.
METRICS_TOKEN = "test-metrics-token-4e7d1c9a0b3f5a6e"
METRICS_HEADERS = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@dataclass
class System:
    broker: DevBroker
    sandbox: TwilioSandbox
    dispatcher: Dispatcher
    public_url: str
    devices: dict[str, SimulatedDevice] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.dispatcher.store

    async def add_device(
        self,
        device_id: str,
        *,
        practitioner: str | None = None,
        site: str | None = None,
        kind: DeviceKind = DeviceKind.BRACELET,
    ) -> SimulatedDevice:
        """Provision a device (store + broker account) and connect it."""
        key, password = new_device_secrets()
        device = Device(id=device_id, kind=kind, practitioner_id=practitioner, site_id=site, label=device_id)
        await self.store.add_device(device, key)
        await self.dispatcher.cache.refresh()
        self.broker.add_account(device_id, password)
        self.broker.reload()
        sim = SimulatedDevice(device_id, key, "127.0.0.1", self.broker.port, password)
        await asyncio.to_thread(sim.connect)
        self.devices[device_id] = sim
        return sim

    async def until(self, check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
        """Wait until ``check()`` holds, re-checking on every dispatcher event."""
        async with self.dispatcher.bus.subscribe() as events:

            async def settled() -> None:
                while not await check():
                    await events.get()

            await asyncio.wait_for(settled(), within)

    def sent_to(self, number: str, kind: str) -> list[str]:
        """Bodies (SMS) or TwiML (calls) the provider received for ``number``."""
        field_name = "Body" if kind == "message" else "Twiml"
        return [r.params.get(field_name, "") for r in self.sandbox.requests_to(number, kind)]


def loopback_listener() -> socket.socket:
    """A TCP socket listening on a loopback port the kernel chose, held until a server takes it.

    Holding the socket from the start, rather than a port number, means no
    connection opened meanwhile (the dispatcher's MQTT client, say) can take it.
    """
    # IPPROTO_TCP named, as getaddrinfo would: asyncio sets TCP_NODELAY only on
    # connections of such a socket, and Nagle's delay would add 40 ms per answer.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def url_of(sock: socket.socket) -> str:
    """The base URL of a server on loopback socket ``sock``."""
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def http_server(
    app: object, *, listener: socket.socket | None = None, trusted_proxies: Sequence[str] = ()
) -> AsyncIterator[str]:
    """Serve ``app`` as ``vigie serve`` does (same proxy-header policy); yields its base URL.

    On ``listener`` if given (a socket whose URL had to be known before), else
    on a new loopback one; either is closed on the way out, started or not.
    """
    sock = listener or loopback_listener()
    with contextlib.closing(sock):
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            log_level="warning",
            timeout_graceful_shutdown=2,
            ws_per_message_deflate=WS_COMPRESSION,
            **proxy_options(trusted_proxies),
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(_serving(server, sock))
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)  # uvicorn offers no event to await for "started"
            yield url_of(sock)
        finally:
            server.should_exit = True
            await task


async def _serving(server: uvicorn.Server, sock: socket.socket) -> None:
    # uvicorn exits the process when its start fails; in a test, that SystemExit
    # would escape the event loop and break every later test: make it an error.
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:
        raise RuntimeError(f"uvicorn did not start on {url_of(sock)} (exit {exc.code})") from None
    finally:
        sock.close()


def _dev_dispatcher_mqtt(broker: DevBroker) -> MqttSettings:
    return MqttSettings(port=broker.port, username=DISPATCHER_USER, password=broker.accounts[DISPATCHER_USER])


@asynccontextmanager
async def running_system(
    broker: DevBroker,
    workdir: Path,
    *,
    directory: Path = HERAULT,
    database_url: str | None = None,
    mqtt: MqttSettings | None = None,
    provider_timeout_s: float = 5.0,
) -> AsyncIterator[System]:
    """Everything of Vigie, real processes and servers, on free loopback ports.

    ``database_url`` picks the store (an empty PostgreSQL database, say);
    by default a new SQLite file in ``workdir``. ``mqtt`` replaces the dev
    broker's dispatcher account (the production broker's TLS identity, say).
    ``provider_timeout_s``: how long the dispatcher waits for the provider's answer.
    """
    database_url = database_url or f"sqlite:///{workdir / 'vigie.db'}"
    store = await open_store(database_url)
    await load_directory(directory, store, None)
    # The sandbox's commune contours (Hérault demo communes and neighbours, two of the
    # Gard): GPS fixes resolve their commune offline, as in production.
    await load_communes(store, [(str(COMMUNES), COMMUNES.read_bytes())], COMMUNE_DEPARTEMENTS)
    await store.close()

    listener = loopback_listener()
    http_port = listener.getsockname()[1]
    public = url_of(listener)
    sandbox = TwilioSandbox(sms_webhook_url=public + SMS_WEBHOOK_PATH, call_hold_ms=300)
    try:
        await sandbox.start()
        settings = DispatcherSettings(
            database_url=database_url,
            mqtt=mqtt or _dev_dispatcher_mqtt(broker),
            twilio=TwilioSettings(
                account_sid=sandbox.account_sid,
                auth_token=sandbox.auth_token,
                from_number=FROM_NUMBER,
                api_base_url=sandbox.base_url,
                public_base_url=public,
                request_timeout_s=provider_timeout_s,
            ),
            fallback=FallbackContactSettings(name="Permanence Vigie", phone=FALLBACK_NUMBER),
            http_port=http_port,
            api=ApiSettings(metrics_token=METRICS_TOKEN),
        )
        async with running_dispatcher(settings) as d:
            app = create_app(
                settings=settings, inbox=d.engine, metrics=d.metrics, ready=d.bridge, dispatcher=d
            )
            async with http_server(app, listener=listener):
                system = System(broker, sandbox, d, public)
                try:
                    yield system
                finally:
                    for sim in system.devices.values():
                        sim.close()
    finally:
        listener.close()  # already closed if the server ran; not if a start failed before it
        await sandbox.stop()


async def flag_device(store: Store, device_id: str, flags: str, kind: str) -> None:
    """``device_id`` reported offline by its Last Will, then flagged as the health leader does."""
    await store.merge_device_health(
        [
            {
                "device_id": device_id,
                "last_seen_at": None,
                "hb_seq": None,
                "status": "offline",
                "status_at": "2026-11-30T03:00:00.000000+00:00",
                "battery_pct": None,
                "signal_dbm": None,
                "firmware": None,
                "uptime_s": None,
                "merged_by": "dispatcher-1",
            }
        ]
    )
    await store.record_health_changes([FlagChange(device_id, flags, kind, f"{device_id} : {kind}")])
