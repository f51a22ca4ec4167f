"""What the broker pays per device: Mosquitto with the production config (mutual TLS).

For the broker sizing of docs/architecture.md ("Broker sizing for 500,000 devices"),
on a real Mosquitto started from ``broker_config/prod``:

1. N devices connect over TLS with their own certificate (a persistent session, a
   week's expiry, a QoS 1 subscription to their downlink, as device/ does), leave, and
   come back: the broker's RSS per connected device (``kb_per_connected_device``), and
   its RSS while they were away (the allocator keeps the freed TLS buffers, so that
   figure is an upper bound of what offline sessions cost), and the size of its
   persistence database per session;
2. they send QoS 0 heartbeats of a real heartbeat's size at a fixed rate,
   received through ``$share`` by one dispatcher identity: broker CPU per 1,000 messages/s.

Devices are raw MQTT 5 over asyncio TLS streams (one paho client per device would
mean one thread each); the dispatcher is paho. ``python -m bench.broker_sessions
--devices 5000 --rate 1000`` prints one JSON line.

With ``--broker mqtts://host:8883 --ca-dir CA`` the same load goes to a broker that is
already running (a staging EMQX or VerneMQ cluster): connection time and delivery are
measured, CPU and memory are the operator's to read on the nodes. It logs in as
``vigie-dispatcher`` (before going live only) and ends every session it opened.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import ssl
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from bench.cluster import ProcessStats
from broker_config import pki, provision
from broker_config.pki import CaPaths, Validity
from broker_config.runner import free_port
from broker_config.tls_runner import TlsBroker, TlsFiles
from protocol.topics import UplinkKind, downlink_topic, shared_uplink_filter, uplink_topic

WEEK_S = 7 * 24 * 3600
# A signed heartbeat as device/ sends it is ~250-300 bytes of JSON.
HEARTBEAT = b'{"v":1,"kind":"heartbeat","seq":1,"ts":1700000000000,"battery":87,"x":"' + b"0" * 170 + b'"}'


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s: str) -> bytes:
    """An MQTT UTF-8 string: two bytes of length, the bytes."""
    data = s.encode()
    return struct.pack("!H", len(data)) + data


def packet(first: int, body: bytes) -> bytes:
    """An MQTT packet: the first byte, the body's length (variable byte integer), the body."""
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id: str, *, session_expiry: int, clean: bool = False) -> bytes:
    """MQTT 5 CONNECT, no keepalive, no username (the certificate is the identity)."""
    props = b"\x11" + struct.pack("!I", session_expiry)
    flags = b"\x02" if clean else b"\x00"
    body = (
        mqtt_str("MQTT")
        + b"\x05"
        + flags
        + struct.pack("!H", 0)
        + _varint(len(props))
        + props
        + mqtt_str(client_id)
    )
    return packet(0x10, body)


def subscribe_packet(topic: str, packet_id: int = 1) -> bytes:
    return packet(0x82, struct.pack("!H", packet_id) + b"\x00" + mqtt_str(topic) + b"\x01")


def publish_qos0(topic: str, payload: bytes) -> bytes:
    return packet(0x30, mqtt_str(topic) + b"\x00" + payload)


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, await reader.readexactly(length)


@dataclass(frozen=True)
class Endpoint:
    """Where the broker's TLS listener is, and the bundle that verifies its certificate."""

    host: str
    port: int
    server_ca: Path


@dataclass
class Device:
    """A device's TLS context and, while connected, its stream."""

    id: str
    context: ssl.SSLContext
    writer: asyncio.StreamWriter | None = None

    async def connect(self, to: Endpoint, *, session_expiry: int = WEEK_S) -> None:
        reader, self.writer = await asyncio.open_connection(to.host, to.port, ssl=self.context)
        self.writer.write(connect_packet(self.id, session_expiry=session_expiry, clean=not session_expiry))
        kind, body = await read_packet(reader)
        if kind != 0x20 or body[1] != 0:
            raise RuntimeError(f"{self.id}: CONNACK {body!r}")
        if not session_expiry:
            return
        self.writer.write(subscribe_packet(downlink_topic(self.id)))
        kind, body = await read_packet(reader)
        if kind != 0x90 or body[-1] > 1:
            raise RuntimeError(f"{self.id}: SUBACK {body!r}")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.write(b"\xe0\x00")  # DISCONNECT, normal: a persistent session stays
            await self.writer.drain()
            self.writer.close()
            self.writer = None


