"""Two real ``vigie serve`` processes sharing one Mosquitto and one PostgreSQL database.

The test process runs the broker (dev config), the PostgreSQL cluster, the
Twilio sandbox (in its own event loop, so it counts every request) and the
simulated devices; each dispatcher is a separate OS process configured only
through ``VIGIE_*`` environment variables, as in production, so it can be
killed with SIGKILL or frozen with SIGSTOP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from broker_config.runner import DISPATCHER_USER, DevBroker, free_port
from dispatcher.alerting.notifier import SMS_WEBHOOK_PATH
from dispatcher.directory.loader import load_directory
from dispatcher.domain import Device, DeviceKind
from dispatcher.store.postgres import PostgresStore
from sandbox.fleet import SimulatedDevice, new_device_secrets
from sandbox.twilio_server import TwilioSandbox
from tests.support import postgres as _pg
from tests.support.system import FROM_NUMBER, HERAULT, METRICS_TOKEN

# The session cluster and per-test database fixtures, shared with the other test packages.
postgres_cluster = _pg.postgres_cluster
postgres_url = _pg.postgres_url

VIGIE = Path(sys.executable).with_name("vigie")


@dataclass
class Instance:
    """One ``vigie serve`` process."""

    name: str  # VIGIE_INSTANCE_ID, also the lease owner in the store
    http_port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} log ---\n" + "\n".join(text.splitlines()[-lines:])

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Cluster:
    """Broker + PostgreSQL + sandbox + N dispatcher processes + devices."""

    broker: DevBroker
    database_url: str
    sandbox: TwilioSandbox
    store: PostgresStore  # the test's own view of the shared database
    db: asyncpg.Connection  # type: ignore[type-arg]  # raw SQL: leases, row locks
    workdir: Path
    instances: list[Instance] = field(default_factory=list)
    devices: list[SimulatedDevice] = field(default_factory=list)

    def env(self, instance: Instance) -> dict[str, str]:
        """Everything a dispatcher instance is configured with (only environment variables)."""
        return os.environ | {
            "VIGIE_DATABASE_URL": self.database_url,
            "VIGIE_INSTANCE_ID": instance.name,
            "VIGIE_MQTT__PORT": str(self.broker.port),
            "VIGIE_MQTT__USERNAME": DISPATCHER_USER,
            "VIGIE_MQTT__PASSWORD": self.broker.accounts[DISPATCHER_USER],
            "VIGIE_MQTT__CLIENT_ID": f"vigie-{instance.name}",  # distinct: each keeps its own session
            "VIGIE_TWILIO__ACCOUNT_SID": self.sandbox.account_sid,
            "VIGIE_TWILIO__AUTH_TOKEN": self.sandbox.auth_token,
            "VIGIE_TWILIO__FROM_NUMBER": FROM_NUMBER,
            "VIGIE_TWILIO__API_BASE_URL": self.sandbox.base_url,
            "VIGIE_TWILIO__PUBLIC_BASE_URL": instance.url,
            # The sandbox shares two cores with everything else here: a slow answer
            # should not turn into an 'unknown' outcome (looked up at the provider, maybe re-sent).
            "VIGIE_TWILIO__REQUEST_TIMEOUT_S": "30",
            "VIGIE_HTTP_PORT": str(instance.http_port),
            "VIGIE_FALLBACK__NAME": "Permanence Vigie",
            "VIGIE_FALLBACK__PHONE": "+33465710190",
            "VIGIE_API__METRICS_TOKEN": METRICS_TOKEN,
        }

    async def start_instance(self, name: str, **env: str) -> Instance:
        """Start ``vigie serve`` as instance ``name``; ``env`` adds to (or overrides) its variables."""
        instance = Instance(name, free_port(), self.workdir / f"{name}.log")
        with instance.log.open("ab") as log:
            instance.proc = subprocess.Popen(  # noqa: ASYNC220  # returns at once: nothing to await
                [str(VIGIE), "serve"], env=self.env(instance) | env, stdout=log, stderr=subprocess.STDOUT
            )
        self.instances.append(instance)
        await _wait_healthy(instance)
        return instance

    async def add_devices(self, count: int, *, heartbeat_interval_s: int = 30) -> None:
        """Register ``count`` desk buttons of Dr Fabre's cabinet and connect them.

        Call before starting the instances: they read the directory at start
        (then every few seconds), as devices are provisioned ahead in production.
        """
        for i in range(count):
            key, password = new_device_secrets()
            device_id = f"btn-{i:03d}"
            await self.store.add_device(
                Device(
                    id=device_id,
                    kind=DeviceKind.BUTTON,
                    practitioner_id="dr-claire-fabre",
                    site_id="cabinet-boutonnet",
                    label=device_id,
                    heartbeat_interval_s=heartbeat_interval_s,
                ),
                key,
            )
            self.broker.add_account(device_id, password)
            self.devices.append(SimulatedDevice(device_id, key, "127.0.0.1", self.broker.port, password))
        self.broker.reload()
        for sim in self.devices:
            await asyncio.to_thread(sim.connect)

    def logs(self) -> str:
        return "\n".join(i.log_tail() for i in self.instances)


async def _wait_healthy(instance: Instance, within: float = 30.0) -> None:
    """Until /healthz answers 200 (store open, broker connected), or the process died."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=1.0) as http:
        while time.monotonic() < deadline:
            assert instance.proc is not None
            if instance.proc.poll() is not None:
                raise RuntimeError(
                    f"{instance.name} exited with {instance.proc.returncode}\n{instance.log_tail()}"
                )
            try:
                if (await http.get(instance.url + "/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # polling a starting process: no event to wait on
    raise TimeoutError(f"{instance.name} not healthy after {within} s\n{instance.log_tail()}")


async def make_cluster(
    broker: DevBroker, database_url: str, workdir: Path, *, ack_timeout_s: int | None = None
) -> AsyncIterator[Cluster]:
    """Load the Hérault directory (optionally with a shorter ack timeout) and start the sandbox."""
    directory = HERAULT
    if ack_timeout_s is not None:
        directory = workdir / "herault-fast.yaml"
        directory.write_text(
            HERAULT.read_text().replace("ack_timeout_s: 120", f"ack_timeout_s: {ack_timeout_s}")
        )
    store = await PostgresStore.open(database_url)
    await load_directory(directory, store, None)
    sandbox = TwilioSandbox(call_hold_ms=300)
    await sandbox.start()
    db = await asyncpg.connect(database_url)
    cluster = Cluster(broker, database_url, sandbox, store, db, workdir)
    try:
        yield cluster
    finally:
        for sim in cluster.devices:
            sim.close()
        for instance in cluster.instances:
            instance.stop()
        await sandbox.stop()
        await db.close()
        await store.close()


@pytest.fixture
async def cluster(broker: DevBroker, postgres_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async for c in make_cluster(broker, postgres_url, tmp_path):
        yield c


@pytest.fixture
async def fast_cluster(broker: DevBroker, postgres_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    """Acknowledgement timeouts of 12 s: long enough to set the stage, short enough to wait for."""
    async for c in make_cluster(broker, postgres_url, tmp_path, ack_timeout_s=12):
        yield c


def sms_webhook(instance: Instance) -> str:
    return instance.url + SMS_WEBHOOK_PATH
