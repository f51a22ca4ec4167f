"""Sending the notifications the escalation decided on, exactly once.

Rows are created 'pending' in the same transaction as the decision; this
module claims them ('sending', with a lease), calls the provider concurrently
and records the provider's SID or the failure. Only failures the provider
*provably* did not act on (refused connection, HTTP 5xx/429 without a SID)
are retried; a timeout after the request left is recorded as 'unknown' and
never re-sent, so a responder never gets the same SMS twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_exponential

from dispatcher import texts
from dispatcher.domain import AlertContext
from dispatcher.events import EventBus
from dispatcher.metrics import Metrics
from dispatcher.notifier import ProviderResult
from dispatcher.store.base import NotificationRecord, Store

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """What delivery needs from an SMS/voice provider (TwilioNotifier fills it)."""

    def gather_action_url(self, reference: str) -> str: ...
    async def send_sms(self, to: str, body: str, *, reference: str) -> ProviderResult: ...
    async def place_call(self, to: str, twiml: str, *, reference: str) -> ProviderResult: ...


ContextLoader = Callable[[str], Awaitable[AlertContext]]
AckerName = Callable[[str], Awaitable[str]]
FailureHandler = Callable[[NotificationRecord], Awaitable[None]]


def _provably_failed(result: ProviderResult) -> bool:
    """Safe to try again: the provider did not create anything."""
    return result.outcome == "failed" and result.retryable


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
        acker_of: AckerName,
        on_failed: FailureHandler,
        retry_attempts: int = 3,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._metrics = metrics
        self._bus = bus
        self._owner = instance_id
        self._context_of = context_of
        self._acker_of = acker_of
        self._on_failed = on_failed
        self._retry_attempts = retry_attempts
        self._tasks: set[asyncio.Task[None]] = set()

    def kick(self) -> None:
        """Send whatever is pending now, without waiting for it."""
        self._spawn(self.drain())

    async def drain(self) -> None:
        """Claim every pending notification and send them concurrently."""
        try:
            claimed = await self._store.claim_notifications(self._owner, now=time.time())
        except Exception:
            log.exception("could not claim pending notifications; they stay pending for the next pass")
            return
        for notification in claimed:
            self._spawn(self._send(notification))

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
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retry_attempts),
            wait=wait_exponential(multiplier=0.5, max=4),
            retry=retry_if_result(_provably_failed),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        result: ProviderResult = await retrying(self._attempt, n)
        return result

    async def _attempt(self, n: NotificationRecord) -> ProviderResult:
        ctx = await self._context_of(n.alert_id)
        reference = f"{n.alert_id}/{n.id}"
        if n.channel == "voice":
            twiml = texts.alert_twiml(ctx, self._notifier.gather_action_url(reference))
            return await self._notifier.place_call(n.phone, twiml, reference=reference)
        return await self._notifier.send_sms(n.phone, await self._sms_body(n, ctx), reference=reference)

    async def _sms_body(self, n: NotificationRecord, ctx: AlertContext) -> str:
        match n.purpose:
            case "false_alarm":
                return texts.false_alarm_sms(ctx)
            case "duress_notice":
                return texts.duress_notice_sms(ctx)
            case "ack_notice":
                return texts.ack_notice_sms(ctx, await self._acker_of(n.alert_id))
            case "test":
                return texts.test_sms(ctx)
            case _:
                return texts.alert_sms(ctx)

    async def _record(self, n: NotificationRecord, result: ProviderResult) -> None:
        try:
            await self._record_outcome(n, result)
        finally:
            self._bus.publish("notification", alert_id=n.alert_id, id=n.id, outcome=result.outcome)

    async def _record_outcome(self, n: NotificationRecord, result: ProviderResult) -> None:
        if result.accepted:
            self._metrics.notifications.labels(n.channel, n.purpose).inc()
            await self._store.record_notification(
                n.id, status=result.status or "queued", provider_sid=result.sid
            )
            return
        self._metrics.provider_errors.labels(n.channel, result.outcome).inc()
        error = f"{result.error_code}: {result.error_message}"
        if result.outcome == "unknown":
            # The provider may have acted: never re-send; escalation timers carry on.
            log.error("notification %s to %s: outcome unknown (%s); not re-sent", n.id, n.phone, error)
            await self._store.record_notification(n.id, status="unknown", error=error)
            return
        log.error("notification %s (%s to %s) failed: %s", n.id, n.channel, n.phone, error)
        await self._store.record_notification(n.id, status="failed", error=error)
        await self._on_failed(n)
