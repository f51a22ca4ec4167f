"""SQLite side of the visit timers and incident reports (mixed into SqliteStore).

Kept apart from :mod:`dispatcher.store.sqlite` so that each file stays small;
same transactions, same helpers (``_atomic`` runs a whole write on the
driver's thread, power-safe).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from dispatcher.store.base import (
    Conflict,
    IncidentReportRecord,
    NewAlert,
    NotFound,
    SideTextRecord,
    Transition,
    VisitTimerRecord,
    VisitTimerWrite,
)
from dispatcher.store.sqlite_alerts import _apply

T = TypeVar("T")
_COLUMNS = "visit_id, practitioner_id, phase, due_at, state, version, alert_id"
_TEXT_COLUMNS = "key, reference, phone, body, what, not_after, status, lease_owner, lease_until"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _record(row: sqlite3.Row) -> VisitTimerRecord:
    return VisitTimerRecord(
        visit_id=row["visit_id"],
        practitioner_id=row["practitioner_id"],
        phase=row["phase"],
        due_at=row["due_at"],
        state=json.loads(row["state"]),
        version=row["version"],
        alert_id=row["alert_id"],
    )


def _insert_server_alert(tx: sqlite3.Connection, alert: NewAlert, now: str) -> None:
    """An alert raised by the dispatcher itself: no device replay window, no fix."""
    tx.execute(
        "INSERT INTO alerts(id, device_id, kind, seq, device_ts, received_at, gesture, fix, raw, state,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, 'received', ?)",
        (
            alert.id,
            alert.device_id,
            alert.kind,
            alert.seq,
            alert.device_ts.astimezone(UTC).isoformat(),
            alert.received_at.astimezone(UTC).isoformat(),
            alert.gesture,
            alert.raw,
            now,
        ),
    )
    tx.execute(
        "INSERT INTO alert_events(alert_id, at, kind, detail) VALUES (?, ?, 'received', ?)",
        (alert.id, now, json.dumps({"seq": alert.seq, "gesture": alert.gesture})),
    )


def _write_timer(tx: sqlite3.Connection, w: VisitTimerWrite, apply: Callable[..., Any]) -> int | None:
    now = _now()
    alarm_id = None
    if w.alarm is not None:
        cur = tx.execute(
            "INSERT INTO operator_events(at, kind, message, scope) VALUES (?, 'alarm', ?, ?)",
            (now, w.alarm.message, json.dumps(list(w.alarm.scope))),
        )
        alarm_id = int(cur.lastrowid or 0)
    if w.visit is not None:
        tx.execute(
            "INSERT INTO visits(id, practitioner_id, ends_at, doc) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET ends_at=excluded.ends_at, doc=excluded.doc",
            (w.visit.id, w.visit.practitioner_id, w.visit.ends_at.astimezone(UTC).isoformat(),
             w.visit.model_dump_json()),
        )  # fmt: skip
    if w.alert is not None:
        _insert_server_alert(tx, w.alert, now)
        if w.first is not None:
            apply(tx, w.first)
    alert_id = w.alert.id if w.alert is not None else None
    state = json.dumps(w.state)
    tx.executemany(
        f"INSERT INTO side_texts({_TEXT_COLUMNS}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(key) DO NOTHING",
        [(t.key, t.reference, t.phone, t.body, t.what, t.not_after, t.status, t.lease_owner, t.lease_until,
          time.time()) for t in w.texts],  # epoch seconds, as every column of the outbox
    )  # fmt: skip
    if w.expected_version == 0:
        tx.execute(
            f"INSERT INTO visit_timers({_COLUMNS}, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)",
            (w.visit_id, w.practitioner_id, w.phase, w.due_at, state, alert_id, now, now),
        )
        return alarm_id
    cur = tx.execute(
        "UPDATE visit_timers SET phase=?, due_at=?, state=?, version=version+1,"
        " alert_id=COALESCE(?, alert_id), lease_owner=NULL, lease_until=NULL, updated_at=?"
        " WHERE visit_id=? AND version=?",
        (w.phase, w.due_at, state, alert_id, now, w.visit_id, w.expected_version),
    )
    if cur.rowcount == 0:
        raise Conflict(f"visit timer {w.visit_id} changed since version {w.expected_version}")
    return alarm_id


class SqliteVisits:
    """Visit timers and incident reports over SqliteStore's connection."""

    if TYPE_CHECKING:

        async def _atomic(
            self, work: Callable[[sqlite3.Connection], T], *, power_safe: bool = True, urgent: bool = True
        ) -> T: ...
        async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None: ...
        async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]: ...

    async def write_visit_timer(self, write: VisitTimerWrite) -> int | None:
        return await self._atomic(lambda tx: _write_timer(tx, write, _apply))

    async def insert_server_alert(self, alert: NewAlert, first: Transition) -> None:
        def run(tx: sqlite3.Connection) -> None:
            _insert_server_alert(tx, alert, _now())
            _apply(tx, first)

        await self._atomic(run)

    async def get_visit_timer(self, visit_id: str) -> VisitTimerRecord:
        row = await self._one(f"SELECT {_COLUMNS} FROM visit_timers WHERE visit_id=?", (visit_id,))
        if row is None:
            raise NotFound(f"visit timer {visit_id!r} does not exist")
        return _record(row)

    async def list_visit_timers(
        self, *, practitioner_id: str | None = None, phases: Sequence[str] = (), limit: int = 100
    ) -> list[VisitTimerRecord]:
        where, params = ["1=1"], []
        if practitioner_id is not None:
            where.append("practitioner_id=?")
            params.append(practitioner_id)
        if phases:
            where.append(f"phase IN ({','.join('?' * len(phases))})")
            params.extend(phases)
        rows = await self._all(
            f"SELECT {_COLUMNS} FROM visit_timers WHERE {' AND '.join(where)}"
            " ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (*params, limit),
        )
        return [_record(r) for r in rows]

    async def claim_due_visit_timers(
        self, owner: str, *, now: float, lease_s: float = 30.0
    ) -> list[VisitTimerRecord]:
        def claim(tx: sqlite3.Connection) -> list[sqlite3.Row]:
            rows = tx.execute(
                f"SELECT {_COLUMNS} FROM visit_timers WHERE due_at<=? AND (lease_until IS NULL OR"
                " lease_until<?) ORDER BY due_at LIMIT 100",
                (now, now),
            ).fetchall()
            tx.executemany(
                "UPDATE visit_timers SET lease_owner=?, lease_until=? WHERE visit_id=?",
                [(owner, now + lease_s, r["visit_id"]) for r in rows],
            )
            return list(rows)

        return [_record(r) for r in await self._atomic(claim, urgent=False)]

    async def next_visit_timer_due(self) -> float | None:
        row = await self._one("SELECT MIN(due_at) AS due FROM visit_timers")
        return None if row is None or row["due"] is None else float(row["due"])

    async def claim_side_texts(
        self, owner: str, *, now: float, lease_s: float, own_before: float | None = None
    ) -> list[SideTextRecord]:
        def claim(tx: sqlite3.Connection) -> list[sqlite3.Row]:
            rows = tx.execute(
                f"SELECT {_TEXT_COLUMNS} FROM side_texts WHERE lease_until IS NULL OR lease_until<?"
                " OR (lease_owner=? AND created_at<?) ORDER BY created_at, key LIMIT 100",
                (now, owner, -1.0 if own_before is None else own_before),
            ).fetchall()
            tx.executemany(
                "UPDATE side_texts SET lease_owner=?, lease_until=? WHERE key=?",
                [(owner, now + lease_s, r["key"]) for r in rows],
            )
            return list(rows)

        rows = await self._atomic(claim, urgent=False)
        leased = {"lease_owner": owner, "lease_until": now + lease_s}
        return [SideTextRecord(**{**dict(r), **leased}) for r in rows]

    async def mark_side_text(self, key: str, status: str, *, owner: str, lease_until: float) -> None:
        await self._atomic(
            lambda tx: tx.execute(
                "UPDATE side_texts SET status=?, lease_owner=?, lease_until=? WHERE key=?",
                (status, owner, lease_until, key),
            ),
            urgent=False,
        )

    async def drop_side_text(self, key: str) -> None:
        await self._atomic(lambda tx: tx.execute("DELETE FROM side_texts WHERE key=?", (key,)), urgent=False)

    async def save_incident_report(
        self, alert_id: str, doc: dict[str, Any], *, user_id: int | None, author: str
    ) -> None:
        if await self._one("SELECT 1 FROM alerts WHERE id=?", (alert_id,)) is None:
            raise NotFound(f"alert {alert_id!r} does not exist")

        def save(tx: sqlite3.Connection) -> None:
            tx.execute(
                "INSERT INTO incident_reports(alert_id, doc, author, user_id, updated_at)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(alert_id) DO UPDATE SET doc=excluded.doc, author=excluded.author,"
                " user_id=excluded.user_id, updated_at=excluded.updated_at",
                (alert_id, json.dumps(doc), author, user_id, _now()),
            )

        await self._atomic(save, urgent=False)

    async def get_incident_report(self, alert_id: str) -> IncidentReportRecord | None:
        row = await self._one("SELECT * FROM incident_reports WHERE alert_id=?", (alert_id,))
        if row is None:
            return None
        return IncidentReportRecord(
            alert_id=row["alert_id"],
            doc=json.loads(row["doc"]),
            author=row["author"],
            user_id=row["user_id"],
            updated_at=datetime.fromisoformat(row["updated_at"]),
        )
