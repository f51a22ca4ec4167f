"""PostgreSQL side of the alerts, their transitions, timeline and timers (mixed into PostgresStore).

Same semantics as :mod:`dispatcher.store.sqlite_alerts`. ``insert_alerts``
locks the batch's devices' rows and merges their anti-replay windows; a
transition is checked against the alert's ``version`` (a concurrent writer
makes it raise :class:`~dispatcher.store.base.Conflict`); timers are leased
with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from dispatcher.store.base import (
    AlertRecord,
    InsertOutcome,
    Lease,
    NewAlert,
    NotFound,
    Timer,
    Transition,
)
from dispatcher.store.pgutil import _ALERT_COLUMNS, Conn, PostgresMixin, _iso, utcnow
from dispatcher.store.postgres_alert_batch import insert_alert_batch, write_transitions
from protocol.replay import SequenceWindow


class PostgresAlerts(PostgresMixin):
    """Alerts, transitions, the timeline and escalation timers over PostgresStore's pool."""

    if TYPE_CHECKING:

        async def _lock_windows(self, conn: Conn, device_ids: Iterable[str]) -> dict[str, SequenceWindow]: ...

    async def alert_exists(self, alert_id: str) -> bool:
        return await self._fetchrow("SELECT 1 FROM alerts WHERE id=$1", alert_id) is not None

    async def insert_alerts(
        self,
        batch: Sequence[tuple[NewAlert, SequenceWindow, Transition | None]],
        *,
        lease: Lease | None = None,
    ) -> list[InsertOutcome]:
        """Persist several accepted alerts in ONE durable transaction (group commit).

        Each alert is inserted idempotently by id; for a new one its device's
        replay window (merged with the stored one, under the device's row lock)
        is saved and its first escalation transition applied. With ``lease``
        its notifications are created claimed (see the protocol).
        """

        async def run(conn: Conn) -> list[InsertOutcome]:
            windows = await self._lock_windows(conn, (a.device_id for a, _, _ in batch))
            return await insert_alert_batch(conn, windows, batch, utcnow(), lease)

        return await self._tx(run)

    async def apply_transition(self, transition: Transition) -> list[int]:
        """Write a transition; return the ids of the notifications it created."""
        return await self._tx(lambda c: self._apply(c, transition))

    async def _apply(self, conn: Conn, t: Transition) -> list[int]:
        # Under READ COMMITTED a concurrent writer of the alert's row makes the write wait for
        # its commit, then re-check ``version``: it no longer matches → Conflict.
        created = await write_transitions(conn, [t], utcnow(), None)
        return [i for i, _ in created.get(t.alert_id, [])]

    def _alert(self, row: asyncpg.Record) -> AlertRecord:
        return AlertRecord(
            id=row["id"],
            device_id=row["device_id"],
            kind=row["kind"],
            seq=row["seq"],
            received_at=row["received_at"],
            gesture=row["gesture"],
            fix=row["fix"],
            state=row["state"],
            escalation=row["escalation"],
            context=row["context"],
            version=row["version"],
        )

    async def get_alert(self, alert_id: str) -> AlertRecord:
        row = await self._fetchrow(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id=$1", alert_id)
        if row is None:
            raise NotFound(f"alert {alert_id!r} does not exist")
        return self._alert(row)

    async def list_alerts(
        self, *, states: Sequence[str] | None = None, limit: int = 200
    ) -> list[AlertRecord]:
        """Most recent first, optionally filtered by state."""
        if states:
            rows = await self._fetch(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE state = ANY($1::text[])"
                " ORDER BY received_at DESC LIMIT $2",
                list(states),
                limit,
            )
        else:
            rows = await self._fetch(
                f"SELECT {_ALERT_COLUMNS} FROM alerts ORDER BY received_at DESC LIMIT $1", limit
            )
        return [self._alert(r) for r in rows]

    async def unstarted_alerts(self) -> list[AlertRecord]:
        """Alerts persisted without an escalation (routing failed before commit)."""
        rows = await self._fetch(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE escalation IS NULL ORDER BY received_at"
        )
        return [self._alert(r) for r in rows]

    async def alert_events(self, alert_id: str) -> list[dict[str, Any]]:
        rows = await self._fetch(
            "SELECT at, kind, detail FROM alert_events WHERE alert_id=$1 ORDER BY id", alert_id
        )
        return [{"at": _iso(r["at"]), "kind": r["kind"], "detail": r["detail"]} for r in rows]

    async def last_fix(self, device_id: str) -> dict[str, Any] | None:
        row = await self._fetchrow("SELECT last_fix FROM devices WHERE id=$1", device_id)
        return None if row is None else row["last_fix"]

    # -- timers --------------------------------------------------------------------

    async def claim_due_timers(self, owner: str, *, now: float, lease_s: float = 30.0) -> list[Timer]:
        """Lease the timers due at ``now`` (also those whose owner's lease expired).

        The lease is committed before any timer is acted on, so no transaction
        spans the escalation step nor the provider calls it triggers; a timer
        whose owner died is claimable again once ``lease_until`` has passed.
        """
        rows = await self._fetch(
            "WITH due AS (SELECT id FROM timers WHERE due_at<=$1 AND (lease_until IS NULL OR lease_until<$1)"
            " ORDER BY due_at LIMIT 200 FOR UPDATE SKIP LOCKED)"
            " UPDATE timers t SET lease_owner=$2, lease_until=$3 FROM due WHERE t.id=due.id"
            " RETURNING t.id, t.alert_id, t.kind, t.due_at, t.payload",
            now,
            owner,
            now + lease_s,
        )
        rows = sorted(rows, key=lambda r: (r["due_at"], r["id"]))
        return [
            Timer(r["id"], r["alert_id"], r["kind"], datetime.fromtimestamp(r["due_at"], UTC), r["payload"])
            for r in rows
        ]

    async def delete_timer(self, timer_id: int) -> None:
        await self._tx(lambda c: c.execute("DELETE FROM timers WHERE id=$1", timer_id))

    async def next_timer_due(self) -> float | None:
        due = await self._tx(lambda c: c.fetchval("SELECT MIN(due_at) FROM timers"))
        return None if due is None else float(due)

    async def alert_timers(self, alert_id: str) -> list[Timer]:
        rows = await self._fetch(
            "SELECT id, alert_id, kind, due_at, payload FROM timers WHERE alert_id=$1 ORDER BY due_at, id",
            alert_id,
        )
        return [
            Timer(r["id"], r["alert_id"], r["kind"], datetime.fromtimestamp(r["due_at"], UTC), r["payload"])
            for r in rows
        ]
