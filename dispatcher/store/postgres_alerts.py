"""PostgreSQL side of the alerts, their transitions, timeline and timers (mixed into PostgresStore).

Same semantics as :mod:`dispatcher.store.sqlite_alerts`. ``insert_alerts``
locks the batch's devices' rows and merges their anti-replay windows; a
transition is checked against the alert's ``version`` (a concurrent writer
makes it raise :class:`~dispatcher.store.base.Conflict`); timers are leased
with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from dispatcher.store.base import (
    AlertRecord,
    Conflict,
    InsertOutcome,
    Lease,
    NewAlert,
    NotFound,
    NotificationSpec,
    Timer,
    Transition,
    claimed_record,
)
from dispatcher.store.pgutil import _ALERT_COLUMNS, Conn, PostgresMixin, _iso, _status_count, _utc, utcnow
from dispatcher.store.postgres_responders import insert_transition_links
from protocol.replay import SequenceWindow, merge_windows


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
            return [await self._insert_one(conn, windows, a, w, first, lease) for a, w, first in batch]

        return await self._tx(run)

    async def _insert_one(
        self,
        conn: Conn,
        windows: dict[str, SequenceWindow],
        alert: NewAlert,
        window: SequenceWindow,
        first: Transition | None,
        lease: Lease | None = None,
    ) -> InsertOutcome:
        now = utcnow()
        inserted = await conn.fetchval(
            "INSERT INTO alerts(id, device_id, kind, seq, device_ts, received_at, gesture, fix, raw, state,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'received', $10)"
            " ON CONFLICT (id) DO NOTHING RETURNING true",
            alert.id,
            alert.device_id,
            alert.kind,
            alert.seq,
            _utc(alert.device_ts),
            _utc(alert.received_at),
            alert.gesture,
            alert.fix or None,
            alert.raw,
            now,
        )
        if not inserted:
            return InsertOutcome(created=False)
        merged = merge_windows(windows.get(alert.device_id, SequenceWindow()), window)
        windows[alert.device_id] = merged
        await conn.execute(
            "UPDATE devices SET replay_high=$1, replay_seen=$2, last_fix=COALESCE($3, last_fix) WHERE id=$4",
            merged.high,
            merged.to_bytes(),
            alert.fix or None,
            alert.device_id,
        )
        await conn.execute(
            "INSERT INTO alert_events(alert_id, at, kind, detail) VALUES ($1, $2, 'received', $3)",
            alert.id,
            now,
            {"seq": alert.seq, "gesture": alert.gesture},
        )
        if first is None:
            return InsertOutcome(created=True)
        created = await self._write_transition(conn, first, lease)
        if lease is None:
            return InsertOutcome(created=True)
        return InsertOutcome(created=True, claimed=tuple(claimed_record(i, alert.id, n) for i, n in created))

    async def apply_transition(self, transition: Transition) -> list[int]:
        """Write a transition; return the ids of the notifications it created."""
        return await self._tx(lambda c: self._apply(c, transition))

    async def _apply(self, conn: Conn, t: Transition) -> list[int]:
        return [i for i, _ in await self._write_transition(conn, t, None)]

    async def _write_transition(
        self, conn: Conn, t: Transition, lease: Lease | None
    ) -> list[tuple[int, NotificationSpec]]:
        """Write ``t``; its notifications 'pending', or claimed under ``lease``; return those created."""
        now = utcnow()
        # Under READ COMMITTED a concurrent writer of this row makes us wait for
        # its commit, then re-check ``version``: it no longer matches → Conflict.
        status = await conn.execute(
            "UPDATE alerts SET state=$1, escalation=$2, context=COALESCE($3, context), version=version+1,"
            " updated_at=$4 WHERE id=$5 AND version=$6",
            t.state,
            t.escalation,
            t.context,
            now,
            t.alert_id,
            t.expected_version,
        )
        if _status_count(status) == 0:
            raise Conflict(f"alert {t.alert_id} changed since version {t.expected_version}")
        if t.cancel_timers:
            await conn.execute("DELETE FROM timers WHERE alert_id=$1", t.alert_id)
        if t.timers:
            await conn.execute(
                "INSERT INTO timers(alert_id, kind, due_at, payload)"
                " SELECT $1, k, d, p::jsonb FROM unnest($2::text[], $3::float8[], $4::text[]) AS u(k, d, p)",
                t.alert_id,
                [s.kind for s in t.timers],
                [s.due_at for s in t.timers],
                [json.dumps(s.payload) for s in t.timers],
            )
        if t.events:
            await conn.execute(
                "INSERT INTO alert_events(alert_id, at, kind, detail)"
                " SELECT $1, $2, k, d::jsonb FROM unnest($3::text[], $4::text[])"
                " WITH ORDINALITY AS u(k, d, o) ORDER BY o",
                t.alert_id,
                now,
                [kind for kind, _ in t.events],
                [json.dumps(detail) for _, detail in t.events],
            )
        await insert_transition_links(conn, t)
        return await self._insert_notifications(conn, t, now, lease)

    async def _insert_notifications(
        self, conn: Conn, t: Transition, now: datetime, lease: Lease | None
    ) -> list[tuple[int, NotificationSpec]]:
        """One row per decided send (a duplicate decision, same UNIQUE key, creates nothing), claimed
        if ``lease``; the rows created with their specs, in id order."""
        if not t.notifications:
            return []
        columns = ("contact_id", "contact_name", "phone", "channel", "purpose")
        status, owner, until, attempts = (
            ("pending", None, None, 0) if lease is None else ("sending", lease.owner, lease.until, 1)
        )
        rows = await conn.fetch(
            "INSERT INTO notifications(alert_id, contact_id, contact_name, phone, channel, purpose, tier,"
            " round, duress, actor, status, lease_owner, lease_until, attempts, created_at, updated_at)"
            " SELECT $1, ci, cn, ph, ch, pu, ti, ro, du, ac, $12::text, $13::text, $14::float8, $15::int,"
            " $2, $2 FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[],"
            " $9::int[], $10::bool[], $11::text[])"
            " WITH ORDINALITY AS u(ci, cn, ph, ch, pu, ti, ro, du, ac, o) ORDER BY o ON CONFLICT DO NOTHING"
            " RETURNING id, contact_id, channel, purpose, tier, round",
            t.alert_id,
            now,
            *([getattr(n, col) for n in t.notifications] for col in columns),
            [n.tier for n in t.notifications],
            [n.round for n in t.notifications],
            [n.duress for n in t.notifications],
            [n.actor for n in t.notifications],
            status,
            owner,
            until,
            attempts,
        )
        # Matched back to their specs by the UNIQUE key (RETURNING's order is not guaranteed).
        specs = {(n.contact_id, n.channel, n.purpose, n.tier, n.round): n for n in t.notifications}
        created = [
            (int(r["id"]), specs[(r["contact_id"], r["channel"], r["purpose"], r["tier"], r["round"])])
            for r in rows
        ]
        return sorted(created, key=lambda pair: pair[0])

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
