"""Sending the notifications the escalation decided on, exactly once.

Rows are created 'pending' in the same transaction as the decision; this
module claims them ('sending', with a lease), calls the provider concurrently
and records the provider's SID or the failure.

What the provider says about a *contact* (invalid number, undelivered,
no-answer...) is a failure handed to the escalation. A provider that cannot be
reached is not: connection refused, a timeout before the request left, HTTP
5xx or 429 are retried with backoff for as long as the notification is wanted
(an alert's while the alert is open and unacknowledged, a notice's for
``notice_retry_s``), one prober at a time while the provider is down
(:mod:`dispatcher.alerting.outage`), and operators get one alarm per outage.

A request that left without an answer (timeout, reset) is recorded 'unknown'
and handed to the reconciliation (:mod:`dispatcher.alerting.reconciler`), which looks
it up in the provider's own records: adopted if found, sent again if not.

Between two attempts the row is parked as 'retry_wait' (still leased): if
the process dies while waiting, recovery knows nothing is in flight and puts
it back to 'pending', so it is sent after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from dispatcher.alerting import notification_logs as nlog
from dispatcher.alerting import texts
from dispatcher.alerting.notifier import ProviderResult
from dispatcher.alerting.outage import ProviderGate, backoff_s
from dispatcher.alerting.recent_sends import RecentSends
from dispatcher.alerting.responder_links import ResponderLinks, needs_link
from dispatcher.domain import AlertContext
from dispatcher.events import EventBus
from dispatcher.metrics import Metrics
from dispatcher.store.base import Lease, NotFound, NotificationRecord, Store

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
    async def send_sms(
        self, to: str, body: str, *, reference: str, on_connected: Callable[[], None] | None = None
    ) -> ProviderResult: ...
    async def place_call(
        self, to: str, twiml: str, *, reference: str, on_connected: Callable[[], None] | None = None
    ) -> ProviderResult: ...


ContextLoader = Callable[[str], Awaitable[AlertContext]]
FailureHandler = Callable[[NotificationRecord], Awaitable[None]]
OutageHandler = Callable[[bool, str], Awaitable[None]]
WaitingHandler = Callable[[str], Awaitable[None]]


LEASE_S = 30.0
MAX_TRACKED_FIRST_REQUESTS = 10_000
SPAWN_CHUNK = 8  # sends spawned between two yields to the event loop
#: States in which an alert still needs its alert notifications.
ESCALATING_STATES = frozenset({"notifying", "duress"})
NOT_WANTED = "non envoyé : l'alerte est close ou prise en charge (fournisseur injoignable jusque-là)"


def notification_reference(alert_id: str, notification_id: int) -> str:
    """Our reference of a notification's request, echoed by the provider's callbacks."""
    return f"{alert_id}/{notification_id}"


def parse_notification_reference(reference: str) -> tuple[str, int] | None:
    """The alert id and notification id a reference names; None for any other reference
    (a visit's own SMS, say)."""
    alert_id, _, number = reference.rpartition("/")
    if not alert_id or not number.isdigit():
        return None
    return alert_id, int(number)


def _provably_failed(result: ProviderResult) -> bool:
    """Safe to try again: the provider did not create anything."""
    return result.outcome == "failed" and result.retryable


def _provider_unreachable(result: ProviderResult) -> bool:
    """The provider did not answer about the contact: down, overloaded, or silent."""
    return _provably_failed(result) or result.outcome == "unknown"


def _first_of_each_alert_first(claimed: Sequence[NotificationRecord]) -> list[NotificationRecord]:
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
        on_outage: OutageHandler | None = None,
        on_waiting: WaitingHandler | None = None,
        retry_base_s: float = 0.5,
        retry_max_s: float = 15.0,
        notice_retry_s: float = 3600.0,
        links: ResponderLinks | None = None,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._metrics = metrics
        self._bus = bus
        self._owner = instance_id
        self._context_of = context_of
        self._on_failed = on_failed
        self._on_outage = on_outage
        self._on_waiting = on_waiting
        self._outage_alerts: set[str] = set()  # alerts shown as waiting during this outage
        self._retry_base_s = retry_base_s
        self._retry_max_s = min(retry_max_s, LEASE_S / 2)  # a wait never outlives the row's lease
        self._notice_retry_s = notice_retry_s
        self._links = links
        self.gate = ProviderGate()
        self._tasks: set[asyncio.Task[None]] = set()
        self._drain_wanted = False
        self._drainer: asyncio.Task[None] | None = None
        self._outcomes: list[tuple[int, str, str | None, str | None, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None
        # alert id -> monotonic MQTT receipt, for the "first_request" stage metric.
        self._first_pending: OrderedDict[str, float] = OrderedDict()
        self._sent = RecentSends()  # by provider SID, for the status callbacks

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
            claimed = await self._store.claim_notifications(self._owner, now=time.time(), lease_s=LEASE_S)
        except Exception:
            log.exception(nlog.CLAIM_FAILED)
            return
        await self._spawn_in_order(_first_of_each_alert_first(claimed))

    def lease(self) -> Lease:
        """A claim for this instance from now, as :meth:`drain` takes one (for rows created claimed)."""
        return Lease(self._owner, time.time() + LEASE_S)

    async def send_claimed(self, claimed: Sequence[NotificationRecord]) -> None:
        """Send rows already claimed under :meth:`lease` (created so with their alert).

        The alert path's hand-off: no claim transaction (a write-lock wait and
        a thread round trip) between an alert's commit and its first request.
        Returns once every alert's first request has been written (for up to
        ``SPAWN_CHUNK`` alerts; the other sends are started, not awaited): the
        caller's PUBACKs and downlinks, and the alerts' other requests, go after.
        Two turns of the loop: one builds each request, one more writes its
        body — before Python 3.12 aiohttp writes a request's headers and body
        from a task of its own, queued behind everything already ready (the
        other sends being built, the rest of the ingest's batch: ≈ 1 ms at 10
        alerts/s, measured in docs/performance.md).
        """
        ordered = _first_of_each_alert_first(claimed)
        first = min(len({n.alert_id for n in claimed}), SPAWN_CHUNK)
        for notification in ordered[:first]:
            self._spawn(self._send(notification))
        if first:
            await asyncio.sleep(0)  # the first requests are built; aiohttp queues their writes
            await asyncio.sleep(0)  # ... which run now
        rest = ordered[first:]
        for notification in rest[:SPAWN_CHUNK]:  # they start at the loop's next turn
            self._spawn(self._send(notification))
        if len(rest) > SPAWN_CHUNK:
            self._spawn(self._spawn_in_order(rest[SPAWN_CHUNK:]))

    async def _spawn_in_order(self, ordered: Sequence[NotificationRecord]) -> None:
        for i, notification in enumerate(ordered, start=1):
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

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let sends in flight finish for ``grace_s``, then cancel the rest (shutdown).

        A send still retrying through an outage would otherwise hold the stop
        for as long as the outage: cancelled while parked it stays
        'retry_wait' (re-queued at the next start), cancelled mid-request it
        stays 'sending' (reconciled with the provider at the next start).
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait_idle(), grace_s)
        for task in list(self._tasks):
            task.cancel()
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
            log.exception(nlog.SEND_CRASHED, nlog.channel(n.channel), n.id, n.phone)

    async def _attempt_with_retries(self, n: NotificationRecord) -> ProviderResult:
        """Attempt until the provider answers about the contact, or the notification is not wanted.

        Only what provably did not reach the provider is re-attempted here; a
        request whose fate is unknown goes to the reconciliation instead.
        """
        attempt = 1
        started = time.time()
        try:
            while True:
                if not await self._wait_for_turn(n, started):
                    return ProviderResult("failed", error_code="not-wanted", error_message=NOT_WANTED)
                result, left_at = await self._attempt(n)
                if not _provider_unreachable(result):
                    await self._provider_reached()
                    return result
                await self._provider_unreachable(result, left_at)
                if not _provably_failed(result):
                    return result  # 'unknown': it may have left; reconciliation decides
                self.gate.hold(n)  # in the line that leaves in priority order when the provider is back
                self._metrics.provider_errors.labels(n.channel, "retried").inc()
                if not await self._still_wanted(n, started):
                    return ProviderResult("failed", error_code="not-wanted", error_message=NOT_WANTED)
                # Durable marker first: a crash during the wait must not turn a
                # provably unsent notification into an 'unknown' one.
                await self._park(n, f"{result.error_code}: {result.error_message}")
                await self.gate.pause(backoff_s(attempt, base_s=self._retry_base_s, cap_s=self._retry_max_s))
                await self._mark(n, "sending", None)
                attempt += 1
        finally:
            self.gate.leave(n)

    async def _wait_for_turn(self, n: NotificationRecord, started: float) -> bool:
        """Wait behind the outage's prober, at most a third of the lease; False if no longer wanted.

        Past that wait the request probes too: a failure peculiar to the
        prober's own request (one number the provider chokes on) must not hold
        every other notification back.
        """
        if not self.gate.down:
            return True
        self.gate.hold(n)
        await self._show_waiting(n.alert_id)
        if await self.gate.turn(n, timeout_s=LEASE_S / 3):
            # Released when the provider came back: renew the lease on the way. Every
            # released request does, in release order, behind the prober's own mark: the
            # store keeps that order, so the most urgent requests leave first.
            await self._mark(n, "sending", None)
            return True
        if not await self._still_wanted(n, started):
            return False
        await self._mark(n, "sending", None)  # renews the lease before the attempt
        return True

    async def _park(self, n: NotificationRecord, error: str) -> None:
        """'retry_wait' with a fresh lease; the alert is shown as waiting for the provider (once)."""
        await self._mark(n, "retry_wait", error)
        await self._show_waiting(n.alert_id)

    async def _show_waiting(self, alert_id: str) -> None:
        """Once per alert and outage: the console shows the alert as waiting for the provider."""
        if alert_id not in self._outage_alerts:
            self._outage_alerts.add(alert_id)
            if self._on_waiting is not None:
                await self._on_waiting(alert_id)

    async def _still_wanted(self, n: NotificationRecord, started: float) -> bool:
        """An alert notification while its alert escalates; a notice for ``notice_retry_s``."""
        if n.purpose != "alert":
            return time.time() - started < self._notice_retry_s
        try:
            record = await self._store.get_alert(n.alert_id)
        except NotFound:
            return False
        return record.state in ESCALATING_STATES

    async def _provider_unreachable(self, result: ProviderResult, left_at: float) -> None:
        if self.gate.unreachable(left_at) and self._on_outage is not None:
            await self._on_outage(True, f"{result.error_code}: {result.error_message}")

    async def _provider_reached(self) -> None:
        """After every answer: the end of this instance's outage, if any, and in any case the
        handler is told (another instance's alarm, relayed here, may be the one to clear)."""
        if self.gate.reached():
            log.warning(nlog.PROVIDER_BACK)
            self._outage_alerts.clear()
        if self._on_outage is not None:
            await self._on_outage(False, "")

    async def _mark(self, n: NotificationRecord, status: str, error: str | None) -> None:
        await self._store.mark_notification(
            n.id, status=status, owner=self._owner, lease_until=time.time() + LEASE_S, error=error
        )

    async def _attempt(self, n: NotificationRecord) -> tuple[ProviderResult, float]:
        """The provider's answer, and when the request left (``time.monotonic()``)."""
        ctx = await self._context_of(n.alert_id)
        reference = notification_reference(n.alert_id, n.id)
        received_at = self._first_pending.pop(n.alert_id, None)
        if received_at is not None:  # the alert's first provider request starts now
            self._metrics.stage_seconds.labels("first_request").observe(time.monotonic() - received_at)
        # What to say was decided with the row (purpose, position, duress, who acted):
        # the words are right whichever instance sends them, whatever the cache holds.
        facts = texts.Facts(n.purpose, n.tier, n.round, n.duress, n.actor, await self._link_for(n))
        request: Callable[..., Awaitable[ProviderResult]]
        if n.channel == "voice":
            twiml = texts.twiml_for(ctx, facts, self._notifier.gather_action_url(reference))
            request = functools.partial(self._notifier.place_call, n.phone, twiml, reference=reference)
        else:
            body = texts.sms_for(ctx, facts)
            request = functools.partial(self._notifier.send_sms, n.phone, body, reference=reference)
        await self.gate.departure(n)  # after an outage, the more urgent requests leave first
        left_at = time.monotonic()
        # The next in line goes once this one holds its connection: started together, they
        # would race for connections and the provider could receive the less urgent first.
        try:
            return await request(on_connected=functools.partial(self.gate.departed, n)), left_at
        finally:
            self.gate.answered(n)  # while the provider is down, the next probe may go

    async def _link_for(self, n: NotificationRecord) -> str | None:
        """The contact's responder link, durable before the SMS is written; None: the SMS goes without."""
        if self._links is None or not needs_link(n.channel, n.purpose):
            return None
        try:
            return await self._links.url_for(n.alert_id, n.contact_id)
        except Exception:  # never hold an alert SMS back for its link
            log.exception(nlog.NO_RESPONDER_LINK, n.id)
            return None

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
        self._sent.remember(sid, n)

    async def _record_outcome(self, n: NotificationRecord, result: ProviderResult) -> None:
        if result.accepted:
            self._metrics.notifications.labels(n.channel, n.purpose).inc()
            await self.record(n.id, status=result.status or "queued", provider_sid=result.sid)
            self._remember_sid(result.sid, n)
            return
        self._metrics.provider_errors.labels(n.channel, result.outcome).inc()
        error = f"{result.error_code}: {result.error_message}"
        if result.outcome == "unknown":
            # The provider may have acted: not re-sent blindly; the reconciliation
            # looks it up in the provider's records first. Escalation timers carry on.
            log.error(nlog.OUTCOME_UNKNOWN, nlog.channel(n.channel), n.id, n.phone, error)
            await self.record(n.id, status="unknown", error=error)
            return
        if result.error_code == "not-wanted":
            log.warning(nlog.NOT_WANTED, nlog.channel(n.channel), n.id, n.phone, error)
            await self.record(n.id, status="canceled", error=error)
            return
        log.error(nlog.FAILED, nlog.channel(n.channel), n.id, n.phone, error)
        await self.record(n.id, status="failed", error=error)
        await self._on_failed(n)
