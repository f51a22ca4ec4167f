"""A whole Vigie for the benchmark, each part in its own process.

* Mosquitto with the project's dev configuration (``DevBroker``), plus one
  benchmark account allowed to publish any device's uplinks: a *gateway* that
  multiplexes thousands of simulated devices over a few connections (the
  dispatcher sees exactly the messages N devices would send; only the broker's
  per-connection cost is not exercised).
* The Twilio sandbox (``python -m sandbox.twilio_server``) in its own process,
  so the receive times it records are not delayed by the load generator's GIL.
* The dispatcher as ``vigie serve``, configured only through ``VIGIE_*``
  environment variables, exactly as it is deployed.

Cross-process times use ``time.monotonic()``: CLOCK_MONOTONIC is one clock for
the whole Linux machine, so a publish time taken here and a receive time taken
by the sandbox are directly comparable.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from broker_config.runner import (
    DISPATCHER_USER,
    DevBroker,
    acl_path,
    free_port,
    stop_process,
    wait_for_port,
)
from dispatcher.alerting.notifier import SMS_WEBHOOK_PATH
from dispatcher.directory.loader import load_directory
from dispatcher.domain import Device, DeviceKind
from dispatcher.secretcheck import generate_secret
from dispatcher.store import open_store

ROOT = Path(__file__).resolve().parents[1]
HERAULT = ROOT / "dispatcher" / "data" / "herault.yaml"
FLEET_USER = "vigie-bench-fleet"
FROM_NUMBER = "+33465710199"
ACCOUNT_SID = "AC" + "be" * 16
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
# /metrics answers only this bearer token (or an admin session).
METRICS_TOKEN = "bench-metrics-token-0123456789abcdef"
METRICS_HEADERS = {"Authorization": f"Bearer {METRICS_TOKEN}"}
# A desk button at the Boutonnet practice: police zone, Montpellier commissariat,
# tier 1 = SMS + call to the chef de poste and a call to the officier de quart.
CLOSED_URL = "http://127.0.0.1:9"  # discard port: nothing listens, callbacks are refused at once
PRACTITIONER = "dr-claire-fabre"
# Devices registered one by one through the store; the rest in one transaction (SQLite only).
BULK_AFTER = 2_000
SITE = "cabinet-boutonnet"


class BenchBroker(DevBroker):
    """The dev broker, with an extra ACL section for the benchmark's device gateway."""

    def acl_file(self) -> Path:
        acl = self.workdir / "acl"
        acl.write_text(
            acl_path().read_text()
            + f"\n# Benchmark only: one account publishes for every simulated device.\nuser {FLEET_USER}\n"
            "topic write vigie/v1/dev/+/up/+\ntopic read vigie/v1/dev/+/down\n"
        )
        return acl


@dataclass(frozen=True)
class DeviceSpec:
    """A group of simulated devices to register before the dispatcher starts."""

    prefix: str
    count: int
    heartbeat_interval_s: int = 3600  # alert-only devices: never flagged silent during a run


def device_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


async def prepare_store(
    url: str,
    specs: Iterable[DeviceSpec],
    *,
    directory: Path = HERAULT,
    known: Mapping[str, bytes] | None = None,
) -> dict[str, bytes]:
    """Load the directory and register the devices (``known``: with these keys); return the keys."""
    intervals = {d: spec.heartbeat_interval_s for spec in specs for d in device_ids(spec.prefix, spec.count)}
    given = dict(known or {})
    store = await open_store(url)
    keys: dict[str, bytes] = {}
    bulk: list[Device] = []
    try:
        await load_directory(directory, store, None)
        for number, device_id in enumerate([*intervals, *given]):
            device = Device(
                id=device_id,
                kind=DeviceKind.BUTTON,
                label=device_id,
                practitioner_id=PRACTITIONER,
                site_id=SITE,
                heartbeat_interval_s=intervals.get(device_id, 3600),
            )
            keys[device_id] = given.get(device_id) or secrets.token_bytes(32)
            if number < BULK_AFTER or not url.startswith("sqlite:"):
                await store.add_device(device, keys[device_id])
            else:
                bulk.append(device)
    finally:
        await store.close()
    if bulk:
        _bulk_insert(Path(url.removeprefix("sqlite:///")), bulk, keys)
    return keys


def _bulk_insert(db: Path, devices: list[Device], keys: Mapping[str, bytes]) -> None:
    """Register ``devices`` in one SQLite transaction, with the very row ``add_device`` writes.

    ``add_device`` commits (and fsyncs) each device: 100,000 of them would take
    minutes. The first BULK_AFTER went through it, so the bindings it checks are
    known good; the directory version trigger fires as it does there.
    """
    now = datetime.now(UTC).isoformat()
    conn = sqlite3.connect(db, timeout=30)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO devices(id, doc, state, hmac_key, created_at) VALUES (?, ?, ?, ?, ?)",
                [(d.id, d.model_dump_json(), d.state.value, keys[d.id], now) for d in devices],
            )
    finally:
        conn.close()


