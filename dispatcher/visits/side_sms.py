"""The visits' own SMS, sent from a durable outbox beside the visit timers' pass.

Two texts belong to a visit and to no alert: the check ("Tout va bien ?") and
the text to the deployment's 24/7 fallback contact when a visit's alert could
not be raised. No escalation follows them, so delivery's notification rows do
not carry them; the visit runner writes each one into the outbox
(:class:`~dispatcher.store.base.SideTextRecord`) in the same transaction as the
timer step that decided it, leased to this instance, and hands it here once
committed. Awaited inside the timers' pass, a provider that hangs would hold the
pass for its request timeout per SMS, and with it the next due visit's own alert
(invariant 4). Each one is therefore a tracked background task:

* marked 'sending' (lease renewed) before each request, 'pending' again when
  the provider provably did not take it (refused connection, 5xx, 429), and
  tried again with jittered exponential backoff until its window ``not_after``
  (a check is worth nothing after its deadline);
* a request whose fate is unknown (it left, no answer) is not repeated: the
  outcome is logged for the operator, as is any refusal about the number;
* asked before each request whether it is still wanted (a check once her visit
  was closed or extended is not: it would ask about a visit she already ended);
* deleted from the outbox once the provider answered for good;
* :meth:`SideSms.stop` gives the sends in flight a short grace, then cancels
  them: their rows stay, and :meth:`SideSms.resume` takes them up again at the
  next start, or on another instance once the lease ran out. A row left
  'pending' is sent; a row left 'sending' may have reached the provider before
  the crash, so it is logged as of unknown fate and not repeated (the check's
  deadline still ends in the alert; the fallback contact's text leaves the
  console alarm), never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_delay, wait_random_exponential

from dispatcher.alerting import notification_logs
from dispatcher.alerting.notifier import ProviderResult
from dispatcher.store.base import SideTextRecord

log = logging.getLogger(__name__)

#: How long a row stays leased to the instance sending it without a word from it: above the
#: longest backoff (60 s) plus a request timeout, so that a live sender never loses its row.
LEASE_S = 90.0


class SmsSender(Protocol):
    """What this needs from the provider (TwilioNotifier fills it)."""

    async def send_sms(self, to: str, body: str, *, reference: str) -> ProviderResult: ...


class Outbox(Protocol):
    """What this needs from the store (both stores fill it)."""

    async def mark_side_text(self, key: str, status: str, *, owner: str, lease_until: float) -> None: ...
    async def drop_side_text(self, key: str) -> None: ...


def _provably_unsent(result: ProviderResult) -> bool:
    return result.outcome == "failed" and result.retryable


#: Whether a text is still worth sending (asked before each request).
Wanted = Callable[[SideTextRecord], Awaitable[bool]]
#: error_code of a text given up because it was no longer wanted.
NOT_WANTED = "not-wanted"


async def _always(_: SideTextRecord) -> bool:
    return True


class SideSms:
    """Sends the outbox's texts in the background, retried while provably unsent."""

    def __init__(
        self,
        notifier: SmsSender,
        outbox: Outbox,
        *,
        owner: str,
        wanted: Wanted = _always,
        retry_base_s: float = 2.0,
        retry_max_s: float = 60.0,
    ) -> None:
        self._notifier = notifier
        self._outbox = outbox
        self._owner = owner
        self._wanted = wanted
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._tasks: set[asyncio.Task[ProviderResult]] = set()

    def send(self, text: SideTextRecord) -> asyncio.Task[ProviderResult]:
        """Start sending ``text`` (in the outbox, leased to this instance); return at once."""
        task = asyncio.create_task(self._send(text), name=text.reference)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def resume(self, rows: list[SideTextRecord], *, now: float) -> None:
        """Take up rows claimed from the outbox that no live sender holds any more."""
        for row in rows:
            if row.not_after <= now:
                log.warning(notification_logs.VISIT_TEXT_EXPIRED, row.what, row.reference)
                await self._settle(row)
            elif row.status == "sending":
                log.error(notification_logs.VISIT_TEXT_FATE_UNKNOWN, row.what, row.reference)
                await self._settle(row)
            else:
                log.warning(notification_logs.VISIT_TEXT_RESUMED, row.what, row.reference)
                self.send(row)

    async def wait_idle(self) -> None:
        """Return once every send started so far has its last answer (or gave up)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self, grace_s: float = 2.0) -> None:
        """Let the sends in flight finish for ``grace_s``, then cancel the rest (their rows stay)."""
        if not self._tasks:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for task in list(self._tasks):
            log.warning(notification_logs.VISIT_TEXT_ABANDONED, task.get_name())
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _send(self, text: SideTextRecord) -> ProviderResult:
        try:
            result = await self._with_retries(text)
        except Exception as exc:  # a bug here must be loud, not a silently lost text
            log.exception(notification_logs.VISIT_TEXT_CRASHED, text.what)
            result = ProviderResult("failed", error_code="crash", error_message=str(exc))
        if result.error_code == NOT_WANTED:
            log.info(notification_logs.VISIT_TEXT_NOT_WANTED, text.what, text.reference)
            await self._settle(text)
            return result
        log.log(
            logging.INFO if result.accepted else logging.ERROR,
            notification_logs.VISIT_TEXT_OUTCOME,
            text.what,
            notification_logs.outcome(result.outcome),
            result.sid or result.error_code,
        )
        await self._settle(text)
        return result

    async def _with_retries(self, text: SideTextRecord) -> ProviderResult:
        async def attempt() -> ProviderResult:
            if not await self._still_wanted(text):
                return ProviderResult("failed", error_code=NOT_WANTED)
            await self._record(text, "sending")  # from here on, a crash leaves its fate unknown
            result = await self._notifier.send_sms(text.phone, text.body, reference=text.reference)
            if _provably_unsent(result):
                await self._record(text, "pending")
            return result

        async def before_sleep(state: RetryCallState) -> None:
            log.warning(notification_logs.VISIT_TEXT_RETRY, text.what, state.attempt_number)

        retrying = AsyncRetrying(
            retry=retry_if_result(_provably_unsent),
            stop=stop_after_delay(max(0.0, text.not_after - time.time())),
            # Never less than the base: a provider that just refused is not asked again
            # within milliseconds, and a text spends its waits marked 'pending'.
            wait=wait_random_exponential(
                multiplier=self._retry_base_s, max=self._retry_max_s, min=self._retry_base_s
            ),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            before_sleep=before_sleep,
        )
        result: ProviderResult = await retrying(attempt)
        return result

    async def _still_wanted(self, text: SideTextRecord) -> bool:
        """Whether to send; when that cannot be told (the store unreachable), it is sent."""
        try:
            return await self._wanted(text)
        except Exception:
            log.exception(notification_logs.VISIT_TEXT_WANTED_UNKNOWN, text.what, text.reference)
            return True

    async def _record(self, text: SideTextRecord, status: str) -> None:
        lease_until = time.time() + LEASE_S
        await self._bookkeeping(
            text, self._outbox.mark_side_text(text.key, status, owner=self._owner, lease_until=lease_until)
        )

    async def _settle(self, text: SideTextRecord) -> None:
        await self._bookkeeping(text, self._outbox.drop_side_text(text.key))

    async def _bookkeeping(self, text: SideTextRecord, write: Awaitable[None]) -> None:
        """The outbox's writes serve a crash to come; the text itself matters more: a store
        that cannot record them is logged and the send goes on."""
        try:
            await write
        except Exception:
            log.exception(notification_logs.VISIT_TEXT_UNRECORDED, text.what, text.reference)
