"""The reconciliation's I/O shell: reads rows and provider records, applies :mod:`.reconcile`.

Runs on every instance every ``reconcile_interval_s``. Every write is a
compare-and-set on the row's status (:meth:`Store.settle_notification`), so
two instances reconciling the same row settle it once, and a status callback
landing meanwhile wins over the lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from dispatcher.alerting import notification_logs as nlog
from dispatcher.alerting import reconcile as rc
from dispatcher.alerting.notifier import ProviderUnavailable
from dispatcher.events import EventBus
from dispatcher.store.base import AlreadyExists, NotificationRecord, ReconcileRow, Store

log = logging.getLogger(__name__)

FAILED_STATUSES = frozenset({"failed", "undelivered", "no-answer", "busy", "canceled"})
RESENT = "introuvable chez le fournisseur après un envoi incertain : renvoyée"
RESENT_AMBIGUOUS = "envoi incertain, impossible à distinguer d'un autre vers ce numéro : renvoyée"


class ProviderRecords(Protocol):
    """What the reconciliation reads from the provider (TwilioNotifier fills it)."""

    async def records_to(self, channel: str, to: str, *, limit: int = 50) -> list[rc.ProviderRecord]: ...
    async def record(self, channel: str, sid: str) -> rc.ProviderRecord | None: ...


class Reconciler:
    """Settles 'unknown' rows and stuck provider statuses against the provider's records."""

    def __init__(
        self,
        *,
        store: Store,
        provider: ProviderRecords,
        bus: EventBus,
        on_failed: Callable[[NotificationRecord], Awaitable[None]],
        kick: Callable[[], None],
        settle_s: float,
        stuck_after_s: float,
        interval_s: float,
    ) -> None:
        self._store = store
        self._provider = provider
        self._bus = bus
        self._on_failed = on_failed
        self._kick = kick
        self._settle_s = settle_s
        self._stuck_after_s = stuck_after_s
        self._interval_s = interval_s

    async def run(self) -> None:
        """Reconcile forever, one pass every ``interval_s``."""
        while True:
            try:
                await self.reconcile_once()
            except Exception:
                log.exception(nlog.RECONCILE_PASS_FAILED, self._interval_s)
            await asyncio.sleep(self._interval_s)

    async def reconcile_once(self) -> int:
        """One pass; returns how many rows it settled."""
        await self._release_abandoned()
        now = time.time()
        stuck_before = datetime.fromtimestamp(now - self._stuck_after_s, UTC)
        settled = 0
        seen = _PassCache()
        for row in await self._store.notifications_to_reconcile(stuck_before=stuck_before):
            try:
                decision = await self._decide(row, now, seen)
            except ProviderUnavailable as exc:
                log.warning(nlog.RECONCILE_PAUSED, exc)
                break
            settled += await self._apply(row, decision)
            if isinstance(decision, rc.Adopt):
                seen.owners[decision.sid] = row.notification.id
            await asyncio.sleep(0)  # a long pass must not hold the alert path back
        if settled:
            self._kick()
        return settled

    async def _release_abandoned(self) -> None:
        """Rows a dead instance left mid-send: 'retry_wait' was provably unsent, 'sending' is uncertain."""
        for n in await self._store.abandoned_notifications(time.time(), None):
            target = "pending" if n.status == "retry_wait" else "unknown"
            if await self._store.settle_notification(
                n.id, expected=n.status, status=target, error=f"{n.error or ''} (instance disparue)".strip()
            ):
                log.warning(nlog.ABANDONED, nlog.channel(n.channel), n.id, n.status, target)

    async def _decide(self, row: ReconcileRow, now: float, seen: _PassCache) -> rc.Decision:
        uncertain = _uncertain(row)
        if uncertain.provider_sid is not None:
            return rc.decide_stuck(
                uncertain, await self._provider.record(uncertain.channel, uncertain.provider_sid)
            )
        if now - uncertain.updated_at < self._settle_s:
            return rc.Wait("settling")  # spare the provider a lookup whose answer would not count
        key = (uncertain.channel, uncertain.phone)
        if key not in seen.records:  # one list request per number and pass, however many rows
            seen.records[key] = await self._provider.records_to(uncertain.channel, uncertain.phone)
        records = seen.records[key]
        # Only records that could be this row's are looked up in the store.
        earliest = uncertain.created_at - rc.CLOCK_SKEW_S
        recent = [r.sid for r in records if r.created_at >= earliest]
        disowned = await self._store.disowned_provider_records(recent)
        taken = frozenset(
            [
                sid
                for sid in recent
                if sid in disowned or await self._owner(sid, seen) not in (None, uncertain.id)
            ]
        )
        in_doubt = await self._store.notifications_in_doubt(row.notification.channel, uncertain.phone)
        rivals = len([i for i in in_doubt if i != uncertain.id])
        return rc.decide_lost(
            uncertain, records, taken_sids=taken, rivals=rivals, now=now, settle_s=self._settle_s
        )

    async def _owner(self, sid: str, seen: _PassCache) -> int | None:
        """Id of the notification holding provider ``sid``, looked up once per pass."""
        if sid not in seen.owners:
            owner = await self._store.notification_by_sid(sid)
            seen.owners[sid] = owner.id if owner is not None else None
        return seen.owners[sid]

    async def _apply(self, row: ReconcileRow, decision: rc.Decision) -> int:
        n = row.notification
        send = (nlog.channel(n.channel), n.id, n.phone)
        match decision:
            case rc.Wait():
                return 0
            case rc.Adopt(sid=sid, status=status):
                done = await self._settle(n, status, sid, f"rapprochée avec le fournisseur ({n.status})")
                if done:
                    log.warning(nlog.ADOPTED, *send, sid, status, n.status)
                if done and status in FAILED_STATUSES:
                    await self._on_failed(n)
            case rc.Resend(disowned=disowned):
                await self._disown(disowned)
                why = RESENT if not disowned else RESENT_AMBIGUOUS
                done = await self._settle(n, "pending", None, why)
                if done:
                    log.warning(nlog.RESENT, *send, n.status, why)
            case rc.Drop(reason=reason, disowned=disowned):
                await self._disown(disowned)
                done = await self._settle(n, "canceled", None, reason)
                if done:
                    log.warning(nlog.DROPPED, *send, n.status, reason)
        if done:
            self._bus.publish("alert", alert_id=n.alert_id)
        return int(done)

    async def _disown(self, sids: tuple[str, ...]) -> None:
        """Before the row moves on: a record it might own must never go to another row."""
        if sids:
            await self._store.disown_provider_records(sids, datetime.now(UTC))
            log.warning(nlog.DISOWNED, ", ".join(sids))

    async def _settle(self, n: NotificationRecord, status: str, sid: str | None, note: str) -> bool:
        try:
            return await self._store.settle_notification(
                n.id, expected=n.status, status=status, provider_sid=sid, error=note
            )
        except AlreadyExists:  # the SID was stored on another row meanwhile
            return False


@dataclass
class _PassCache:
    """What one pass already asked: the provider's records per number, the owner of each SID."""

    records: dict[tuple[str, str], list[rc.ProviderRecord]] = field(default_factory=dict)
    owners: dict[str, int | None] = field(default_factory=dict)


def _uncertain(row: ReconcileRow) -> rc.Uncertain:
    n = row.notification
    channel: Literal["sms", "voice"] = "voice" if n.channel == "voice" else "sms"
    return rc.Uncertain(
        id=n.id,
        channel=channel,
        phone=n.phone,
        purpose=n.purpose,
        status=n.status,
        provider_sid=n.provider_sid,
        created_at=row.created_at.timestamp(),
        updated_at=row.updated_at.timestamp(),
        alert_state=row.alert_state,
    )