def http_json(url: str, body: Mapping[str, Any] | None = None, timeout: float = 60.0) -> Any:
    """GET (or POST ``body`` as JSON) and decode the JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def http_text(url: str, timeout: float = 10.0, headers: dict[str, str] | None = None) -> str:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text: str = response.read().decode()
        return text


@dataclass
class Process:
    """A child process with its log file, stoppable by signal."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=log, env={**os.environ, **self.env}, cwd=ROOT
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig, timeout)
        self.proc = None


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def vigie_serve() -> list[str]:
    """``vigie serve`` from this virtualenv (the console script, or its module form)."""
    script = Path(sys.executable).with_name("vigie")
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-c", "from dispatcher.cli import main; main()", "serve"]


@dataclass
class ProcessStats:
    """CPU seconds (user + system) and resident memory of a process, from /proc."""

    cpu_s: float
    rss_mb: float

    @classmethod
    def of(cls, pid: int) -> ProcessStats:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        rss_kb = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
        return cls(cpu, rss_kb / 1024)


@dataclass
class Cluster:
    """Broker + sandbox + dispatcher (or another consumer) on free loopback ports."""

    workdir: Path
    devices: list[DeviceSpec]
    sandbox_args: list[str] = field(default_factory=list)
    directory: Path = HERAULT
    known_keys: dict[str, bytes] = field(default_factory=dict)  # devices registered with these keys
    db_path: Path | None = None  # default: <workdir>/vigie.db
    database_url: str | None = None  # a PostgreSQL DSN; None: the SQLite file above
    instances: int = 1  # dispatchers sharing the broker (one $share group) and the store
    # True: instance 2 is of role web (VIGIE_ROLE=web) and takes every instance's provider
    # callbacks; the others take the alerts.
    web_instance: bool = False
    # False: the sandbox posts no status callback (and the dispatcher names a closed port for
    # them), isolating the alert path.
    provider_callbacks: bool = True
    keys: dict[str, bytes] = field(default_factory=dict)
    broker: BenchBroker | None = None
    sandbox: Process | None = None
    dispatcher: Process | None = None
    others: list[tuple[Process, int]] = field(default_factory=list)  # instances 2..n, HTTP port
    http_port: int = field(default_factory=free_port)
    sandbox_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)  # instance 2's, when it is of role web

    @property
    def db(self) -> Path:
        return self.db_path or self.workdir / "vigie.db"

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.db}"

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def fleet_password(self) -> str:
        assert self.broker is not None
        return self.broker.accounts[FLEET_USER]

    def start(self, *, with_dispatcher: bool = True) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keys = asyncio.run(
            prepare_store(self.store_url, self.devices, directory=self.directory, known=self.known_keys)
        )
        self.broker = BenchBroker(self.workdir / "broker")
        self.broker.add_account(DISPATCHER_USER, generate_secret())
        self.broker.add_account(FLEET_USER, secrets.token_urlsafe(18))
        self.broker.start()
        self.start_sandbox()
        if with_dispatcher:
            self.start_dispatcher()

    def start_sandbox(self) -> None:
        args = [
            "--port",
            str(self.sandbox_port),
            "--account-sid",
            ACCOUNT_SID,
            "--auth-token",
            AUTH_TOKEN,
            "--sms-webhook-url",
            self.public_url + SMS_WEBHOOK_PATH,
            "--call-hold-ms",
            "1000",
            "--seed",
            "7",
            *([] if self.provider_callbacks else ["--no-status-callbacks"]),
            *self.sandbox_args,
        ]
        self.sandbox = Process(
            "sandbox", python_module("sandbox.twilio_server", *args), self.workdir / "sandbox.log"
        )
        self.sandbox.start()
        wait_for_port("127.0.0.1", self.sandbox_port, 20, self.sandbox.proc)

    def dispatcher_env(self) -> dict[str, str]:
        """The whole configuration of ``vigie serve``, as its operator would write it."""
        assert self.broker is not None
        return {
            "VIGIE_DATABASE_URL": self.store_url,
            "VIGIE_MQTT__PORT": str(self.broker.port),
            "VIGIE_MQTT__USERNAME": DISPATCHER_USER,
            "VIGIE_MQTT__PASSWORD": self.broker.accounts[DISPATCHER_USER],
            "VIGIE_TWILIO__ACCOUNT_SID": ACCOUNT_SID,
            "VIGIE_TWILIO__AUTH_TOKEN": AUTH_TOKEN,
            "VIGIE_TWILIO__FROM_NUMBER": FROM_NUMBER,
            "VIGIE_TWILIO__API_BASE_URL": self.sandbox_url,
            "VIGIE_TWILIO__PUBLIC_BASE_URL": self.callback_url(self.public_url),
            "VIGIE_HTTP_PORT": str(self.http_port),
            "VIGIE_FALLBACK__NAME": "Permanence Vigie",
            "VIGIE_FALLBACK__PHONE": "+33465710190",
            "VIGIE_API__METRICS_TOKEN": METRICS_TOKEN,
        }

    def start_dispatcher(self, timeout: float = 60.0) -> None:
        self.dispatcher = Process(
            "dispatcher", vigie_serve(), self.workdir / "dispatcher.log", env=self.dispatcher_env()
        )
        self.dispatcher.start()
        self.wait_dispatcher_ready(timeout)
        for number in range(2, self.instances + 1):
            self._start_other_instance(number, timeout)

    def callback_url(self, own_url: str) -> str:
        """Where an instance whose address is ``own_url`` has the provider post its callbacks."""
        if not self.provider_callbacks:
            return CLOSED_URL
        return f"http://127.0.0.1:{self.web_port}" if self.web_instance else own_url

    def _start_other_instance(self, number: int, timeout: float) -> None:
        """Instance ``number``: same settings, its own identity, HTTP port and callback URL."""
        web = self.web_instance and number == 2
        port = self.web_port if web else free_port()
        url = f"http://127.0.0.1:{port}"
        env = self.dispatcher_env() | {
            "VIGIE_INSTANCE_ID": f"bench-{number}",
            "VIGIE_MQTT__CLIENT_ID": f"vigie-bench-{number}",  # its own persistent session
            "VIGIE_HTTP_PORT": str(port),
            "VIGIE_TWILIO__PUBLIC_BASE_URL": self.callback_url(url),
            **({"VIGIE_ROLE": "web"} if web else {}),
        }
        process = Process(
            f"dispatcher-{number}", vigie_serve(), self.workdir / f"dispatcher-{number}.log", env=env
        )
        process.start()
        self.others.append((process, port))
        _wait_ready(process, url, timeout)

    def wait_dispatcher_ready(self, timeout: float) -> None:
        """Until /healthz says the broker session is up."""
        assert self.dispatcher is not None
        _wait_ready(self.dispatcher, self.public_url, timeout)

    @property
    def dispatcher_pids(self) -> list[int]:
        """Every running instance's process id."""
        first = [self.dispatcher.pid] if self.dispatcher is not None else []
        return first + [process.pid for process, _ in self.others]

    def all_metrics(self) -> list[str]:
        """/metrics of every instance."""
        urls = [self.public_url] + [f"http://127.0.0.1:{port}" for _, port in self.others]
        return [http_text(url + "/metrics", headers=METRICS_HEADERS) for url in urls]

    def stored_alert_ids(self) -> set[str]:
        """Ids of the alerts in the store (SQLite file or PostgreSQL)."""
        if self.database_url is None:
            return {alert_id for (alert_id,) in read_db(self.db, "SELECT id FROM alerts")}
        return asyncio.run(_postgres_alert_ids(self.database_url))

    def restart_dispatcher(self, sig: signal.Signals = signal.SIGKILL, timeout: float = 60.0) -> None:
        """Stop ``vigie serve`` with ``sig`` (SIGKILL: a crash) and start it again, same settings."""
        assert self.dispatcher is not None
        self.dispatcher.stop(sig)
        self.start_dispatcher(timeout)

    def restart_sandbox(self) -> None:
        """Stop the provider sandbox and start it again on the same port."""
        if self.sandbox is not None:
            self.sandbox.stop()
        self.start_sandbox()

    def metrics(self) -> str:
        return http_text(self.public_url + "/metrics", headers=METRICS_HEADERS)

    def configure_sandbox(self, **config: Any) -> None:
        http_json(self.sandbox_url + "/_sandbox/config", config)

    def sandbox_requests(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = http_json(self.sandbox_url + "/_sandbox/requests", timeout=120)
        return requests

    def stop(self) -> None:
        for process, _ in self.others:
            process.stop()
        self.others.clear()
        for part in (self.dispatcher, self.sandbox):
            if part is not None:
                part.stop()
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _wait_ready(process: Process, url: str, timeout: float) -> None:
    """Until the instance's /healthz says its broker session is up."""
    deadline = time.monotonic() + timeout
    assert process.proc is not None
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"{process.name} exited early; see {process.log_path}")
        try:
            if http_json(url + "/healthz", timeout=1).get("mqtt_connected"):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{process.name} not ready within {timeout} s; see {process.log_path}")


async def _postgres_alert_ids(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        return {row["id"] for row in await conn.fetch("SELECT id FROM alerts")}
    finally:
        await conn.close()


def read_db(db: Path, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """A read-only query on the dispatcher's SQLite file (WAL lets it run beside the writer)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql, tuple(params)))
    finally:
        conn.close()
