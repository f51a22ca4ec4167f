"""PostgreSQL side of the visit timers and incident reports (mixed into PostgresStore).

Same semantics as :mod:`dispatcher.store.sqlite_visits`; due rows are claimed
with ``FOR UPDATE SKIP LOCKED`` plus a lease, like the escalation's timers, so
two instances never fire the same visit timer and a dead one's rows are taken
over once its lease has run out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

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

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

T = TypeVar("T")
_TEXT_COLUMNS = "key, reference, phone, body, what, not_after, status, lease_owner, lease_until"
_COLUMNS = "visit_id, practitioner_id, phase, due_at, state, version, alert_id"


def _record(row: asyncpg.Record) -> VisitTimerRecord:
    return VisitTimerRecord(
        visit_id=row["visit_id"],
        practitioner_id=row["practitioner_id"],
        phase=row["phase"],
        due_at=row["due_at"],
        state=dict(row["state"]),
        version=row["version"],
        alert_id=row["alert_id"],
    )


async def _insert_server_alert(conn: Conn, alert: NewAlert, now: datetime) -> None:
    """An alert raised by the dispatcher itself: no device replay window, no fix."""
    await conn.execute(
        "INSERT INTO alerts(id, device_id, kind, seq, device_ts, received_at, gesture, fix, raw, state,"
        " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, 'received', $9)",
        alert.id,
        alert.device_id,
        alert.kind,
        alert.seq,
        alert.device_ts.astimezone(UTC),
        alert.received_at.astimezone(UTC),
        alert.gesture,
        alert.raw,
        now,
    )
    await conn.execute(
        "INSERT INTO alert_events(alert_id, at, kind, detail) VALUES ($1, $2, 'received', $3)",
        alert.id,
        now,
        {"seq": alert.seq, "gesture": alert.gesture},
    )


class PostgresVisits:
    """Visit timers and incident reports over PostgresStore's pool."""

    if TYPE_CHECKING:

        async def _tx(self, work: Callable[[Conn], Awaitable[T]]) -> T: ...
        async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...
        async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None: ...
        async def _apply(self, conn: Conn, t: Transition) -> list[int]: ...

    async def write_visit_timer(self, write: VisitTimerWrite) -> int | None:
        async def run(conn: Conn) -> int | None:
            now = datetime.now(UTC)
            w = write
            alarm_id = None
            if w.alarm is not None:
                alarm_id = int(
                    await conn.fetchval(
                        "INSERT INTO operator_events(at, kind, message, scope) VALUES ($1, 'alarm', $2, $3)"
                        " RETURNING id",
                        now,
                        w.alarm.message,
                        list(w.alarm.scope),
                    )
                )
            if w.visit is not None:
                await conn.execute(
                    "INSERT INTO visits(id, practitioner_id, ends_at, doc)"
                    " VALUES ($1, $2, $3, $4::text::jsonb)"
                    " ON CONFLICT (id) DO UPDATE SET ends_at=excluded.ends_at, doc=excluded.doc",
                    w.visit.id,
                    w.visit.practitioner_id,
                    w.visit.ends_at.astimezone(UTC),
                    w.visit.model_dump_json(),
                )
            if w.alert is not None:
                await _insert_server_alert(conn, w.alert, now)
                if w.first is not None:
                    await self._apply(conn, w.first)
            alert_id = w.alert.id if w.alert is not None else None
            if w.texts:
                await conn.executemany(
                    f"INSERT INTO side_texts({_TEXT_COLUMNS}, created_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (key) DO NOTHING",
                    [(t.key, t.reference, t.phone, t.body, t.what, t.not_after, t.status, t.lease_owner,
                      t.lease_until, now.timestamp()) for t in w.texts],
                )  # fmt: skip
            if w.expected_version == 0:
                await conn.execute(
                    f"INSERT INTO visit_timers({_COLUMNS}, created_at, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $7)",
                    w.visit_id, w.practitioner_id, w.phase, w.due_at, w.state, alert_id, now,
                )  # fmt: skip
                return alarm_id
            status = await conn.execute(
                "UPDATE visit_timers SET phase=$1, due_at=$2, state=$3, version=version+1,"
                " alert_id=COALESCE($4, alert_id), lease_owner=NULL, lease_until=NULL, updated_at=$5"
                " WHERE visit_id=$6 AND version=$7",
                w.phase, w.due_at, w.state, alert_id, now, w.visit_id, w.expected_version,
            )  # fmt: skip
            if status.rsplit(" ", 1)[-1] == "0":
                raise Conflict(f"visit timer {w.visit_id} changed since version {w.expected_version}")
            return alarm_id

        return await self._tx(run)

    async def insert_server_alert(self, alert: NewAlert, first: Transition) -> None:
        async def run(conn: Conn) -> None:
            await _insert_server_alert(conn, alert, datetime.now(UTC))
            await self._apply(conn, first)

        await self._tx(run)

    async def get_visit_timer(self, visit_id: str) -> VisitTimerRecord:
        row = await self._fetchrow(f"SELECT {_COLUMNS} FROM visit_timers WHERE visit_id=$1", visit_id)
        if row is None:
            raise NotFound(f"visit timer {visit_id!r} does not exist")
        return _record(row)

    async def list_visit_timers(
        self, *, practitioner_id: str | None = None, phases: Sequence[str] = (), limit: int = 100
    ) -> list[VisitTimerRecord]:
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM visit_timers WHERE ($1::text IS NULL OR practitioner_id=$1)"
            " AND (cardinality($2::text[]) = 0 OR phase = ANY($2::text[]))"
            ' ORDER BY created_at DESC, visit_id COLLATE "C" DESC LIMIT $3',
            practitioner_id,
            list(phases),
            limit,
        )
        return [_record(r) for r in rows]

    async def claim_due_visit_timers(
        self, owner: str, *, now: float, lease_s: float = 30.0
    ) -> list[VisitTimerRecord]:
        rows = await self._fetch(
            "WITH due AS (SELECT visit_id FROM visit_timers WHERE due_at<=$1"
            " AND (lease_until IS NULL OR lease_until<$1) ORDER BY due_at LIMIT 100 FOR UPDATE SKIP LOCKED)"
            " UPDATE visit_timers t SET lease_owner=$2, lease_until=$3 FROM due WHERE t.visit_id=due.visit_id"
            " RETURNING t.visit_id, t.practitioner_id, t.phase, t.due_at, t.state, t.version, t.alert_id",
            now,
            owner,
            now + lease_s,
        )
        return sorted((_record(r) for r in rows), key=lambda r: r.due_at or 0.0)

    async def next_visit_timer_due(self) -> float | None:
        row = await self._fetchrow("SELECT MIN(due_at) AS due FROM visit_timers")
        return None if row is None or row["due"] is None else float(row["due"])

    async def claim_side_texts(
        self, owner: str, *, now: float, lease_s: float, own_before: float | None = None
    ) -> list[SideTextRecord]:
        rows = await self._fetch(
            "WITH free AS (SELECT key FROM side_texts WHERE lease_until IS NULL OR lease_until<$1"
            " OR (lease_owner=$2 AND created_at<$4)"
            " ORDER BY created_at, key LIMIT 100 FOR UPDATE SKIP LOCKED)"
            " UPDATE side_texts t SET lease_owner=$2, lease_until=$3 FROM free WHERE t.key=free.key"
            f" RETURNING {', '.join('t.' + c for c in _TEXT_COLUMNS.split(', '))}, t.created_at",
            now,
            owner,
            now + lease_s,
            -1.0 if own_before is None else own_before,
        )
        ordered = sorted(rows, key=lambda r: (r["created_at"], r["key"]))
        return [SideTextRecord(**{c: r[c] for c in _TEXT_COLUMNS.split(", ")}) for r in ordered]

    async def mark_side_text(self, key: str, status: str, *, owner: str, lease_until: float) -> None:
        await self._tx(
            lambda conn: conn.execute(
                "UPDATE side_texts SET status=$1, lease_owner=$2, lease_until=$3 WHERE key=$4",
                status,
                owner,
                lease_until,
                key,
            )
        )

    async def drop_side_text(self, key: str) -> None:
        await self._tx(lambda conn: conn.execute("DELETE FROM side_texts WHERE key=$1", key))

    async def save_incident_report(
        self, alert_id: str, doc: dict[str, Any], *, user_id: int | None, author: str
    ) -> None:
        async def run(conn: Conn) -> None:
            if await conn.fetchval("SELECT 1 FROM alerts WHERE id=$1", alert_id) is None:
                raise NotFound(f"alert {alert_id!r} does not exist")
            await conn.execute(
                "INSERT INTO incident_reports(alert_id, doc, author, user_id, updated_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (alert_id) DO UPDATE SET doc=excluded.doc,"
                " author=excluded.author, user_id=excluded.user_id, updated_at=excluded.updated_at",
                alert_id,
                doc,
                author,
                user_id,
                datetime.now(UTC),
            )

        await self._tx(run)

    async def get_incident_report(self, alert_id: str) -> IncidentReportRecord | None:
        row = await self._fetchrow(
            "SELECT alert_id, doc, author, user_id, updated_at FROM incident_reports WHERE alert_id=$1",
            alert_id,
        )
        if row is None:
            return None
        return IncidentReportRecord(
            alert_id=row["alert_id"],
            doc=dict(row["doc"]),
            author=row["author"],
            user_id=row["user_id"],
            updated_at=row["updated_at"],
        )
