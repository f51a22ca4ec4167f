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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _str(s: str) -> bytes:
    data = s.encode()
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id: str, *, session_expiry: int) -> bytes:
    """MQTT 5 CONNECT, clean start off, no keepalive, no username (the certificate is the identity)."""
    props = b"\x11" + struct.pack("!I", session_expiry)
    body = _str("MQTT") + b"\x05\x00" + struct.pack("!H", 0) + _varint(len(props)) + props + _str(client_id)
    return _packet(0x10, body)


def subscribe_packet(topic: str, packet_id: int = 1) -> bytes:
    return _packet(0x82, struct.pack("!H", packet_id) + b"\x00" + _str(topic) + b"\x01")


def publish_qos0(topic: str, payload: bytes) -> bytes:
    return _packet(0x30, _str(topic) + b"\x00" + payload)


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


@dataclass
class Device:
    """A device's certificate files and, while connected, its stream."""

    id: str
    context: ssl.SSLContext
    writer: asyncio.StreamWriter | None = None

    async def connect(self, port: int) -> None:
        reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=self.context, server_hostname="localhost"
        )
        self.writer.write(connect_packet(self.id, session_expiry=WEEK_S))
        kind, body = await read_packet(reader)
        if kind != 0x20 or body[1] != 0:
            raise RuntimeError(f"{self.id}: CONNACK {body!r}")
        self.writer.write(subscribe_packet(downlink_topic(self.id)))
        kind, body = await read_packet(reader)
        if kind != 0x90 or body[-1] > 1:
            raise RuntimeError(f"{self.id}: SUBACK {body!r}")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.write(b"\xe0\x00")  # DISCONNECT, normal: the session stays
            await self.writer.drain()
            self.writer.close()
            self.writer = None


def make_devices(ca_dir: Path, out: Path, count: int) -> list[Device]:
    """Certificates from the project's CA code, one CN per device."""
    ca = pki.load_ca(CaPaths(ca_dir))
    devices = []
    for n in range(count):
        device_id = f"bench-{n:06d}"
        cert, key = ca.issue(device_id, validity=Validity.days(1), client=True)
        pki.write_public(out / f"{device_id}.pem", pki.cert_pem(cert))
        pki.write_secret(out / f"{device_id}.key", pki.key_pem(key))
        ctx = ssl.create_default_context(cafile=str(CaPaths(ca_dir).cert))
        ctx.load_cert_chain(str(out / f"{device_id}.pem"), str(out / f"{device_id}.key"))
        devices.append(Device(device_id, ctx))
    return devices


async def in_batches(devices: list[Device], action: str, port: int = 0, batch: int = 200) -> None:
    for start in range(0, len(devices), batch):
        chunk = devices[start : start + batch]
        await asyncio.gather(*(d.connect(port) if action == "connect" else d.close() for d in chunk))


class Dispatcher:
    """One paho client in the dispatchers' share group, counting what it receives."""

    def __init__(self, ca_dir: Path, folder: Path, port: int) -> None:
        files = provision.issue_dispatcher_cert(ca_dir, folder)
        self.count = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="vigie-dispatcher", protocol=mqtt.MQTTv5
        )
        self.client.tls_set(ca_certs=str(files.ca), certfile=str(files.cert), keyfile=str(files.key))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("localhost", port)
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


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    ca_dir = work / "ca"
    provision.init_ca(ca_dir)
    provision.issue_server_cert(ca_dir, work / "server", hosts=["localhost", "127.0.0.1"])
    ca = CaPaths(ca_dir)
    files = TlsFiles(ca.cert, work / "server" / "server.pem", work / "server" / "server.key", ca.crl)
    broker = TlsBroker(work / "broker", files, tls_port=args.tls_port, local_port=args.local_port)
    (work / "devices").mkdir()
    devices = await asyncio.to_thread(make_devices, ca_dir, work / "devices", args.devices)
    broker.start()
    try:
        assert broker.proc is not None
        pid = broker.proc.pid
        # Before the devices: paho's select() cannot watch a descriptor past 1,024.
        dispatcher = await asyncio.to_thread(Dispatcher, ca_dir, work / "dispatcher", broker.tls_port)
        empty = ProcessStats.of(pid)
        await in_batches(devices, "connect", broker.tls_port)
        await in_batches(devices, "close")
        await asyncio.sleep(1)
        offline = ProcessStats.of(pid)
        t0 = time.monotonic()
        await in_batches(devices, "connect", broker.tls_port)
        connect_s = time.monotonic() - t0
        await asyncio.sleep(1)
        online = ProcessStats.of(pid)
        db = broker.data_dir / "mosquitto.db"
        db_bytes = (await asyncio.to_thread(db.stat)).st_size if db.exists() else 0
        before = ProcessStats.of(pid)
        t0 = time.monotonic()
        sent = await heartbeats(devices, args.rate, args.seconds)
        wall = time.monotonic() - t0
        after = ProcessStats.of(pid)
        load = (await asyncio.to_thread(Path("/proc/loadavg").read_text)).split()[:3]
        await asyncio.sleep(1)
        received = dispatcher.count
        dispatcher.stop()
        await in_batches(devices, "close")
    except Exception:
        print(broker.log_text()[-3000:])
        raise
    finally:
        broker.stop()
    n = args.devices
    cpu_pct = 100 * (after.cpu_s - before.cpu_s) / wall
    return {
        "devices": n,
        "rss_empty_mb": round(empty.rss_mb, 1),
        "rss_offline_mb": round(offline.rss_mb, 1),
        "rss_online_mb": round(online.rss_mb, 1),
        "kb_per_connected_device": round(1024 * (online.rss_mb - empty.rss_mb) / n, 2),
        "heartbeats_sent": sent,
        "heartbeats_received": received,
        "rate_per_s": round(sent / wall),
        "broker_cpu_pct": round(cpu_pct, 1),
        "broker_cpu_pct_per_1000_per_s": round(cpu_pct * 1000 / (sent / wall), 2),
        "heartbeat_bytes": len(HEARTBEAT),
        "load_average": load,
        "connect_all_s": round(connect_s, 1),
        # autosave_on_changes rewrites this whole file after every change (broker_config/prod)
        "persistence_db_bytes_per_session": round(db_bytes / n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=1000, help="heartbeats per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tls-port", type=int, default=0)
    parser.add_argument("--local-port", type=int, default=0)
    args = parser.parse_args()
    args.tls_port = args.tls_port or free_port()
    args.local_port = args.local_port or free_port()
    with tempfile.TemporaryDirectory(prefix="vigie-broker-sessions-") as tmp:
        print(json.dumps(asyncio.run(measure(args, Path(tmp)))))


if __name__ == "__main__":
    main()
