"""The dispatcher's MQTT edge: one paho-mqtt client driven by the asyncio event loop.

There is no network thread. The socket is registered with the event loop
(``add_reader``); paho parses what arrives in ``loop_read``, on the loop, and
calls ``on_message`` there, so a message reaches the ingest's admission without
a thread hop and paho's parsing no longer competes with the loop for the GIL.
One read callback reads every packet already waiting (up to 64), so a backlog
left while the loop was busy reaches the ingest as one batch. They are parsed
from a buffer filled by one ``recv`` for many packets, QoS 0 PUBLISH packets
(heartbeats, positions) by us, the others by paho
(dispatcher/alerting/mqtt_buffer.py); what is left in it is read at the next
turn of the loop, never left waiting for the next packet.
What paho queues to send (PUBACKs, downlinks, PINGREQs) is written at once
with a non-blocking send, and waits for the socket to become writable
(``add_writer``) only when the kernel buffer is full: sending never blocks the
loop. The one blocking step paho has, opening the connection (TCP connect
and TLS handshake), runs in a worker thread; the socket callbacks it triggers
there are handed to the loop.

Guarantees, the same as with paho's own network loop:

* messages are received with ``manual_ack``: the broker keeps a QoS 1 message
  (and redelivers it to the session) until :meth:`MqttBridge.ack`, which the
  ingest calls only after the alert is committed to the store;
* a persistent session, so the broker queues for us while we are away: by
  default MQTT 3.1.1 with ``clean_session=False`` (the broker's expiry:
  Mosquitto ``persistent_client_expiration``, 14 days in production), or MQTT 5
  with ``clean_start=False`` and a week of session expiry
  (``VIGIE_MQTT__PROTOCOL=5``). 3.1.1 because paho decodes a v5 PUBLISH's
  properties into an object for every message: 50-60 µs a message against
  23 µs, on thousands of heartbeats a second (docs/performance.md); nothing
  here needs v5 (shared subscriptions, manual acks and the ACLs work alike);
* after a lost connection, reconnection with backoff: 1 s, doubling up to
  10 s, back to 1 s after a CONNACK (paho's ``reconnect_delay_set`` is applied
  only by its own loop, so it is done here);
* keepalive: ``loop_misc`` every second sends the PINGREQ and drops a
  connection whose broker went silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from dispatcher.alerting import broker_logs
from dispatcher.alerting.mqtt_buffer import BufferedClient
from dispatcher.fleet.dynsec_commands import RESPONSE_TOPIC
from dispatcher.settings import MqttSettings
from protocol.topics import DEFAULT_SHARE_GROUP, shared_status_filter, shared_uplink_filter

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker queues for us through a week-long outage
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 10.0
MISC_PERIOD_S = 1.0  # keepalive checks (paho's own loop does them at least once a second)
STOP_TIMEOUT_S = 2.0  # for our DISCONNECT to be written at shutdown


class MqttUnavailable(Exception):
    """The broker could not be reached or refused us."""


# Packets read per read callback at most (a flood's share of one loop turn: a few ms).
MAX_PACKETS_PER_READ = 64


def _input_waiting(fd: int) -> bool:
    """Bytes (or an end of stream) wait in the socket ``fd``: a poll with no timeout (any fd number)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class Inbound(NamedTuple):
    """A message received from the broker, not yet acknowledged.

    A named tuple, immutable like the frozen dataclass it was, but built in
    ≈ 0.4 µs instead of ≈ 1.6 (one per heartbeat; seventh heartbeat round).
    """

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: float  # time.monotonic() when paho handed it over


