"""paho reading from our buffer (dispatcher/alerting/mqtt_buffer.py), against a local TCP peer.

The peer plays the broker byte by byte, so that packets can be cut where a
broker's writes may cut them: after the command byte, inside the remaining
length, inside the body. The client is the real ``BufferedClient`` driven the
way the bridge drives it: ``loop_read`` while :meth:`BufferedClient.has_unread`
says bytes wait in the buffer, else only once the socket is readable. These
tests also pin the assumption on paho's private ``_sock_recv``: if paho stops
reading through it, ``socket_reads`` stays at 0 and they fail.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
import pytest

from bench.broker_sessions import mqtt_str, packet
from dispatcher.alerting.mqtt_buffer import BufferedClient

CONNACK = bytes([0x20, 0x02, 0x00, 0x00])
TOPIC = "vigie/dev/btn-buf/up/heartbeat"


def publish(payload: bytes, *, qos: int = 0, mid: int = 1) -> bytes:
    """An MQTT 3.1.1 PUBLISH packet, as the broker writes it."""
    return packet(0x30 | (qos << 1), mqtt_str(TOPIC) + (mid.to_bytes(2, "big") if qos else b"") + payload)


class Session:
    """A connected client and the peer's end of its TCP connection."""

    def __init__(self, client: BufferedClient, peer: socket.socket) -> None:
        self.client = client
        self.peer = peer
        self.received: list[bytes] = []
        self.parsed_here: list[bytes] = []  # by take_qos0_publish, not paho
        client.on_message = lambda _c, _u, msg: self.received.append(msg.payload)

    def read_one(self) -> None:
        """What the bridge does for each packet: a whole QoS 0 PUBLISH parsed here, else paho reads."""
        qos0 = self.client.take_qos0_publish()
        if qos0 is not None:
            assert qos0[0] == TOPIC.encode()
            self.received.append(qos0[1])
            self.parsed_here.append(qos0[1])
        else:
            assert self.client.loop_read() == mqtt.MQTT_ERR_SUCCESS

    def read(self, until: Callable[[], bool], timeout: float = 5.0) -> None:
        """Drive the client as the bridge does until ``until()`` holds."""
        deadline = time.monotonic() + timeout
        while not until():
            sock = self.client.socket()
            assert sock is not None, "connection lost"
            if not self.client.has_unread():
                ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise TimeoutError(f"received {self.received}")
            self.read_one()

    def settle(self, reads_before: int) -> None:
        """Wait for the peer's last write to be read, then read what is ready without waiting."""
        self.read(lambda: self.client.socket_reads > reads_before)
        while self.client.has_unread() or select.select([self.client.socket()], [], [], 0)[0]:
            self.read_one()

    def send(self, data: bytes) -> None:
        """The peer writes ``data``; the client reads it (one refill of its buffer)."""
        before = self.client.socket_reads
        self.peer.sendall(data)
        self.settle(before)


@contextmanager
def session() -> Iterator[tuple[Session, socket.socket]]:
    """A client connected to a local peer that answered its CONNECT; also yields the listener."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="buf", protocol=mqtt.MQTTv311)
        client.connect("127.0.0.1", listener.getsockname()[1], keepalive=60)
        peer = _answer_connect(client, listener)
        s = Session(client, peer)
        try:
            s.read(client.is_connected)
            yield s, listener
        finally:
            s.peer.close()
            client.socket() and client.disconnect()


def _answer_connect(client: BufferedClient, listener: socket.socket) -> socket.socket:
    client.loop_write()  # the CONNECT
    peer, _ = listener.accept()
    assert peer.recv(1024)[0] == 0x10  # CONNECT
    peer.sendall(CONNACK)
    return peer


def test_a_packet_cut_anywhere_is_delivered_once_whole_and_not_before() -> None:
    first, also, third = publish(b"hb-1"), publish(b"hb-2"), publish(b"hb-0")  # hb-0 ends with 0x30
    second = publish(b"A" * 300, qos=1, mid=7)  # two bytes of remaining length
    assert second[1] & 0x80  # the cut after byte 1 is inside the remaining length
    with session() as (s, _):
        reads = s.client.socket_reads
        s.send(first + also + second[:1])  # ... the command byte of the next one
        assert s.received == [b"hb-1", b"hb-2"]
        s.send(second[1:2])  # the first byte of its remaining length
        s.send(second[2:10])  # the rest of it, the topic's length, part of the topic
        assert s.received == [b"hb-1", b"hb-2"]
        s.send(second[10:] + third[:-1])
        assert s.received == [b"hb-1", b"hb-2", b"A" * 300]
        s.send(third[-1:])  # the end of a packet paho had begun: not parsed as the start of one
        assert s.received == [b"hb-1", b"hb-2", b"A" * 300, b"hb-0"]
        assert s.client.socket_reads - reads == 5  # one read per write of the peer, not per packet
        # hb-1 and hb-2 whole in the buffer (the first of a read too), hb-0 begun by paho
        assert s.parsed_here == [b"hb-1", b"hb-2"]


def test_packets_read_together_are_all_delivered_without_more_traffic() -> None:
    """Hundreds of packets in one read: the socket is no longer readable, yet none is left behind."""
    payloads = [f"hb-{n:03d}".encode() for n in range(300)]
    stream = b"".join(publish(p, qos=n % 2, mid=n + 1) for n, p in enumerate(payloads))
    with session() as (s, _):
        reads = s.client.socket_reads
        s.peer.sendall(stream)
        s.read(lambda: len(s.received) == len(payloads))
        assert s.received == payloads
        assert s.client.socket_reads - reads <= 3  # ~5 kB: one read (TCP may cut it)
        assert len(s.parsed_here) >= len(payloads) // 2 - 3  # the QoS 0 ones, but one cut by TCP
        assert not s.client.has_unread()


def test_bytes_read_from_a_connection_are_never_parsed_on_the_next_one() -> None:
    stale, fresh = publish(b"stale"), publish(b"fresh")
    malformed = bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])  # a remaining length of five bytes
    with session() as (s, listener):
        s.peer.sendall(malformed + stale)  # one read: paho gives up on the first and closes
        deadline = time.monotonic() + 5
        while s.client.socket() is not None and time.monotonic() < deadline:
            select.select([s.client.socket()], [], [], 1)
            s.client.loop_read()
        assert s.client.socket() is None and s.client.socket_reads >= 2
        s.client.reconnect()
        s.peer.close()
        s.peer = _answer_connect(s.client, listener)
        s.read(s.client.is_connected)
        s.send(fresh)
        assert s.received == [b"fresh"]


@pytest.mark.parametrize("ending", ["end of stream", "connection reset"])
def test_an_end_met_by_the_qos0_refill_is_left_to_paho_which_closes(ending: str) -> None:
    """take_qos0_publish reads the socket when its buffer is empty; the end it meets is paho's to see."""
    with session() as (s, _):
        s.peer.sendall(publish(b"last"))
        s.read(lambda: s.received == [b"last"])
        assert s.parsed_here == [b"last"]  # the first packet of a read, parsed without paho
        if ending == "connection reset":
            s.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.peer.close()  # an RST, not a FIN
        else:
            s.peer.shutdown(socket.SHUT_WR)
        sock = s.client.socket()
        assert select.select([sock], [], [], 5)[0]  # the end is readable
        assert s.client.take_qos0_publish() is None  # its read met the end ...
        assert s.client.socket() is sock  # ... and kept it for paho
        assert s.client.loop_read() != mqtt.MQTT_ERR_SUCCESS
        assert s.client.socket() is None  # paho closed the connection, as when it reads the end itself
        assert s.received == [b"last"]
