"""paho's client reading its socket once for many packets, and parsing QoS 0 PUBLISH itself.

paho-mqtt (2.1, 2.2) parses a packet with three or more reads of its socket:
``_sock_recv(1)`` for the command byte, once per byte of the remaining length,
then once for the body. On a plain TCP socket each is a ``recv`` system call.
:class:`BufferedClient` serves those reads from the bytes of one
``recv(READ_SIZE)``, refilled only when they are used up, and hands a whole
QoS 0 PUBLISH found there (heartbeats, positions: thousands a second) to its
caller without paho's per-message objects (docs/performance.md, fifth round).
Everything else — alerts (QoS 1), acknowledgements, PINGRESP, MQTT 5 — is
still parsed by paho, in stream order.

Invariants:

* the bytes paho gets are the socket's bytes, in order, none twice, none
  skipped, whatever the packet boundaries (a packet may straddle two reads);
* a refill raises exactly what paho's own ``_sock_recv`` raises (it is the one
  doing the read): ``BlockingIOError`` when nothing waits (TLS: want-read),
  ``ConnectionError``/``OSError`` on a broken connection; ``b""`` at the end
  of the stream. A refill made by :meth:`BufferedClient.take_qos0_publish`
  keeps such an end or error for paho's next read of the same connection
  (the caller's ``loop_read``, at once), which then closes it as it would have;
* :meth:`BufferedClient.take_qos0_publish` takes a packet only when paho is
  between packets and the packet is whole in the buffer, so the two parsers
  consume the same bytes in order and never a part of the same packet; it
  refills the buffer only when it is empty, so the first packet of a read is
  parsed there too (seventh heartbeat round);
* bytes read from one connection are never handed over on another: the buffer
  belongs to the socket object it was read from and is dropped when paho's
  socket changes (a reconnection);
* the caller who waits for the socket to become readable must first ask
  :meth:`BufferedClient.has_unread`: a packet already read into the buffer (or
  decrypted in the SSL object) does not make the socket readable again, and
  must not wait for the next packet to arrive (an alert would be delayed).
"""

from __future__ import annotations

import ssl
from typing import Any

import paho.mqtt.client as mqtt

READ_SIZE = 65536  # one read takes what a busy broker sent since the last one (a few hundred packets)
_END_OF_STREAM = object()  # a refill of take_qos0_publish found the end of the stream: paho's to see


class BufferedClient(mqtt.Client):
    """A paho ``Client`` whose packet parser reads from a buffer filled by one ``recv`` at a time.

    This overrides paho's private ``_sock_recv(bufsize)``, the one method its
    parser (``_packet_read``) reads the socket with, in paho-mqtt 2.1 and 2.2
    (pyproject pins ``<3``), and reads its private ``_in_packet["command"]``
    (0 between packets) and ``_protocol``. Should paho stop calling
    ``_sock_recv``, nothing breaks — paho reads its socket itself again, only
    more often — and tests/dispatcher/test_mqtt_buffer.py fails
    (``socket_reads`` stays at 0); should the meaning of ``_in_packet`` change,
    its cut-packet test fails.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buf = b""  # the last read; bytes from _read_pos on are not handed over yet
        self._read_pos = 0
        self._read_from: object = None  # the socket they were read from
        # What a refill of take_qos0_publish met instead of bytes (error, _END_OF_STREAM): paho's next read.
        self._read_end: object = None
        self.socket_reads = 0  # refills that returned bytes (for tests and profiling)

    def has_unread(self) -> bool:
        """Bytes of the current connection were read but not parsed: call ``loop_read`` without waiting."""
        sock = self._sock
        if sock is None:
            return False
        if sock is self._read_from and self._read_pos < len(self._read_buf):
            return True
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0  # decrypted, not read yet

    def take_qos0_publish(self) -> tuple[bytes, bytes] | None:
        """The next packet if it is a whole QoS 0 PUBLISH in the buffer, parsed here: (topic, payload).

        Heartbeats and positions are QoS 0: paho builds an ``MQTTMessage``
        (with a ``threading.Condition``) and takes a lock for each, ≈ 30 µs
        against ≈ 2 here (docs/performance.md, fifth round). None — paho reads
        the next packet — for anything else: another packet type or QoS, a
        packet not whole in the buffer yet, paho in the middle of a packet,
        MQTT 5 (properties), a malformed length (paho refuses it). An empty
        buffer is refilled here (one ``recv``): the first packet of a read is
        taken too, not left to paho (≈ 30 µs). What that read meets instead of
        bytes (nothing waiting, an error, the end of the stream) is left to
        paho's next read, the caller's ``loop_read``.
        """
        if self._in_packet["command"] != 0 or self._protocol != mqtt.MQTTv311:
            return None
        empty = self._sock is not self._read_from or self._read_pos >= len(self._read_buf)
        if empty and not self._refill():
            return None
        buf, pos = self._read_buf, self._read_pos
        end = len(buf)
        if buf[pos] & 0xF6 != 0x30:  # PUBLISH, QoS 0 (DUP and RETAIN bits aside)
            return None
        length, shift, i = 0, 0, pos + 1
        while i < end and shift <= 21:
            byte = buf[i]
            length |= (byte & 0x7F) << shift
            i += 1
            if byte < 0x80:
                break
            shift += 7
        else:
            return None  # length not whole yet, or over four bytes
        topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1]) if i + 1 < end else end + 1
        if i + length > end or topic_end > i + length:
            return None  # not whole yet, or a topic longer than the packet
        self._read_pos = i + length
        return buf[i + 2 : topic_end], buf[topic_end : i + length]

    def _refill(self) -> bool:
        """Read the socket into the empty buffer for :meth:`take_qos0_publish`: True if bytes came.

        False leaves the reading to paho: nothing waits (its own read will say
        so), or an error or the end of the stream, kept for its next read.
        """
        self._forget_other_connection()
        if self._read_end is not None:
            return False
        try:
            data = super()._sock_recv(READ_SIZE)
        except BlockingIOError:
            return False
        except OSError as exc:  # ConnectionError, ssl.SSLError: paho closes the connection at its read
            self._read_end = exc
            return False
        if not data:
            self._read_end = _END_OF_STREAM
            return False
        self._read_buf, self._read_pos = data, 0
        self.socket_reads += 1
        return True

    def _forget_other_connection(self) -> None:
        """A new connection (or none): the old one's bytes and its end are dropped."""
        if self._sock is not self._read_from:
            self._read_from = self._sock
            self._read_buf, self._read_pos, self._read_end = b"", 0, None

    def _sock_recv(self, bufsize: int) -> bytes:
        """paho's read of at most ``bufsize`` bytes, served from the buffer (see the module's invariants)."""
        self._forget_other_connection()
        buf, pos = self._read_buf, self._read_pos
        if pos >= len(buf):
            ended, self._read_end = self._read_end, None
            if isinstance(ended, BaseException):
                raise ended
            if ended is _END_OF_STREAM:
                return b""
            buf = super()._sock_recv(READ_SIZE)  # raises as paho expects, its own code does the read
            if not buf:
                return b""  # end of stream (the buffer is empty already)
            pos = 0
            self.socket_reads += 1
        end = min(pos + bufsize, len(buf))
        self._read_buf, self._read_pos = buf, end
        return buf[pos:end]