class MqttBridge:
    """One persistent MQTT session (3.1.1 unless configured 5), shared-subscribed to every device uplink.

    ``on_message`` is called on the event loop for every message, from inside the
    socket's read callback: it must be quick and must not block (the ingest's
    :meth:`~dispatcher.alerting.ingest.Ingest.submit` only queues or refuses).
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        on_message: Callable[[Inbound], None],
        share_group: str = DEFAULT_SHARE_GROUP,
        on_control_answer: Callable[[bytes], None] | None = None,
        takes_alerts: bool = True,
    ) -> None:
        self._settings = settings
        # False for a web-only instance (VIGIE_ROLE=web): its session keeps the downlinks and
        # the broker's control answers, and leaves the devices' uplinks to the instances of role all.
        self.takes_alerts = takes_alerts
        self._share_group = settings.share_group or share_group
        self._on_message = on_message
        # The broker's answers to our dynamic-security commands (dispatcher/fleet/broker_control.py).
        self._on_control_answer = on_control_answer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()  # the registered socket was closed
        self._stopping = False
        self._fd: int | None = None  # the socket registered with the loop
        self._writer = False  # waiting for the socket to become writable
        self._reading = False  # inside loop_read, hence maybe inside one of paho's callbacks
        self._flush_due = False
        self._backoff: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client = self._build_client()

    def _build_client(self) -> BufferedClient:
        s = self._settings
        v5 = s.protocol == "5"
        client = BufferedClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,  # 3.1.1: a persistent session (v5: clean_start below)
            manual_ack=True,
        )
        if s.password is not None:
            client.username_pw_set(s.username, s.password.get_secret_value())
        if s.ca_file is not None:
            client.tls_set(
                ca_certs=str(s.ca_file),
                certfile=str(s.cert_file) if s.cert_file else None,
                keyfile=str(s.key_file) if s.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_socket_open = self._socket_opened
        client.on_socket_close = self._socket_closed
        client.on_socket_register_write = self._write_queued
        client.on_socket_unregister_write = self._write_done
        return client

    async def start(self, *, connect_timeout_s: float = 10.0) -> None:
        """Connect (persistent session) and wait for the subscriptions."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        s = self._settings
        try:  # records where to connect; no I/O yet
            if s.protocol == "5":
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = SESSION_EXPIRY_S
                self._client.connect_async(
                    s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=props
                )
            else:  # the session's expiry is the broker's (persistent_client_expiration)
                self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        except (OSError, ValueError) as exc:
            raise MqttUnavailable(broker_logs.START_UNREACHABLE % (s.host, s.port, exc)) from exc
        self._tasks = [
            asyncio.create_task(self._keep_connected(), name="mqtt-connection"),
            asyncio.create_task(self._keepalive(), name="mqtt-keepalive"),
        ]
        try:
            await asyncio.wait_for(self._connected.wait(), connect_timeout_s)
        except TimeoutError:
            await self.stop()
            message = broker_logs.START_NO_CONNACK % (s.host, s.port, connect_timeout_s)
            raise MqttUnavailable(message) from None

    async def stop(self) -> None:
        """Disconnect cleanly (the broker keeps the session) and stop reconnecting."""
        self._stopping = True  # the disconnection that follows is ours, not a fault
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._fd is None:
            return
        self._lost.clear()
        self._client.disconnect()  # queued after any PUBACK still waiting; paho closes once it is written
        try:
            await asyncio.wait_for(self._lost.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning(broker_logs.DISCONNECT_UNWRITTEN, STOP_TIMEOUT_S)
            self._detach()

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected()

    @property
    def socket_reads(self) -> int:
        """Reads of the broker's socket so far, each one giving paho one packet or many (tests, profiling)."""
        return self._client.socket_reads

    def ack(self, message: Inbound) -> None:
        """Release a QoS 1 message: call only once its effects are durable."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Publish (a non-blocking write; the rest when the socket is writable again); paho
        re-sends QoS 1 after a reconnect."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning(broker_logs.PUBLISH_QUEUED, topic, info.rc)

    # -- connection ---------------------------------------------------------------------

    async def _keep_connected(self) -> None:
        """Connect, wait for the connection to be lost, back off, connect again."""
        s = self._settings
        while not self._stopping:
            self._lost.clear()
            try:
                # Blocking in paho (TCP connect, TLS handshake): off the loop.
                await asyncio.to_thread(self._client.reconnect)
            except (OSError, ValueError) as exc:  # refused, unreachable, TLS or certificate failure
                log.warning(broker_logs.UNREACHABLE, s.host, s.port, exc)
            else:
                await self._lost.wait()
            await asyncio.sleep(self._next_delay())

    def _next_delay(self) -> float:
        """1 s, then doubling up to 10 s; :meth:`_handle_connect` starts again at 1 s."""
        self._backoff = RECONNECT_MIN_S if self._backoff is None else min(2 * self._backoff, RECONNECT_MAX_S)
        return self._backoff

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(MISC_PERIOD_S)
            self._client.loop_misc()

    # -- the socket on the event loop ------------------------------------------------------

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` on the loop: now if we are on it, else as soon as it can (worker thread)."""
        loop = self._loop
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        elif loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _socket_opened(self, _c: mqtt.Client, _u: object, sock: Any) -> None:
        self._on_loop(self._attach, sock)

    def _attach(self, sock: Any) -> None:
        current = self._client.socket()
        if current is None or current is not sock or self._loop is None:
            return  # already closed again
        if isinstance(current, socket.socket):  # ssl.SSLSocket too; PUBACKs and downlinks are small
            with contextlib.suppress(OSError):
                current.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay
        self._fd = current.fileno()
        self._loop.add_reader(self._fd, self._readable)
        self._flush()  # the CONNECT paho queued while opening

    def _socket_closed(self, _c: mqtt.Client, _u: object, _sock: Any) -> None:
        # paho calls this just before closing the socket: read error, keepalive, our DISCONNECT.
        self._on_loop(self._detach)

    def _detach(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and self._loop is not None:
            self._loop.remove_reader(fd)
            if self._writer:
                self._loop.remove_writer(fd)
        self._writer = False
        self._lost.set()

    def _readable(self) -> None:
        client = self._client
        self._reading = True
        try:
            more = self._read_waiting(client)
        finally:
            self._reading = False
        if more and self._loop is not None:
            # Packets already read wait in our buffer (or, TLS, decrypted in the SSL object), where
            # the loop's poll does not see them: read them at the next turn, not at the next packet.
            self._loop.call_soon(self._readable)
        if self._flush_due:
            self._flush()

    def _read_waiting(self, client: BufferedClient) -> bool:
        """Read the packets already received, up to ``MAX_PACKETS_PER_READ``, not one per loop turn.

        paho's ``loop_read`` reads one packet. One per turn of a busy loop, a
        backlog would reach the ingest a message or two per batch instead of
        as one group-committed batch. Bounded, so that a flood cannot hold the
        loop: the rest is read at the next turn. True if some of it was already
        read from the socket (the socket's readiness will not say so).
        """
        for _ in range(MAX_PACKETS_PER_READ):
            qos0 = client.take_qos0_publish()  # heartbeats, positions: parsed without paho
            if qos0 is not None:  # a topic that is not UTF-8 (no broker lets one through) is refused later
                self._deliver(qos0[0].decode(errors="replace"), qos0[1], 0, 0)
            elif client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                return False
            if self._fd is None:
                return False  # connection lost: paho closed it (``_detach``)
            if not client.has_unread() and not _input_waiting(self._fd):
                return False
        return client.has_unread()

    def _write_queued(self, _c: mqtt.Client, _u: object, _sock: Any) -> None:
        self._on_loop(self._write_now)

    def _write_now(self) -> None:
        # Written at once, as paho does when it has no network thread, but not from inside one
        # of paho's callbacks (writing may take the lock paho holds around them): what they
        # queue (a refused message's PUBACK, the SUBSCRIBE after a CONNACK) goes when the read ends.
        if self._reading:
            self._flush_due = True
        else:
            self._flush()

    def _flush(self) -> None:
        self._flush_due = False
        if self._fd is None or self._loop is None:
            return
        self._client.loop_write()
        if self._fd is not None and self._client.want_write() and not self._writer:
            self._writer = True  # kernel buffer full: finish when the socket is writable again
            self._loop.add_writer(self._fd, self._client.loop_write)

    def _write_done(self, _c: mqtt.Client, _u: object, _sock: Any) -> None:
        self._on_loop(self._stop_writer)

    def _stop_writer(self) -> None:
        if self._writer and self._fd is not None and self._loop is not None:
            self._loop.remove_writer(self._fd)
        self._writer = False

    # -- paho's callbacks, all on the event loop -----------------------------------------

    def _handle_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if reason.is_failure:
            log.error(broker_logs.REFUSED, reason)
            return
        self._backoff = None
        group = self._share_group
        # A persistent session from before the secret group may still hold the public one,
        # which any device login can join; and one from a life as role all still holds the
        # group's, which would hand a web-only instance its share of the alerts: leave them
        # (a no-op when absent). Whatever the session had queued is still read and handled.
        leave = [shared_uplink_filter(), shared_status_filter()] if group != DEFAULT_SHARE_GROUP else []
        joined = [shared_uplink_filter(group), shared_status_filter(group)]
        if not self.takes_alerts:
            leave += joined
        if leave:
            client.unsubscribe(leave)
        topics = [(t, 1) for t in joined] if self.takes_alerts else []
        if self._on_control_answer is not None:  # sent to us alone, at QoS 0: nothing to acknowledge
            topics.append((RESPONSE_TOPIC, 0))
        if topics:
            client.subscribe(topics)
        if self.takes_alerts:
            log.info(broker_logs.CONNECTED)
        else:
            log.info(broker_logs.CONNECTED_WEB_ONLY)
        self._on_loop(self._connected.set)

    def _handle_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if self._stopping:
            log.info(broker_logs.DISCONNECTED_STOPPING)
        else:
            log.warning(broker_logs.DISCONNECTED, reason)
        self._on_loop(self._connected.clear)

    def _handle_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # no broker lets one through; refused later, as a topic naming no device
            topic = msg._topic.decode(errors="replace")
        self._deliver(topic, msg.payload, msg.mid, msg.qos)

    def _deliver(self, topic: str, payload: bytes | bytearray, mid: int, qos: int) -> None:
        """A message read, by paho or by :meth:`BufferedClient.take_qos0_publish`, to its consumer."""
        if topic == RESPONSE_TOPIC and self._on_control_answer is not None:
            self._answer(payload, mid, qos)
            return
        # ``on_message`` (the ingest's admission) refuses a flood here, before any decoding. A payload
        # sliced by take_qos0_publish is bytes already (no copy); paho's may be a bytearray.
        data = payload if type(payload) is bytes else bytes(payload)
        try:
            self._on_message(Inbound(topic, data, mid, qos, time.monotonic()))
        except Exception:  # a bug: paho would re-raise out of loop_read mid-packet
            log.critical(broker_logs.NOT_ADMITTED, topic, exc_info=True)

    def _answer(self, payload: bytes | bytearray, mid: int, qos: int) -> None:
        assert self._on_control_answer is not None
        try:
            self._on_control_answer(bytes(payload))
        except Exception:  # a bug: never out of loop_read
            log.exception(broker_logs.CONTROL_ANSWER_FAILED)
        if qos > 0:
            self._client.ack(mid, qos)