def make_devices(ca_dir: Path, out: Path, count: int, server_ca: Path) -> list[Device]:
    """Certificates from the project's CA code, one CN per device."""
    ca = pki.load_ca(CaPaths(ca_dir))
    devices = []
    for n in range(count):
        device_id = f"bench-{n:06d}"
        cert, key = ca.issue(device_id, validity=Validity.days(1), client=True)
        pki.write_public(out / f"{device_id}.pem", pki.cert_pem(cert))
        pki.write_secret(out / f"{device_id}.key", pki.key_pem(key))
        ctx = ssl.create_default_context(cafile=str(server_ca))
        ctx.load_cert_chain(str(out / f"{device_id}.pem"), str(out / f"{device_id}.key"))
        devices.append(Device(device_id, ctx))
    return devices


async def in_batches(devices: list[Device], action: str, to: Endpoint, batch: int = 200) -> None:
    """``connect`` (persistent session), ``close``, or ``forget`` (clean start, close: no session left)."""
    for start in range(0, len(devices), batch):
        chunk = devices[start : start + batch]
        if action == "connect":
            await asyncio.gather(*(d.connect(to) for d in chunk))
        elif action == "forget":
            await asyncio.gather(*(d.connect(to, session_expiry=0) for d in chunk))
            await asyncio.gather(*(d.close() for d in chunk))
        else:
            await asyncio.gather(*(d.close() for d in chunk))


class Dispatcher:
    """One paho client in the dispatchers' share group, counting what it receives."""

    def __init__(self, ca_dir: Path, folder: Path, to: Endpoint) -> None:
        files = provision.issue_dispatcher_cert(ca_dir, folder, validity_days=1)
        self.count = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="vigie-dispatcher", protocol=mqtt.MQTTv5
        )
        self.client.tls_set(ca_certs=str(to.server_ca), certfile=str(files.cert), keyfile=str(files.key))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(to.host, to.port)
        self.client.loop_start()
        self.client.subscribe(shared_uplink_filter("benchgroup"), qos=0)
        if not subscribed.wait(10):
            raise RuntimeError("dispatcher: no SUBACK")

    def _on_message(self, _c: Any, _u: Any, _m: Any) -> None:
        with self.lock:
            self.count += 1

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def heartbeats(devices: list[Device], rate: int, seconds: float) -> int:
    """Send ``rate`` heartbeats per second, round-robin over the devices, in 10 ms ticks."""
    sent, tick, start = 0, 0.01, time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            device = devices[sent % len(devices)]
            assert device.writer is not None
            device.writer.write(publish_qos0(uplink_topic(device.id, UplinkKind.HEARTBEAT), HEARTBEAT))
            sent += 1
        await asyncio.sleep(tick)
    return sent


class Probe:
    """CPU, RSS and persistence of our own Mosquitto; nothing for an external broker (None)."""

    def __init__(self, broker: TlsBroker | None) -> None:
        self.broker = broker

    def stats(self) -> ProcessStats | None:
        if self.broker is None or self.broker.proc is None:
            return None
        return ProcessStats.of(self.broker.proc.pid)

    def db_bytes(self) -> int | None:
        db = self.broker.data_dir / "mosquitto.db" if self.broker is not None else None
        return db.stat().st_size if db is not None and db.exists() else None


def own_broker(args: argparse.Namespace, work: Path) -> tuple[TlsBroker, Endpoint, Path]:
    """A CA and a Mosquitto from broker_config/prod on loopback."""
    ca_dir = work / "ca"
    provision.init_ca(ca_dir)
    provision.issue_server_cert(ca_dir, work / "server", hosts=["localhost", "127.0.0.1"])
    ca = CaPaths(ca_dir)
    files = TlsFiles(ca.cert, work / "server" / "server.pem", work / "server" / "server.key", ca.crl)
    broker = TlsBroker(work / "broker", files, tls_port=args.tls_port, local_port=args.local_port)
    return broker, Endpoint("localhost", broker.tls_port, ca.cert), ca_dir


