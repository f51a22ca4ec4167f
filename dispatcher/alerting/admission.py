"""Per-device admission in front of the ingest: one device cannot delay another.

Every uplink arrives on the dispatcher's single MQTT session, and the broker's
ACL guarantees that the device id in its topic is the sender's login. Before
this module, one shared FIFO held them all: a device publishing thousands of
bad-signature messages (no key needed) put every other device's alert behind
its flood (alert→'received' went from 0.05 s to 25 s, the queue to 527 MB).

Now, as each message is read off the socket, before any decoding:

* a message larger than the protocol allows is refused at once (nothing of it
  is queued);
* each device has a token bucket (``burst``, then ``rate_per_s``) and a small
  queue of its own (``per_device``); beyond either, the message is refused;
* all queues together hold at most ``max_total`` messages;
* a copy of a QoS 1 message already waiting in the device's queue is coalesced
  with it (acknowledged, not queued, not charged): after a dispatcher outage
  the broker delivers every re-send a device made meanwhile, and they must not
  use up the device's budget nor its queue. QoS 0 messages (heartbeats,
  positions) are neither queued by the broker for an absent session nor
  acknowledged, so they are not digested for it (a keyed blake2b per
  heartbeat, seventh heartbeat round): a copy is charged and queued like any
  message, and the ingest refuses it as a replay, counted;
* a re-send of a message the ingest vouched for (an alert it stored, see
  :meth:`Admission.vouch`) is not charged to the bucket either, so that
  store-and-forward never trips the limit: a device re-sends its alert until
  'received', whatever its rate, and the queue bound still holds it.

The ingest takes its batches round-robin over the devices that have something
waiting, one message per device per turn, so a device's alert waits for at
most one message of each other device, whatever their backlog. A refused QoS 1
message is acknowledged by the caller (the broker must not redeliver it; a
genuine alert is re-sent by its device until 'received').

Heartbeats are not urgent (health is decided every second, on intervals of
30 s): an offer with ``urgent=False`` does not wake the event loop; the first
one after the loop went idle arms a timer of ``linger_s``, so heartbeats are
taken in batches of tens instead of one wake-up each (a wake-up costs more CPU
than the fast path's whole work on a heartbeat). Any urgent message (alert,
cancel, test, status) still wakes the loop at once, and takes the waiting
heartbeats along in its batch.

Thread safety: :meth:`offer` runs on the event loop (the MQTT socket is read
there, see dispatcher/alerting/mqtt.py) but may be called from any thread; :meth:`take`
runs on the loop. One lock guards both, held for a few dict/deque operations.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass
from hashlib import blake2b
from secrets import token_bytes

from dispatcher.alerting.mqtt import Inbound
from dispatcher.alerting.ratelimit import BucketPolicy, RateLimiter
from dispatcher.settings import IngestSettings
from protocol.codec import RejectReason
from protocol.messages import MAX_PAYLOAD_BYTES

#: Queue key of messages whose topic names no device (refused later as topic_mismatch).
NO_DEVICE = ""
#: What :meth:`Admission.offer` says of a copy of a message already waiting: acknowledge it, nothing else.
COALESCED = "coalesced"
#: Vouched payloads remembered per device (a device has a handful of alerts in flight at most).
VOUCHED_PER_DEVICE = 16


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """Bounds of the admission stage (see :class:`dispatcher.settings.IngestSettings`)."""

    per_device: int = 64
    max_total: int = 20_000
    burst: float = 50.0
    rate_per_s: float = 5.0
    linger_s: float = 0.02


def admission_policy(settings: IngestSettings) -> AdmissionPolicy:
    """The policy the ``VIGIE_INGEST__*`` settings describe."""
    return AdmissionPolicy(
        per_device=settings.device_queue,
        max_total=settings.max_queued,
        burst=settings.device_burst,
        rate_per_s=settings.device_rate_per_s,
        linger_s=settings.heartbeat_linger_s,
    )


class Admission:
    """Bounded per-device queues served round-robin."""

    def __init__(self, policy: AdmissionPolicy | None = None) -> None:
        self.policy = policy or AdmissionPolicy()
        self._buckets = RateLimiter(BucketPolicy(self.policy.burst, self.policy.rate_per_s))
        self._queues: dict[str, deque[tuple[bytes | None, Inbound]]] = {}  # (digest if QoS 1, message)
        self._vouched: dict[str, deque[bytes]] = {}
        self._digest_key = token_bytes(32)  # keyed: which payloads collide is not predictable from outside
        self._turns: deque[str] = deque()  # devices with something waiting, in serving order
        self._total = 0
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._woken = False  # the loop was woken (or is taking): nothing to do to wake it
        self._armed = False  # a linger timer is on its way for messages that are not urgent

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that :meth:`take` runs on (call from it)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    @property
    def queued(self) -> int:
        return self._total

    def offer(self, message: Inbound, device: str, *, urgent: bool = True) -> RejectReason | str | None:
        """Queue ``message`` for ``device`` (:func:`device_of` its topic): None when queued,
        :data:`COALESCED` for a copy of a waiting message, else why it is refused (any thread).

        ``urgent=False`` (heartbeats): taken within ``linger_s``, without a wake-up of its own."""
        if len(message.payload) > MAX_PAYLOAD_BYTES:
            return RejectReason.TOO_LARGE
        key = self._digest(message.payload) if message.qos else None  # QoS 0: no copy to coalesce
        with self._lock:
            queue = self._queues.get(device)
            if queue is not None and key is not None and any(waiting == key for waiting, _ in queue):
                return COALESCED
            full = queue is not None and len(queue) >= self.policy.per_device
            if full or self._total >= self.policy.max_total:
                return RejectReason.QUEUE_FULL
            if (key is None or key not in self._vouched.get(device, ())) and not self._buckets.allow(device):
                return RejectReason.RATE_LIMITED
            if queue is None:
                queue = self._queues[device] = deque()
                self._turns.append(device)
            queue.append((key, message))
            self._total += 1
            wake = urgent and not self._woken
            arm = not urgent and not self._woken and not self._armed
            self._woken = self._woken or urgent
            self._armed = self._armed or arm
        if wake:
            self._wake()
        elif arm:
            self._arm()
        return None

    def vouch(self, device: str, payload: bytes) -> None:
        """``payload`` is a genuine message of ``device`` (e.g. an alert the ingest stored): its re-sends
        are not charged to the device's bucket."""
        key = self._digest(payload)
        with self._lock:
            vouched = self._vouched.get(device)
            if vouched is None:
                vouched = self._vouched[device] = deque(maxlen=VOUCHED_PER_DEVICE)
            if key not in vouched:
                vouched.append(key)

    def _digest(self, payload: bytes) -> bytes:
        return blake2b(payload, digest_size=16, key=self._digest_key).digest()

    async def take(self, max_batch: int) -> list[Inbound]:
        """Wait for messages; return up to ``max_batch``, one per device per turn."""
        while True:
            with self._lock:
                batch = self._take_locked(max_batch)
                if not batch:
                    self._woken = self._armed = False
                    self._ready.clear()
            if batch:
                return batch
            await self._ready.wait()

    def _take_locked(self, max_batch: int) -> list[Inbound]:
        batch: list[Inbound] = []
        while self._turns and len(batch) < max_batch:
            device = self._turns.popleft()
            queue = self._queues[device]
            batch.append(queue.popleft()[1])
            if queue:
                self._turns.append(device)
            else:
                del self._queues[device]  # idle devices cost no memory
        self._total -= len(batch)
        return batch

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            self._ready.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._ready.set)

    def _arm(self) -> None:
        loop = self._loop
        if loop is None or self.policy.linger_s <= 0:
            self._wake()
        elif threading.get_ident() == self._loop_thread:
            loop.call_later(self.policy.linger_s, self._ready.set)
        elif not loop.is_closed():
            # One cross-thread call per linger period; a late timer only costs an empty take.
            loop.call_soon_threadsafe(loop.call_later, self.policy.linger_s, self._ready.set)


def device_of(topic: str) -> str:
    """The device a topic names (the broker ACL makes it the sender), or NO_DEVICE.

    Only splits: it runs for every message of a flood, before any decoding. The
    ingest validates the whole topic later (``parse_topic``).
    """
    parts = topic.split("/", 4)
    if len(parts) < 4 or parts[0] != "vigie" or parts[1] != "v1" or parts[2] != "dev":
        return NO_DEVICE
    return parts[3]
