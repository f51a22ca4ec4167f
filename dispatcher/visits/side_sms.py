"""The visits' own SMS, sent beside the visit timers' pass rather than inside it.

Two texts belong to a visit and to no alert: the check ("Tout va bien ?") and
the text to the deployment's 24/7 fallback contact when a visit's alert could
not be raised. No escalation follows them, so delivery's durable rows do not
carry them. Awaited inside the timers' pass, a provider that hangs would hold
the pass for its request timeout per SMS, and with it the next due visit's own
alert (invariant 4). Each one is therefore a tracked background task:

* tried again while the provider provably did not take it (refused
  connection, 5xx, 429), with jittered exponential backoff, for at most
  ``window_s`` (a check is worth nothing after its deadline);
* a request whose fate is unknown (it left, no answer) is not repeated: the
  outcome is logged for the operator, as is any refusal about the number;
* :meth:`SideSms.stop` gives the sends in flight a short grace, then cancels
  them; the visit's durable state does not depend on them (a check never
  sent still ends in the alert at its deadline, a fallback text never sent
  leaves the console alarm standing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

from tenacity import AsyncRetrying, retry_if_result, stop_after_delay, wait_random_exponential

from dispatcher.alerting import notification_logs
from dispatcher.alerting.notifier import ProviderResult

log = logging.getLogger(__name__)


class SmsSender(Protocol):
    """What this needs from the provider (TwilioNotifier fills it)."""

    async def send_sms(self, to: str, body: str, *, reference: str) -> ProviderResult: ...


@dataclass(frozen=True, kw_only=True)
class SideText:
    """One SMS to send: to whom, what, under which reference, and what the log calls it."""

    to: str
    body: str
    reference: str
    what: str  # "visite v-1 : SMS de vérification", for the log line of its outcome
    window_s: float  # retried at most this long after the first attempt


def _provably_unsent(result: ProviderResult) -> bool:
    return result.outcome == "failed" and result.retryable


class SideSms:
    """Sends :class:`SideText` in the background, retried while provably unsent."""

    def __init__(self, notifier: SmsSender, *, retry_base_s: float = 2.0, retry_max_s: float = 60.0) -> None:
        self._notifier = notifier
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._tasks: set[asyncio.Task[ProviderResult]] = set()

    def send(self, text: SideText) -> asyncio.Task[ProviderResult]:
        """Start sending ``text`` and return at once; the task's result is the last answer."""
        task = asyncio.create_task(self._send(text), name=text.reference)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait_idle(self) -> None:
        """Return once every send started so far has its last answer (or gave up)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self, grace_s: float = 2.0) -> None:
        """Let the sends in flight finish for ``grace_s``, then cancel the rest."""
        if not self._tasks:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for task in list(self._tasks):
            log.error(notification_logs.VISIT_TEXT_ABANDONED, task.get_name())
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _send(self, text: SideText) -> ProviderResult:
        try:
            result = await self._with_retries(text)
        except Exception as exc:  # a bug here must be loud, not a silently lost text
            log.exception(notification_logs.VISIT_TEXT_CRASHED, text.what)
            return ProviderResult("failed", error_code="crash", error_message=str(exc))
        log.log(
            logging.INFO if result.accepted else logging.ERROR,
            notification_logs.VISIT_TEXT_OUTCOME,
            text.what,
            notification_logs.outcome(result.outcome),
            result.sid or result.error_code,
        )
        return result

    async def _with_retries(self, text: SideText) -> ProviderResult:
        retrying = AsyncRetrying(
            retry=retry_if_result(_provably_unsent),
            stop=stop_after_delay(text.window_s),
            wait=wait_random_exponential(multiplier=self._retry_base_s, max=self._retry_max_s),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            before_sleep=lambda state: log.warning(
                notification_logs.VISIT_TEXT_RETRY, text.what, state.attempt_number
            ),
        )
        result: ProviderResult = await retrying(
            self._notifier.send_sms, text.to, text.body, reference=text.reference
        )
        return result
