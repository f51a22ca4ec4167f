"""SQLite side of the alerts, their transitions, timeline and escalation timers (mixed into SqliteStore).

The hot path: an alert and its first transition are written in one
``_atomic`` transaction on the driver's thread (module functions below, run
there), its notifications created in the same commit. Kept apart from
:mod:`dispatcher.store.sqlite` so that each file stays small.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

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
from dispatcher.store.rows import parse_rows_in_turns
from dispatcher.store.sqlite_responders import insert_transition_links
from dispatcher.store.sqliteutil import SqliteMixin, _iso, _loads, utcnow
from protocol.replay import SequenceWindow


class SqliteAlerts(SqliteMixin):
    """Alerts, transitions, the timeline and escalation timers over SqliteStore's connection."""

    async def alert_exists(self, alert_id: str) -> bool:
        return await self._one("SELECT 1 FROM alerts WHERE id=?", (alert_id,)) is not None

    async def insert_alerts(
        self,
        batch: Sequence[tuple[NewAlert, SequenceWindow, Transition | None]],
        *,
        lease: Lease | None = None,
    ) -> list[InsertOutcome]:
        """Persist several accepted alerts in ONE durable transaction (group commit).

        Each alert is inserted idempotently by id; for a new one its device's
        replay window is saved and its first escalation transition applied, so
        an alert is never stored without the decision of whom to notify. With
        ``lease`` its notifications are created claimed (see the protocol).
        """
        return await self._atomic(lambda tx: [_insert_one(tx, *entry, lease) for entry in batch])

    async def apply_transition(self, transition: Transition) -> list[int]:
        """Write a transition; return the ids of the notifications it created."""
        return await self._atomic(lambda tx: _apply(tx, transition))

    def _alert(self, row: sqlite3.Row) -> AlertRecord:
        return AlertRecord(
            id=row["id"],
            device_id=row["device_id"],
            kind=row["kind"],
            seq=row["seq"],
            received_at=datetime.fromisoformat(row["received_at"]),
            gesture=row["gesture"],
            fix=_loads(row["fix"]),
            state=row["state"],
            escalation=_loads(row["escalation"]),
            context=_loads(row["context"]),
            version=row["version"],
        )

    async def get_alert(self, alert_id: str) -> AlertRecord:
        row = await self._one("SELECT * FROM alerts WHERE id=?", (alert_id,))
        if row is None:
            raise NotFound(f"alert {alert_id!r} does not exist")
        return self._alert(row)

    async def list_alerts(
        self, *, states: Sequence[str] | None = None, limit: int = 200
    ) -> list[AlertRecord]:
        """Most recent first, optionally filtered by state."""
        if states:
            marks = ",".join("?" * len(states))
            rows = await self._all_in_pages(
                f"SELECT * FROM alerts WHERE state IN ({marks}) ORDER BY received_at DESC LIMIT ?",
                (*states, limit),
            )
        else:
            sql = "SELECT * FROM alerts ORDER BY received_at DESC LIMIT ?"
            rows = await self._all_in_pages(sql, (limit,))
        return await parse_rows_in_turns(self._alert, rows)

    async def unstarted_alerts(self) -> list[AlertRecord]:
        """Alerts persisted without an escalation (routing failed before commit)."""
        rows = await self._all("SELECT * FROM alerts WHERE escalation IS NULL ORDER BY received_at")
        return await parse_rows_in_turns(self._alert, rows)

    async def alert_events(self, alert_id: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT at, kind, detail FROM alert_events WHERE alert_id=? ORDER BY id", (alert_id,)
        )
        return [{"at": r["at"], "kind": r["kind"], "detail": json.loads(r["detail"])} for r in rows]

    async def last_fix(self, device_id: str) -> dict[str, Any] | None:
        row = await self._one("SELECT last_fix FROM devices WHERE id=?", (device_id,))
        return None if row is None else _loads(row["last_fix"])

    # -- timers --------------------------------------------------------------------

    async def claim_due_timers(self, owner: str, *, now: float, lease_s: float = 30.0) -> list[Timer]:
        """Lease the timers due at ``now`` (also those whose owner's lease expired)."""
        async with self._tx() as tx:
            async with tx.execute(
                "SELECT id, alert_id, kind, due_at, payload FROM timers WHERE due_at<=?"
                " AND (lease_until IS NULL OR lease_until<?) ORDER BY due_at LIMIT 200",
                (now, now),
            ) as cur:
                rows = list(await cur.fetchall())
            await tx.executemany(
                "UPDATE timers SET lease_owner=?, lease_until=? WHERE id=?",
                [(owner, now + lease_s, r["id"]) for r in rows],
            )
        return [_timer(r) for r in rows]

    async def delete_timer(self, timer_id: int) -> None:
        async with self._tx() as tx:
            await tx.execute("DELETE FROM timers WHERE id=?", (timer_id,))

    async def next_timer_due(self) -> float | None:
        row = await self._one("SELECT MIN(due_at) AS due FROM timers")
        return None if row is None or row["due"] is None else float(row["due"])

    async def alert_timers(self, alert_id: str) -> list[Timer]:
        rows = await self._all(
            "SELECT id, alert_id, kind, due_at, payload FROM timers WHERE alert_id=? ORDER BY due_at, id",
            (alert_id,),
        )
        return [_timer(r) for r in rows]


