"""Sending the notifications the escalation decided on, exactly once.

Rows are created 'pending' in the same transaction as the decision; this
module claims them ('sending', with a lease), calls the provider concurrently
and records the provider's SID or the failure. Only failures the provider
*provably* did not act on (refused connection, HTTP 5xx/429 without a SID)
are retried; a timeout after the request left is recorded as 'unknown' and
never re-sent, so a responder never gets the same SMS twice.

Between two attempts of a provable failure the row is parked as 'retry_wait'
(still leased): if the process dies while waiting, recovery knows nothing is
in flight and puts it back to 'pending', so it is sent after the restart
instead of being written off as 'unknown'.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from dispatcher import texts
from dispatcher.domain import AlertContext
from dispatcher.events import EventBus
from dispatcher.metrics import Metrics
from dispatcher.notifier import ProviderResult
from dispatcher.store.base import NotificationRecord, Store

log = logging.getLogger(__name__)
# twilio's HTTP clients log every request and response at INFO, about ten
# lines each: at a few hundred requests per second that is most of the log
# volume and a measurable share of the event loop's CPU. The notifier already
# logs one line per request with its outcome.
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
logging.getLogger("twilio.async_http_client").setLevel(logging.WARNING)


class Notifier(Protocol):
    """What delivery needs from an SMS/voice provider (TwilioNotifier fills it)."""

    def gather_action_url(self, reference: str) -> str: ...
    async def send_sms(self, to: str, body: str, *, reference: str) -> ProviderResult: ...
    async def place_call(self, to: str, twiml: str, *, reference: str) -> ProviderResult: ...


ContextLoader = Callable[[str], Awaitable[AlertContext]]
FailureHandler = Callable[[NotificationRecord], Awaitable[None]]


LEASE_S = 30.0
MAX_TRACKED_FIRST_REQUESTS = 10_000
# Provider SIDs this instance recorded, for its status callbacks: ~6 per alert,
# 10,000 covers the callbacks of the last few minutes at 100 alerts/s.
MAX_REMEMBERED_SIDS = 10_000
SPAWN_CHUNK = 8  # sends spawned between two yields to the event loop


def _provably_failed(result: ProviderResult) -> bool:
    """Safe to try again: the provider did not create anything."""
    return result.outcome == "failed" and result.retryable


def _first_of_each_alert_first(claimed: list[NotificationRecord]) -> list[NotificationRecord]:
    """Claimed rows in sending order: every alert's first notification, then every second one...

    Tasks start in spawn order and each request costs the event loop about a
    millisecond to build: after a burst of 1,000 alerts, sending alert by
    alert would start the last alert's first request after ~3,000 others.
    Round-robin, someone is being reached for every alert three times sooner;
    within an alert the order (the planner's) is kept.
    """
    rank: dict[str, int] = {}
    keyed = []
    for position, n in enumerate(claimed):
        rank[n.alert_id] = rank.get(n.alert_id, -1) + 1
        keyed.append((rank[n.alert_id], position, n))
    return [n for *_, n in sorted(keyed, key=lambda k: (k[0], k[1]))]


class Delivery:
    """Claims pending notifications and sends them, all concurrently."""

    def __init__(
        self,
        *,
        store: Store,
        notifier: Notifier,
        metrics: Metrics,
        bus: EventBus,
        instance_id: str,
        context_of: ContextLoader,
        on_failed: FailureHandler,
        retry_attempts: int = 3,
        retry_base_s: float = 0.5,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._metrics = metrics
        self._bus = bus
        self._owner = instance_id
        self._context_of = context_of
        self._on_failed = on_failed
        self._retry_attempts = retry_attempts
        self._retry_base_s = retry_base_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._drain_wanted = False
        self._drainer: asyncio.Task[None] | None = None
        self._outcomes: list[tuple[int, str, str | None, str | None, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None
        # alert id -> monotonic MQTT receipt, for the "first_request" stage metric.
        self._first_pending: OrderedDict[str, float] = OrderedDict()
        self._sent: OrderedDict[str, NotificationRecord] = OrderedDict()

    def expect_first_request(self, alert_id: str, received_at: float) -> None:
        """Remember when ``alert_id`` arrived, to time its first provider request."""
        self._first_pending[alert_id] = received_at
        while len(self._first_pending) > MAX_TRACKED_FIRST_REQUESTS:  # alerts notifying nobody
            self._first_pending.popitem(last=False)

    def sent_with_sid(self, sid: str) -> NotificationRecord | None:
        """The notification this instance sent and stored under provider ``sid``, if recent.

        Spares the store a read per status callback. The row's identity (alert,
        contact, channel, tier, round) never changes; its status here is the
        one at sending time. None: ask the store (another instance sent it, or
        it is older).
        """
        return self._sent.get(sid)

    def kick(self) -> None:
        """Send whatever is pending now, without waiting for it.

        Kicks coalesce: a burst of 1,000 alerts makes one or two claim
        transactions, not 1,000 (each would queue behind the store's write lock).
        """
        self._drain_wanted = True
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.ensure_future(self._drain_while_wanted())
            self._tasks.add(self._drainer)
            self._drainer.add_done_callback(self._tasks.discard)

    async def record(
        self, notification_id: int, *, status: str, provider_sid: str | None = None, error: str | None = None
    ) -> None:
        """Store a notification's outcome durably; outcomes arriving together share one commit.

        At 100 alerts/s there are hundreds of outcomes and provider callbacks
        per second: one fsync'd transaction each would hold the store's write
        lock for most of the time and make new alerts queue behind them.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outcomes.append((notification_id, status, provider_sid, error, future))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.ensure_future(self._record_while_queued())
        await future

    async def _record_while_queued(self) -> None:
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            try:
                await self._store.record_notifications([(i, st, sid, err) for i, st, sid, err, _ in batch])
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for *_, future in batch:
                if not future.done():
                    future.set_result(None)

    async def _drain_while_wanted(self) -> None:
        while self._drain_wanted:
            self._drain_wanted = False  # a kick during the claim asks for one more pass
            await self.drain()

    async def drain(self) -> None:
        """Claim every pending notification and send them concurrently."""
        try:
            claimed = await self._store.claim_notifications(self._owner, now=time.time())
        except Exception:
            log.exception("could not claim pending notifications; they stay pending for the next pass")
            return
        for i, notification in enumerate(_first_of_each_alert_first(claimed), start=1):
            self._spawn(self._send(notification))
            if i % SPAWN_CHUNK == 0:
                # Let the sends just spawned start, and whatever else is ready (an
                # ingest commit coming back, its MQTT acks) run before spawning
                # more: otherwise a burst's next batch of alerts waits behind
                # thousands of requests being built.
                await asyncio.sleep(0)

    async def wait_idle(self) -> None:
        """Wait until every send started so far has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, n: NotificationRecord) -> None:
        try:
            result = await self._attempt_with_retries(n)
            await self._record(n, result)
        except Exception:
            log.exception(
                "notification %s (%s to %s) crashed; left 'sending' for recovery", n.id, n.channel, n.phone
            )

    async def _attempt_with_retries(self, n: NotificationRecord) -> ProviderResult:
        """Attempt, and re-attempt only what provably did not reach the provider."""
        attempt = 1
        while True:
            result = await self._attempt(n)
            if not _provably_failed(result) or attempt >= self._retry_attempts:
                return result
            self._metrics.provider_errors.labels(n.channel, "retried").inc()
            # Durable marker first: a crash during the wait must not turn a
            # provably unsent notification into an 'unknown' one (never re-sent).
            await self._mark(n, "retry_wait", f"{result.error_code}: {result.error_message}")
            await asyncio.sleep(min(4.0, self._retry_base_s * 2 ** (attempt - 1)))
            await self._mark(n, "sending", None)
            attempt += 1

    async def _mark(self, n: NotificationRecord, status: str, error: str | None) -> None:
        await self._store.mark_notification(
            n.id, status=status, owner=self._owner, lease_until=time.time() + LEASE_S, error=error
        )

    async def _attempt(self, n: NotificationRecord) -> ProviderResult:
        ctx = await self._context_of(n.alert_id)
        reference = f"{n.alert_id}/{n.id}"
        received_at = self._first_pending.pop(n.alert_id, None)
        if received_at is not None:  # the alert's first provider request starts now
            self._metrics.stage_seconds.labels("first_request").observe(time.monotonic() - received_at)
        # What to say was decided with the row (purpose, position, duress, who acted):
        # the words are right whichever instance sends them, whatever the cache holds.
        facts = texts.Facts(n.purpose, n.tier, n.round, n.duress, n.actor)
        if n.channel == "voice":
            twiml = texts.twiml_for(ctx, facts, self._notifier.gather_action_url(reference))
            return await self._notifier.place_call(n.phone, twiml, reference=reference)
        return await self._notifier.send_sms(n.phone, texts.sms_for(ctx, facts), reference=reference)

    async def _record(self, n: NotificationRecord, result: ProviderResult) -> None:
        try:
            await self._record_outcome(n, result)
        finally:
            self._bus.publish("notification", alert_id=n.alert_id, id=n.id, outcome=result.outcome)

    def _remember_sid(self, sid: str | None, n: NotificationRecord) -> None:
        # Only once the SID is durable: a callback answered from memory is then
        # recorded after it, never overwritten by the 'queued' of the send.
        if sid is None:
            return
        self._sent[sid] = n
        while len(self._sent) > MAX_REMEMBERED_SIDS:
            self._sent.popitem(last=False)

    async def _record_outcome(self, n: NotificationRecord, result: ProviderResult) -> None:
        if result.accepted:
            self._metrics.notifications.labels(n.channel, n.purpose).inc()
            await self.record(n.id, status=result.status or "queued", provider_sid=result.sid)
            self._remember_sid(result.sid, n)
            return
        self._metrics.provider_errors.labels(n.channel, result.outcome).inc()
        error = f"{result.error_code}: {result.error_message}"
        if result.outcome == "unknown":
            # The provider may have acted: never re-send; escalation timers carry on.
            log.error("notification %s to %s: outcome unknown (%s); not re-sent", n.id, n.phone, error)
            await self.record(n.id, status="unknown", error=error)
            return
        log.error("notification %s (%s to %s) failed: %s", n.id, n.channel, n.phone, error)
        await self.record(n.id, status="failed", error=error)
        await self._on_failed(n)
