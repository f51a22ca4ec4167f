"""What the fault tests drive: a device fleet that re-sends like real devices, and the provider's log."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt

from bench.cluster import FLEET_USER, Cluster, read_db
from bench.load import Fleet
from protocol.codec import Rejected, decode_downlink
from protocol.topics import UplinkKind, parse_topic, uplink_topic

CHEF_DE_POSTE = "+33639980101"
OFFICIER_DE_QUART = "+33465710101"
# What a Boutonnet desk button's alert sends first: (number, provider resource kind).
FIRST_TIER = {(CHEF_DE_POSTE, "message"), (CHEF_DE_POSTE, "call"), (OFFICIER_DE_QUART, "call")}


def wait_until(check: Callable[[], bool], timeout: float, period: float = 0.1) -> bool:
    """Poll ``check`` (state held by another process) until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(period)
    return True


class ResendingFleet:
    """Devices pressing through the gateway account, each alert re-sent until 'received'.

    The same signed bytes are re-published every ``resend_s`` until the
    dispatcher's signed 'received' downlink arrives, exactly the store-and-
    forward contract of ``device.client`` (a broker PUBACK is not enough).
    """

    def __init__(self, cluster: Cluster, *, resend_s: float = 0.5, resend: bool = True) -> None:
        assert cluster.broker is not None
        self._fleet = Fleet(cluster.keys)
        self._keys = cluster.keys
        self._resend_s = resend_s
        self._pending: dict[str, tuple[str, bytes]] = {}  # alert id -> (device, payload)
        self.received: set[str] = set()
        self.order: list[str] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="fault-fleet", protocol=mqtt.MQTTv5
        )
        self._client.username_pw_set(FLEET_USER, cluster.fleet_password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=1)
        self._client.on_connect = lambda c, *_a: c.subscribe("vigie/v1/dev/+/down", qos=1)
        self._client.on_message = self._on_downlink
        self._client.connect("127.0.0.1", cluster.broker.port)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._resend_loop, daemon=True)
        if resend:
            self._thread.start()

    def press(self, device_id: str) -> str:
        alert_id, payload = self._fleet.alert(device_id)
        with self._cond:
            self._pending[alert_id] = (device_id, payload)
            self.order.append(alert_id)
        self._client.publish(uplink_topic(device_id, UplinkKind.ALERT), payload, qos=1)
        return alert_id

    def wait_received(self, alert_ids: set[str], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: alert_ids <= self.received, timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._client.disconnect()
        self._client.loop_stop()

    def _on_downlink(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        device_id = parse_topic(msg.topic).device_id
        try:
            downlink = decode_downlink(bytes(msg.payload), device_id, self._keys[device_id])
        except (Rejected, KeyError):
            return
        if downlink.type == "received":
            with self._cond:
                self.received.add(downlink.ref)
                self._pending.pop(downlink.ref, None)
                self._cond.notify_all()

    def _resend_loop(self) -> None:
        while not self._stop.wait(self._resend_s):
            with self._cond:
                pending = list(self._pending.values())
            for device_id, payload in pending:
                self._client.publish(uplink_topic(device_id, UplinkKind.ALERT), payload, qos=1)


def provider_requests(log: Path) -> list[dict[str, object]]:
    """Every SMS/call API request the sandbox answered, across its restarts (JSONL log)."""
    if not log.exists():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e for e in entries if e.get("type") == "api" and e.get("kind") in ("message", "call")]


def first_tier_counts(
    log: Path, alert_ids: set[str], rows: set[int] | None = None
) -> Counter[tuple[str, str, str]]:
    """Messages and calls the provider created, per (alert, number, kind) of the first tier.

    ``rows``: the ids of the first-tier alert notifications, when other
    notifications (a "pris en charge" notice to the same number) may exist.
    """
    counts: Counter[tuple[str, str, str]] = Counter()
    for r in provider_requests(log):
        alert_id, _, row = str(r.get("ref") or "").partition("/")
        if r.get("status") != 201 or (rows is not None and (not row.isdigit() or int(row) not in rows)):
            continue
        if alert_id in alert_ids and (r["to"], r["kind"]) in FIRST_TIER:
            counts[(alert_id, str(r["to"]), str(r["kind"]))] += 1
    return counts


def first_tier_rows(cluster: Cluster) -> set[int]:
    """Ids of the first-tier alert notifications (not notices, not later tiers or rounds)."""
    rows = read_db(cluster.db, "SELECT id FROM notifications WHERE tier=0 AND round=0 AND purpose='alert'")
    return {int(i) for (i,) in rows}


def notification_statuses(cluster: Cluster, alert_ids: set[str]) -> dict[tuple[str, str, str], str]:
    """Status of each first-tier notification row, keyed like :func:`first_tier_counts`."""
    rows = read_db(
        cluster.db,
        "SELECT alert_id, phone, channel, status FROM notifications"
        " WHERE tier=0 AND round=0 AND purpose='alert'",
    )
    kind = {"sms": "message", "voice": "call"}
    return {(a, p, kind[c]): s for a, p, c, s in rows if a in alert_ids}


def persisted(cluster: Cluster, alert_ids: set[str]) -> set[str]:
    return {a for (a,) in read_db(cluster.db, "SELECT id FROM alerts") if a in alert_ids}


def first_tier_attempts(cluster: Cluster, alert_ids: set[str]) -> dict[tuple[str, str, str], int]:
    """How many times each first-tier row was claimed for sending (``attempts``)."""
    rows = read_db(
        cluster.db,
        "SELECT alert_id, phone, channel, attempts FROM notifications"
        " WHERE tier=0 AND round=0 AND purpose='alert'",
    )
    kind = {"sms": "message", "voice": "call"}
    return {(a, p, kind[c]): int(n) for a, p, c, n in rows if a in alert_ids}


def assert_exactly_once(cluster: Cluster, log: Path, alert_ids: set[str]) -> Counter[str]:
    """Every first-tier notification requested at least once, and twice only as the reconciliation allows.

    The rule (docs/lifecycle.md): a row whose fate was uncertain is re-sent when
    the provider's records do not show it, so a second request is allowed only
    for a row claimed more than once (re-queued after a crash or re-sent by the
    reconciliation); a row claimed once is requested once. Nothing is missing.
    Returns the rows' statuses.
    """
    counts = first_tier_counts(log, alert_ids, first_tier_rows(cluster))
    statuses = notification_statuses(cluster, alert_ids)
    attempts = first_tier_attempts(cluster, alert_ids)
    expected = {(a, to, kind) for a in alert_ids for to, kind in FIRST_TIER}
    assert set(statuses) == expected, "a planned first-tier notification is missing from the store"
    unexplained = {k: n for k, n in counts.items() if n > 1 and (n > 2 or attempts[k] < 2)}
    assert not unexplained, f"sent twice outside the reconciliation rule: {unexplained}"
    missing = [k for k in expected if counts[k] == 0]
    assert not missing, f"never sent: {missing[:5]} ({len(missing)})"
    return Counter(statuses.values())


def duplicates_allowed(cluster: Cluster, log: Path, alert_ids: set[str]) -> int:
    """First-tier messages/calls created beyond the first (each one allowed by the reconciliation rule)."""
    counts = first_tier_counts(log, alert_ids, first_tier_rows(cluster))
    return sum(n - 1 for n in counts.values() if n > 1)


#: Statuses a notification passes through on our side before the provider's answer is stored.
UNSETTLED = ("pending", "sending", "retry_wait", "unknown")


def all_first_tier_sent(cluster: Cluster, log: Path, alert_ids: set[str]) -> Callable[[], bool]:
    """A check: every first-tier row has the provider's answer (nothing unsent, nothing uncertain)."""

    def check() -> bool:
        statuses = notification_statuses(cluster, alert_ids)
        done = len(statuses) == 3 * len(alert_ids)
        return done and all(s not in UNSETTLED for s in statuses.values())

    return check


def random_moments(seed: int, count: int, within_s: float) -> list[float]:
    rng = random.Random(seed)
    return sorted(rng.uniform(0.1 * within_s, 0.9 * within_s) for _ in range(count))


class TcpProxy:
    """A loopback TCP relay to the broker that the test can cut: the device's network going away."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepting = threading.Event()
        self._accepting.set()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def cut(self) -> None:
        """Drop every connection and refuse new ones (like a lost radio link)."""
        self._accepting.clear()
        with self._lock:
            for conn in self._conns:
                _close(conn)
            self._conns.clear()

    def restore(self) -> None:
        self._accepting.set()

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._accepting.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    _close(src)
    _close(dst)