def external_broker(args: argparse.Namespace, work: Path) -> tuple[Endpoint, Path]:
    """The operator's broker; a copy of the CA it trusts (the original is only read)."""
    url = urlsplit(args.broker)
    if url.scheme != "mqtts" or not url.hostname:
        raise SystemExit(f"--broker {args.broker!r} : attendu mqtts://hôte:port")
    ca_dir = work / "ca"
    ca_dir.mkdir()
    for name in ("ca.pem", "ca.key", "crl.pem"):
        if (args.ca_dir / name).is_file():
            shutil.copy2(args.ca_dir / name, ca_dir / name)
    return Endpoint(url.hostname, url.port or 8883, args.server_ca or ca_dir / "ca.pem"), ca_dir


def rss(stats: ProcessStats | None) -> float | None:
    """Resident memory in MB, None for an external broker."""
    return None if stats is None else round(stats.rss_mb, 1)


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    broker: TlsBroker | None = None
    if args.broker:
        to, ca_dir = external_broker(args, work)
    else:
        broker, to, ca_dir = own_broker(args, work)
    (work / "devices").mkdir()
    devices = await asyncio.to_thread(make_devices, ca_dir, work / "devices", args.devices, to.server_ca)
    probe = Probe(broker)
    if broker is not None:
        broker.start()
    try:
        # Before the devices: paho's select() cannot watch a descriptor past 1,024.
        dispatcher = await asyncio.to_thread(Dispatcher, ca_dir, work / "dispatcher", to)
        empty = probe.stats()
        await in_batches(devices, "connect", to)
        await in_batches(devices, "close", to)
        await asyncio.sleep(1)
        offline = probe.stats()
        t0 = time.monotonic()
        await in_batches(devices, "connect", to)
        connect_s = time.monotonic() - t0
        await asyncio.sleep(1)
        online, db_bytes = probe.stats(), probe.db_bytes()
        t0 = time.monotonic()
        sent = await heartbeats(devices, args.rate, args.seconds)
        wall = time.monotonic() - t0
        after = probe.stats()
        load = (await asyncio.to_thread(Path("/proc/loadavg").read_text)).split()[:3]
        await asyncio.sleep(1)
        received = dispatcher.count
        dispatcher.stop()
        await in_batches(devices, "close", to)
        await in_batches(devices, "forget", to)  # no bench session left on the broker
    except Exception:
        if broker is not None:
            print(broker.log_text()[-3000:])
        raise
    finally:
        if broker is not None:
            broker.stop()
    n = args.devices
    rate = sent / wall
    cpu_pct = None if after is None or online is None else 100 * (after.cpu_s - online.cpu_s) / wall
    return {
        "broker": args.broker or "mosquitto broker_config/prod",
        "devices": n,
        "rss_empty_mb": rss(empty),
        "rss_offline_mb": rss(offline),
        "rss_online_mb": rss(online),
        "kb_per_connected_device": None
        if online is None or empty is None
        else round(1024 * (online.rss_mb - empty.rss_mb) / n, 2),
        "heartbeats_sent": sent,
        "heartbeats_received": received,
        "rate_per_s": round(rate),
        "broker_cpu_pct": None if cpu_pct is None else round(cpu_pct, 1),
        "broker_cpu_pct_per_1000_per_s": None if cpu_pct is None else round(cpu_pct * 1000 / rate, 2),
        "heartbeat_bytes": len(HEARTBEAT),
        "load_average": load,
        "connect_all_s": round(connect_s, 1),
        # autosave_on_changes rewrites this whole file after every change (broker_config/prod)
        "persistence_db_bytes_per_session": None if db_bytes is None else round(db_bytes / n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=1000, help="heartbeats per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tls-port", type=int, default=0)
    parser.add_argument("--local-port", type=int, default=0)
    parser.add_argument(
        "--broker", default="", help="mqtts://hôte:port d'un broker externe (sans CPU ni RSS)"
    )
    parser.add_argument(
        "--ca-dir", type=Path, help="avec --broker : l'AC Vigie dont il accepte les certificats"
    )
    parser.add_argument("--server-ca", type=Path, help="avec --broker : l'AC de son certificat serveur")
    args = parser.parse_args()
    if args.broker and args.ca_dir is None:
        parser.error("--broker demande --ca-dir")
    args.tls_port = args.tls_port or free_port()
    args.local_port = args.local_port or free_port()
    with tempfile.TemporaryDirectory(prefix="vigie-broker-sessions-") as tmp:
        print(json.dumps(asyncio.run(measure(args, Path(tmp)))))


if __name__ == "__main__":
    main()
