"""The simulated devices: signed uplinks published over a few paho connections.

Open-loop load: sends are scheduled at fixed times (``start + i / rate``)
whatever the system under test does, so a slow dispatcher shows up as
latency instead of silently lowering the offered rate. Each alert's publish
time is ``time.monotonic()`` taken just before paho gets the message.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from protocol.codec import encode_uplink, new_event_id
from protocol.messages import PROTOCOL_VERSION
from protocol.signing import signed_bytes
from protocol.topics import UplinkKind, uplink_topic


@dataclass
class SentAlert:
    """One alert as the load generator published it."""

    alert_id: str
    device_id: str
    published_at: float  # time.monotonic()


class Publishers:
    """``connections`` MQTT sessions of the fleet gateway account, used round-robin."""

    def __init__(self, *, port: int, username: str, password: str, connections: int = 4) -> None:
        self._clients: list[mqtt.Client] = []
        for i in range(connections):
            client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{i}", protocol=mqtt.MQTTv5
            )
            client.username_pw_set(username, password)
            client.max_inflight_messages_set(1000)
            client.max_queued_messages_set(0)
            connected = threading.Event()
            client.on_connect = lambda *_a, ev=connected: ev.set()
            client.connect("127.0.0.1", port)
            client.loop_start()
            if not connected.wait(10):
                raise TimeoutError("bench publisher could not connect")
            self._clients.append(client)
        self._next = itertools.cycle(self._clients)

    def publish(self, topic: str, payload: bytes, qos: int) -> mqtt.MQTTMessageInfo:
        return next(self._next).publish(topic, payload, qos=qos)

    def close(self) -> None:
        for client in self._clients:
            client.disconnect()
            client.loop_stop()


@dataclass
class Fleet:
    """Signing state of the simulated devices (keys and sequence numbers)."""

    keys: dict[str, bytes]
    seqs: dict[str, int] = field(default_factory=dict)

    def sign(self, kind: UplinkKind, device_id: str, event_id: str, **body: Any) -> bytes:
        seq = self.seqs.get(device_id, 0) + 1
        self.seqs[device_id] = seq
        _, payload = encode_uplink(
            kind=kind.value,
            device_id=device_id,
            event_id=event_id,
            seq=seq,
            ts_ms=int(time.time() * 1000),
            key=self.keys[device_id],
            **body,
        )
        return payload

    def alert(self, device_id: str) -> tuple[str, bytes]:
        event_id = new_event_id()
        return event_id, self.sign(UplinkKind.ALERT, device_id, event_id, gesture="hold")

    def heartbeat(self, device_id: str) -> bytes:
        """A signed heartbeat, as the device writes it (signed layout), built without the pydantic
        model: 3,333 a second must leave the load generator's CPU to the system under test."""
        seq = self.seqs.get(device_id, 0) + 1
        self.seqs[device_id] = seq
        fields = {
            "v": PROTOCOL_VERSION,
            "type": UplinkKind.HEARTBEAT.value,
            "id": new_event_id(),
            "device": device_id,
            "seq": seq,
            "ts": int(time.time() * 1000),
            "battery_pct": 87,
            "signal_dbm": -71,
            "firmware": "vigie-bench/1",
            "uptime_s": 3600,
        }
        return signed_bytes(fields, self.keys[device_id])


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def steady_alerts(
    pubs: Publishers, fleet: Fleet, devices: Sequence[str], *, rate: float, duration_s: float
) -> list[SentAlert]:
    """Publish alerts at ``rate`` per second for ``duration_s``, devices round-robin."""
    count = max(1, round(rate * duration_s))
    sent: list[SentAlert] = []
    device_cycle: Iterator[str] = itertools.cycle(devices)
    start = time.monotonic() + 0.05
    for i in range(count):
        device_id = next(device_cycle)
        alert_id, payload = fleet.alert(device_id)
        _sleep_until(start + i / rate)
        t = time.monotonic()
        pubs.publish(uplink_topic(device_id, UplinkKind.ALERT), payload, qos=1)
        sent.append(SentAlert(alert_id, device_id, t))
    return sent


def burst_alerts(pubs: Publishers, fleet: Fleet, devices: Sequence[str], *, count: int) -> list[SentAlert]:
    """Sign ``count`` alerts first, then publish them all as fast as paho takes them."""
    signed = [(d, *fleet.alert(d)) for d in itertools.islice(itertools.cycle(devices), count)]
    sent: list[SentAlert] = []
    for device_id, alert_id, payload in signed:
        t = time.monotonic()
        pubs.publish(uplink_topic(device_id, UplinkKind.ALERT), payload, qos=1)
        sent.append(SentAlert(alert_id, device_id, t))
    return sent


class HeartbeatLoad:
    """Devices heartbeating on their own period, spread evenly, in a background thread."""

    def __init__(self, pubs: Publishers, fleet: Fleet, periods: dict[str, float]) -> None:
        self._pubs = pubs
        self._fleet = fleet
        self._periods = dict(periods)
        self._silenced: set[str] = set()
        self._lock = threading.Lock()
        self.last_sent: dict[str, float] = {}  # device -> time.time() of its last heartbeat
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeats", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def silence(self, device_ids: Sequence[str]) -> None:
        """These devices go quiet from now on (as if their battery died)."""
        with self._lock:
            self._silenced.update(device_ids)

    def _schedule(self) -> list[tuple[float, str]]:
        start = time.monotonic()
        count = len(self._periods)
        return sorted(
            (start + period * (i / count), device_id)
            for i, (device_id, period) in enumerate(self._periods.items())
        )

    def _run(self) -> None:
        import heapq

        queue = self._schedule()
        heapq.heapify(queue)
        while queue and not self._stop.is_set():
            due, device_id = heapq.heappop(queue)
            _sleep_until(due)
            with self._lock:
                silent = device_id in self._silenced
            if not silent:
                payload = self._fleet.heartbeat(device_id)
                self._pubs.publish(uplink_topic(device_id, UplinkKind.HEARTBEAT), payload, qos=0)
                self.last_sent[device_id] = time.time()
                self.sent += 1
                heapq.heappush(queue, (due + self._periods[device_id], device_id))