_JSON = msgspec.json.Encoder()


def _json(value: Any) -> str:
    """JSON text of an alert's documents (context, escalation, events) as the hot path writes them.

    msgspec rather than ``json.dumps``: these run on the store's thread while
    it holds the GIL, for every alert and transition (≈ 8x faster for an alert's context and escalation).
    Same JSON values; non-ASCII characters are written as UTF-8 instead of ``\\u`` escapes.
    """
    return _JSON.encode(value).decode()


def _insert_one(
    tx: sqlite3.Connection,
    alert: NewAlert,
    window: SequenceWindow,
    first: Transition | None,
    lease: Lease | None = None,
) -> InsertOutcome:
    now = _iso(utcnow())
    cur = tx.execute(
        "INSERT INTO alerts(id, device_id, kind, seq, device_ts, received_at, gesture, fix, raw, state,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'received', ?) ON CONFLICT(id) DO NOTHING",
        (
            alert.id,
            alert.device_id,
            alert.kind,
            alert.seq,
            _iso(alert.device_ts),
            _iso(alert.received_at),
            alert.gesture,
            _json(alert.fix) if alert.fix else None,
            alert.raw,
            now,
        ),
    )
    if cur.rowcount == 0:
        return InsertOutcome(created=False)
    tx.execute(
        "UPDATE devices SET replay_high=?, replay_seen=?, last_fix=COALESCE(?, last_fix) WHERE id=?",
        (window.high, window.to_bytes(), _json(alert.fix) if alert.fix else None, alert.device_id),
    )
    tx.execute(
        "INSERT INTO alert_events(alert_id, at, kind, detail) VALUES (?, ?, 'received', ?)",
        (alert.id, now, _json({"seq": alert.seq, "gesture": alert.gesture})),
    )
    if first is None:
        return InsertOutcome(created=True)
    created = _write_transition(tx, first, lease)
    if lease is None:
        return InsertOutcome(created=True)
    return InsertOutcome(created=True, claimed=tuple(claimed_record(i, alert.id, n) for i, n in created))


def _apply(tx: sqlite3.Connection, t: Transition) -> list[int]:
    return [i for i, _ in _write_transition(tx, t, None)]


def _write_transition(
    tx: sqlite3.Connection, t: Transition, lease: Lease | None
) -> list[tuple[int, NotificationSpec]]:
    """Write ``t``; its notifications 'pending', or claimed under ``lease``; return those created."""
    now = _iso(utcnow())
    cur = tx.execute(
        "UPDATE alerts SET state=?, escalation=?, context=COALESCE(?, context), version=version+1,"
        " updated_at=? WHERE id=? AND version=?",
        (
            t.state,
            _json(t.escalation),
            _json(t.context) if t.context is not None else None,
            now,
            t.alert_id,
            t.expected_version,
        ),
    )
    if cur.rowcount == 0:
        raise Conflict(f"alert {t.alert_id} changed since version {t.expected_version}")
    if t.cancel_timers:
        tx.execute("DELETE FROM timers WHERE alert_id=?", (t.alert_id,))
    tx.executemany(
        "INSERT INTO timers(alert_id, kind, due_at, payload) VALUES (?, ?, ?, ?)",
        [(t.alert_id, s.kind, s.due_at, _json(s.payload)) for s in t.timers],
    )
    tx.executemany(
        "INSERT INTO alert_events(alert_id, at, kind, detail) VALUES (?, ?, ?, ?)",
        [(t.alert_id, now, kind, _json(detail)) for kind, detail in t.events],
    )
    insert_transition_links(tx, t)
    return _insert_notifications(tx, t, now, lease)


def _insert_notifications(
    tx: sqlite3.Connection, t: Transition, now: str, lease: Lease | None
) -> list[tuple[int, NotificationSpec]]:
    """One row per decided send (a duplicate decision creates nothing), claimed if ``lease``."""
    status, owner, until, attempts = (
        ("pending", None, None, 0) if lease is None else ("sending", lease.owner, lease.until, 1)
    )
    created: list[tuple[int, NotificationSpec]] = []
    for n in t.notifications:
        cur = tx.execute(
            "INSERT INTO notifications(alert_id, contact_id, contact_name, phone, channel, purpose, tier,"
            " round, duress, actor, status, lease_owner, lease_until, attempts, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (
                t.alert_id,
                n.contact_id,
                n.contact_name,
                n.phone,
                n.channel,
                n.purpose,
                n.tier,
                n.round,
                int(n.duress),
                n.actor,
                status,
                owner,
                until,
                attempts,
                now,
                now,
            ),
        )
        if cur.rowcount and cur.lastrowid is not None:
            created.append((cur.lastrowid, n))
    return created


def _timer(r: Any) -> Timer:
    return Timer(
        r["id"], r["alert_id"], r["kind"], datetime.fromtimestamp(r["due_at"], UTC), json.loads(r["payload"])
    )
