"""The hot path: MQTT message → verify → persist (group commit) → PUBACK → notify.

Messages that arrive together are committed in one transaction (one fsync for
a burst). Nothing here waits on the network except the store commit: location
and routing read memory, notifications are started as tasks. A message is
acknowledged on MQTT only once its effects are durable, so a store outage
leaves it with the broker instead of losing it.

Heartbeats take a path of their own (:meth:`Ingest.process_heartbeats`), after
the batch's other messages: verified over their received bytes and decoded by
:mod:`protocol.fastbeat`, they touch only memory (the device's health), and
anything that path does not accept goes through the full one, which refuses it
with its counted reason. A heartbeat's replay check is not the sequence window
but "above the highest heartbeat sequence number known" (kept with the health,
and checked again by the store's merge against every instance's heartbeats);
a cancel's sequence number is also admitted by the store, atomically, so a
cancel replayed to another instance is refused there (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from dispatcher.alerting import alert_logs
from dispatcher.alerting.admission import COALESCED, Admission, device_of
from dispatcher.alerting.engine import Engine, PlannedAlert
from dispatcher.alerting.mqtt import Inbound, MqttBridge
from dispatcher.alerting.positions import PositionRecorder
from dispatcher.alerting.ratelimit import RateLimiter
from dispatcher.alerting.rejectlog import RejectionLog
from dispatcher.directory.snapshot import DirectoryCache
from dispatcher.domain import DownlinkKind
from dispatcher.events import EventBus
from dispatcher.fleet.health import HealthMonitor
from dispatcher.fleet.quarantine import Quarantine
from dispatcher.metrics import Metrics
from dispatcher.store.base import NewAlert, NotificationRecord, Store, StoreUnavailable
from protocol.codec import Rejected, RejectReason, decode_status, decode_uplink, encode_downlink
from protocol.fastbeat import decode_heartbeat
from protocol.messages import Alert, Cancel, Heartbeat, Position, TestAlert
from protocol.replay import (
    ALERT_TIME_WINDOW,
    HEARTBEAT_TIME_WINDOW,
    POSITION_TIME_WINDOW,
    ReplayVerdict,
    SequenceWindow,
)
from protocol.topics import ROOT, TopicError, downlink_topic, parse_topic

log = logging.getLogger(__name__)
T = TypeVar("T")

_REFUSED = {
    RejectReason.TOO_LARGE: "larger than the protocol allows",
    RejectReason.RATE_LIMITED: "over the device's message rate (flooding)",
    RejectReason.QUEUE_FULL: "the device's queue is full (flooding)",
}
HEARTBEAT_LEAF = "/up/heartbeat"
_NO_WINDOW = SequenceWindow()


@dataclass
class _Batch:
    """What one pass over the inbox decided, before the commit."""

    new_alerts: list[tuple[Inbound, NewAlert, SequenceWindow, PlannedAlert]]
    duplicates: list[tuple[Inbound, str, str]]  # (message, device, alert id)
    cancels: list[tuple[Inbound, Cancel]]
    done: list[Inbound]  # nothing durable to wait for: ack right away
    rejected: int = 0
    # The new alerts' first notifications, claimed by their insert (None: left 'pending').
    claimed: list[NotificationRecord] | None = None


class Ingest:
    """Consumes the MQTT inbox; also the engine's way to send downlinks."""

    def __init__(
        self,
        *,
        store: Store,
        cache: DirectoryCache,
        health: HealthMonitor,
        metrics: Metrics,
        bus: EventBus,
        max_batch: int = 256,
        retry_delay_s: float = 0.5,
        rate_limiter: RateLimiter | None = None,
        admission: Admission | None = None,
        rejections: RejectionLog | None = None,
        quarantine: Quarantine | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._health = health
        self._metrics = metrics
        self._bus = bus
        self._max_batch = max_batch
        self._retry_delay_s = retry_delay_s
        # Alerts, tests and cancels only: heartbeats and positions are QoS 0 and cheap
        # (positions must not spend the tokens of her next alert or cancel).
        self._limiter = rate_limiter or RateLimiter()
        self._background: set[asyncio.Task[None]] = set()
        # Per-device bounded queues, served round-robin: one device cannot delay another.
        self.admission = admission or Admission()
        # Rejections are counted each, but logged and stored once per device and reason per interval.
        self.rejections = rejections or RejectionLog()
        # A device refused far beyond any genuine one is cut off at the broker (fleet/quarantine.py).
        self.quarantine = quarantine
        # Live positions of open alerts: checked and stored in their own task (alerting/positions.py).
        self.positions = PositionRecorder(store, bus, self._refuse_later, self.send_downlink)
        self._refused: dict[RejectReason, Any] = {}  # metric children, looked up once (flood path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._acked: set[int] = set()  # mids acknowledged by the batch being processed
        self.windows: dict[str, SequenceWindow] = {}
        self._changed_windows: set[str] = set()  # since the last changed_windows()
        self._heartbeats = metrics.ingested.labels("heartbeat")
        self.engine: Engine | None = None
        self.bridge: MqttBridge | None = None

    def attach(self, *, engine: Engine, bridge: MqttBridge) -> None:
        self.engine = engine
        self.bridge = bridge

    async def load_windows(self) -> None:
        self.windows = await self._store.replay_windows()

    def changed_windows(self) -> dict[str, SequenceWindow]:
        """The replay windows that changed since the last call (to persist them; a failed save
        hands them back with :meth:`unsaved_windows`)."""
        changed, self._changed_windows = self._changed_windows, set()
        return {d: self.windows[d] for d in changed}

    def unsaved_windows(self, windows: dict[str, SequenceWindow]) -> None:
        """Windows whose save failed: returned by the next :meth:`changed_windows`."""
        self._changed_windows.update(windows)

    def submit(self, message: Inbound) -> None:
        """Called for every MQTT message, on the event loop as paho reads it: queued for its device, or
        refused now."""
        device = device_of(message.topic)
        reason = self.admission.offer(message, device, urgent=not message.topic.endswith(HEARTBEAT_LEAF))
        if reason is None:
            return
        if reason == COALESCED:  # a copy of a message already waiting: it will be answered
            if self.bridge is not None:
                self.bridge.ack(message)
            return
        assert isinstance(reason, RejectReason)
        counter = self._refused.get(reason)
        if counter is None:  # created on first use: /metrics lists only reasons that happened
            counter = self._refused[reason] = self._metrics.rejected.labels(reason.value)
        counter.inc()
        first = self.rejections.note(device or None, message.topic, reason.value, _REFUSED[reason])
        if self.bridge is not None:
            self.bridge.ack(message)  # a genuine alert is re-sent by its device until 'received'
        if self.quarantine is not None and device:
            self.quarantine.refused(device)
        if first and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._store_rejections)

    async def run(self) -> None:
        """Process admitted messages forever, a batch at a time; no message can end this loop."""
        self._loop = asyncio.get_running_loop()
        self.admission.bind(self._loop)
        summaries = asyncio.create_task(self._store_rejections_forever())
        positions = asyncio.create_task(self.positions.run())
        try:
            while True:
                batch = await self.admission.take(self._max_batch)
                heartbeats = [m for m in batch if m.topic.endswith(HEARTBEAT_LEAF)]
                others = [m for m in batch if not m.topic.endswith(HEARTBEAT_LEAF)] if heartbeats else batch
                # Alerts first: the heartbeats taken along never delay their commit.
                for part, handle in ((others, self.process), (heartbeats, self.process_heartbeats)):
                    if not part:
                        continue
                    try:
                        await handle(part)
                    except Exception:  # a bug after classification: lose this work, never the ingest
                        log.critical(alert_logs.BATCH_FAILED, len(part), exc_info=True)
                        self._release_unacked(part)
        finally:
            summaries.cancel()
            positions.cancel()

    def _release_unacked(self, messages: Sequence[Inbound]) -> None:
        """Ack what the failed batch left unacknowledged, or the broker's in-flight window fills up.

        Safe for alerts: devices re-send until the ``received`` downlink, not until PUBACK.
        """
        assert self.bridge is not None
        for message in messages:
            if message.mid not in self._acked:
                self._metrics.rejected.labels(RejectReason.INTERNAL_ERROR.value).inc()
                self.bridge.ack(message)

    def _ack(self, message: Inbound) -> None:
        assert self.bridge is not None
        self._acked.add(message.mid)
        self.bridge.ack(message)

    async def process(self, messages: Sequence[Inbound]) -> None:
        batch = _Batch([], [], [], [])
        self._acked.clear()
        for message in messages:
            await self._classify(message, batch)
        await self._commit_until_durable(batch)
        # Durable now: the alerts' first requests leave before their PUBACKs, downlinks and
        # escalation steps (≈ 0.5 ms of the loop at 10 alerts/s, docs/performance.md).
        await self._send_first_tiers(batch)
        self._acknowledge(batch)
        await self._start_escalations(batch)
        await self._apply_cancels(batch)
        self._store_rejections()
        if batch.rejected:  # one event per batch (rows and log lines are sampled, see RejectionLog)
            self._bus.publish("rejected", count=batch.rejected)

    async def process_heartbeats(self, messages: Sequence[Inbound]) -> None:
        """Heartbeats: the fast path for each, the full path (:meth:`process`) for the rest."""
        self._acked.clear()
        snapshot = self._cache.current
        now = time.time()
        now_ms = int(now * 1000)
        rest: list[Inbound] = []
        for message in messages:
            if not self._fast_heartbeat(message, snapshot.keys, now, now_ms):
                rest.append(message)
        accepted = len(messages) - len(rest)
        if accepted:
            self._heartbeats.inc(accepted)  # one metric update per batch
        if rest:
            await self.process(rest)

    def _fast_heartbeat(self, message: Inbound, keys: dict[str, bytes], now: float, now_ms: int) -> bool:
        """Apply a heartbeat that needs no more than memory; False leaves it to the full path."""
        device = device_of(message.topic)
        key = keys.get(device)  # active devices only, like key_for
        if key is None or message.topic != f"{ROOT}/{device}{HEARTBEAT_LEAF}":
            return False
        heartbeat = decode_heartbeat(message.payload, device, key)
        if heartbeat is None:
            return False
        if HEARTBEAT_TIME_WINDOW.check(heartbeat.ts, now_ms) is not ReplayVerdict.FRESH:
            return False
        if not self._health.on_heartbeat(heartbeat, now):
            return False  # a replay: the full path refuses it with its reason
        if message.qos:
            self._ack(message)
        return True

    # -- classification (memory only, but for suspected re-sends) ---------------------

    async def _classify(self, message: Inbound, batch: _Batch) -> None:
        try:
            await self._classify_checked(message, batch)
        except Exception as exc:  # a bug must cost this one message, never the ingest task
            log.exception(alert_logs.MESSAGE_FAILED, message.topic)
            reason = Rejected(RejectReason.INTERNAL_ERROR, type(exc).__name__)
            self._reject(batch, message, device_of(message.topic) or None, reason)

    async def _classify_checked(self, message: Inbound, batch: _Batch) -> None:
        try:
            topic = parse_topic(message.topic)
        except TopicError as exc:
            self._reject(batch, message, None, Rejected(RejectReason.TOPIC_MISMATCH, str(exc)))
            return
        try:
            if topic.channel == "status":
                status = decode_status(message.payload, topic.device_id)
                self._health.on_status(topic.device_id, status.state, time.time())
                batch.done.append(message)
                return
            uplink = decode_uplink(message.payload, topic, self._cache.current.key_for)
            await self._accept(message, uplink, batch)
        except Rejected as rejected:
            self._reject(batch, message, topic.device_id, rejected)

    async def _accept(
        self, message: Inbound, uplink: Alert | TestAlert | Cancel | Heartbeat | Position, batch: _Batch
    ) -> None:
        if isinstance(uplink, Heartbeat):
            self._accept_heartbeat(message, uplink, batch)
            return
        window = self.windows.get(uplink.device, _NO_WINDOW)
        if isinstance(uplink, Alert | TestAlert) and await self._is_resend(uplink, window, batch):
            self.admission.vouch(uplink.device, message.payload)
            self._metrics.duplicates.inc()
            batch.duplicates.append((message, uplink.device, uplink.id))
            return
        self._check_fresh(uplink, window)
        if not isinstance(uplink, Heartbeat | Position) and not self._limiter.allow(uplink.device):
            # The seq is NOT admitted: a real device re-sends the same alert until
            # 'received', so it is accepted once the bucket has refilled.
            raise Rejected(RejectReason.RATE_LIMITED, alert_logs.OVER_RATE % uplink.type)
        if window.is_new_counter(uplink.seq):
            log.info(
                alert_logs.NEW_COUNTER,
                uplink.device,
                uplink.seq,
                window.high,
            )
        self.windows[uplink.device] = window = window.admit(uplink.seq)
        self._changed_windows.add(uplink.device)
        self._metrics.ingested.labels(uplink.type).inc()
        match uplink:
            case Position():  # acknowledged now (QoS 0 anyway); its alert is checked off the hot path
                self.positions.offer(uplink, message.topic)
                batch.done.append(message)
            case Cancel():
                batch.cancels.append((message, uplink))
            case Alert() | TestAlert():
                self.admission.vouch(uplink.device, message.payload)  # its re-sends are never limited
                alert = _new_alert(uplink, message)
                assert self.engine is not None
                batch.new_alerts.append((message, alert, window, self.engine.plan(alert)))

    def _accept_heartbeat(self, message: Inbound, uplink: Heartbeat, batch: _Batch) -> None:
        """A heartbeat the fast path left here (a location, another layout, or to be refused)."""
        self._check_time(uplink)
        if not self._health.on_heartbeat(uplink, time.time()):
            raise Rejected(RejectReason.REPLAY, alert_logs.HEARTBEAT_SEQ_OLD % uplink.seq)
        self._metrics.ingested.labels(uplink.type).inc()
        if uplink.location is not None:  # the last known position, for an alert without a fix
            self._cache.note_fix(uplink.device, uplink.location)
        batch.done.append(message)

    async def _is_resend(self, uplink: Alert | TestAlert, window: SequenceWindow, batch: _Batch) -> bool:
        """Same id as an alert already stored (or in this batch): the device did not get 'received'.

        Only a sequence number already used can be a re-send, so the common
        path never reads the store.
        """
        if window.is_fresh(uplink.seq):
            return False
        if any(a.id == uplink.id for _, a, _, _ in batch.new_alerts):
            return True
        try:
            return await self._store.alert_exists(uplink.id)
        except StoreUnavailable:
            return False  # then rejected as a replay; the device re-sends later

    def _check_fresh(self, uplink: Alert | TestAlert | Cancel | Position, window: SequenceWindow) -> None:
        if not window.is_fresh(uplink.seq):
            raise Rejected(RejectReason.REPLAY, alert_logs.SEQ_USED % uplink.seq)
        self._check_time(uplink)

    @staticmethod
    def _check_time(uplink: Alert | TestAlert | Cancel | Heartbeat | Position) -> None:
        time_window = _TIME_WINDOWS.get(type(uplink), ALERT_TIME_WINDOW)
        verdict = time_window.check(uplink.ts, int(time.time() * 1000))
        if verdict is ReplayVerdict.STALE:
            raise Rejected(RejectReason.STALE, alert_logs.TS_OLD % uplink.ts)
        if verdict is ReplayVerdict.FUTURE:
            raise Rejected(RejectReason.FUTURE_TS, alert_logs.TS_AHEAD % uplink.ts)

    def _reject(self, batch: _Batch, message: Inbound, device_id: str | None, rejected: Rejected) -> None:
        self._metrics.rejected.labels(rejected.reason.value).inc()
        self.rejections.note(device_id, message.topic, rejected.reason.value, rejected.detail)
        batch.rejected += 1
        batch.done.append(message)  # acknowledged so the broker does not redeliver it forever

    def _refuse_later(self, device_id: str, topic: str, rejected: Rejected) -> None:
        """A message refused after its acknowledgement (a position whose alert is not open)."""
        self._metrics.rejected.labels(rejected.reason.value).inc()
        self.rejections.note(device_id, topic, rejected.reason.value, rejected.detail)
        self._bus.publish("rejected", count=1)

    # -- durability, then acknowledgement ----------------------------------------------

    async def _commit_until_durable(self, batch: _Batch) -> None:
        """Commit new alerts; while the store fails, keep them unacknowledged and retry."""
        if not batch.new_alerts:
            return
        rows = [
            (replace(alert, kind=planned.kind) if planned.kind else alert, window, planned.transition)
            for _, alert, window, planned in batch.new_alerts
        ]  # planning may store a test as a drill (the convention consented)
        delivery = self.engine.delivery if self.engine is not None else None
        while True:
            try:
                # Claimed in the same transaction: the sends start without a claim round trip.
                lease = delivery.lease() if delivery is not None else None
                outcomes = await self._store.insert_alerts(rows, lease=lease)
                break
            except StoreUnavailable as exc:
                self._metrics.store_failures.inc()
                log.critical(alert_logs.STORE_DOWN_ALERTS, len(rows), exc)
                await asyncio.sleep(self._retry_delay_s)
        for (message, alert, _, _), outcome in zip(batch.new_alerts, outcomes, strict=True):
            self._metrics.stage_seconds.labels("persisted").observe(time.monotonic() - message.received_at)
            if not outcome.created:  # stored by another instance meanwhile
                batch.duplicates.append((message, alert.device_id, alert.id))
        batch.new_alerts = [entry for entry, o in zip(batch.new_alerts, outcomes, strict=True) if o.created]
        if lease is not None:
            batch.claimed = [n for o in outcomes for n in o.claimed]

    def _acknowledge(self, batch: _Batch) -> None:
        for message, *_ in batch.new_alerts:
            self._ack(message)
            self._metrics.stage_seconds.labels("acked").observe(time.monotonic() - message.received_at)
        for message in batch.done:
            self._ack(message)
        answered: set[str] = set()
        for message, device, alert_id in batch.duplicates:
            self._ack(message)
            if alert_id not in answered:  # one 'received' answers every copy in the batch
                answered.add(alert_id)
                self.send_downlink(device, "received", alert_id)

    async def _send_first_tiers(self, batch: _Batch) -> None:
        """Hand the committed alerts' claimed first tiers to delivery, every alert's first request first.

        Called once the alerts are durable and before anything else is done for
        them: the first provider request is the alert's most urgent effect.
        """
        assert self.engine is not None
        delivery = self.engine.delivery
        if delivery is None:
            return
        for message, alert, _, _ in batch.new_alerts:
            delivery.expect_first_request(alert.id, message.received_at)
        if batch.claimed:
            self.engine.links_committed([planned for *_, planned in batch.new_alerts])
            await delivery.send_claimed(batch.claimed)

    async def _start_escalations(self, batch: _Batch) -> None:
        assert self.engine is not None
        for _, alert, _, planned in batch.new_alerts:
            self.send_downlink(alert.device_id, "received", alert.id)
            await self.engine.after_commit(planned, claimed=batch.claimed is not None)

    async def _apply_cancels(self, batch: _Batch) -> None:
        assert self.engine is not None and self.bridge is not None
        engine = self.engine
        for message, cancel in batch.cancels:
            # Checked against the store too: another instance may have taken this very cancel (a replay).
            if not await self._until_stored(partial(self._store.admit_sequence, cancel.device, cancel.seq)):
                refused = Rejected(RejectReason.REPLAY, alert_logs.CANCEL_SEQ_USED % cancel.seq)
                self._refuse_later(cancel.device, message.topic, refused)
                self._ack(message)
                continue
            await self._until_stored(
                partial(engine.cancel, cancel.device, cancel.alert_id, cancel.pin, cancel.id)
            )
            self._ack(message)
            self.send_downlink(cancel.device, "received", cancel.id)

    async def _until_stored(self, work: Callable[[], Awaitable[T]]) -> T:
        """``work()``, retried while the store is unavailable (the cancel stays unacknowledged meanwhile)."""
        while True:
            try:
                return await work()
            except StoreUnavailable as exc:
                log.critical(alert_logs.STORE_DOWN_CANCEL, exc)
                await asyncio.sleep(self._retry_delay_s)

    def _store_rejections(self) -> None:
        """Store what the rejection log says is due, off the hot path (one more fsync)."""
        if not self.rejections.due():
            return
        rows = self.rejections.drain()
        if rows:
            task = asyncio.create_task(self._record_rejections(rows))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _store_rejections_forever(self) -> None:
        """The per-interval summaries must be stored even when no message comes to trigger it."""
        while True:
            await asyncio.sleep(1.0)
            self._store_rejections()

    async def _record_rejections(self, rows: list[tuple[str | None, str, str, str]]) -> None:
        try:
            await self._store.record_rejections(rows)
        except StoreUnavailable:
            log.exception(alert_logs.REJECTIONS_NOT_STORED, len(rows))
        for device_id, _, reason, _ in rows:
            self._bus.publish("rejected", device_id=device_id, reason=reason)

    # -- downlinks ------------------------------------------------------------------------

    def send_downlink(self, device_id: str, kind: DownlinkKind, ref: str) -> None:
        """Sign and publish feedback for one device (engine's DownlinkSender)."""
        key = self._cache.current.any_key_for(device_id)
        if key is None or self.bridge is None:
            log.error(alert_logs.DOWNLINK_IMPOSSIBLE, kind, device_id)
            return
        _, payload = encode_downlink(
            kind=kind, device_id=device_id, ref=ref, ts_ms=int(time.time() * 1000), key=key
        )
        self.bridge.publish(downlink_topic(device_id), payload, qos=1)


_TIME_WINDOWS = {Heartbeat: HEARTBEAT_TIME_WINDOW, Position: POSITION_TIME_WINDOW}


def _new_alert(uplink: Alert | TestAlert, message: Inbound) -> NewAlert:
    return NewAlert(
        id=uplink.id,
        device_id=uplink.device,
        kind=uplink.type,
        seq=uplink.seq,
        device_ts=datetime.fromtimestamp(uplink.ts / 1000, UTC),
        received_at=datetime.now(UTC),
        gesture=uplink.gesture,
        fix=uplink.location.model_dump() if uplink.location else None,
        raw=message.payload,
    )
