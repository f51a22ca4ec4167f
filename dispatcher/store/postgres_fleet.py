"""PostgreSQL side of the fleet's records (mixed into PostgresStore).

Same semantics as :mod:`dispatcher.store.sqlite_fleet`; device health rows are
locked in one order while several instances merge into them, and instants are
returned as the ISO text the SQLite store keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from dispatcher.store.base import FlagChange
from dispatcher.store.pgutil import Conn, PostgresMixin, _iso, utcnow
from dispatcher.store.rows import parse_rows


def _instant(text: str | None) -> datetime | None:
    """An ISO instant from the health snapshots, as PostgreSQL's timestamptz wants it."""
    return datetime.fromisoformat(text) if text else None


def _health_row(r: asyncpg.Record) -> dict[str, Any]:
    """A device_health row with its instants as the ISO text the SQLite store keeps."""
    return {**dict(r), "last_seen_at": _iso(r["last_seen_at"]), "status_at": _iso(r["status_at"])}


class PostgresFleet(PostgresMixin):
    """Rejections, device health, leases and operator events over PostgresStore's pool."""

    async def record_rejections(self, rows: Sequence[tuple[str | None, str, str, str]]) -> None:
        """Persist rejected messages: (device_id, topic, reason, detail)."""
        now = utcnow()
        # PostgreSQL text cannot hold NUL; a hostile payload's detail may.
        clean = [
            (now, d, t.replace("\x00", "\\x00"), r, detail[:500].replace("\x00", "\\x00"))
            for d, t, r, detail in rows
        ]
        await self._tx(
            lambda c: c.executemany(
                "INSERT INTO rejections(at, device_id, topic, reason, detail) VALUES ($1, $2, $3, $4, $5)",
                clean,
            )
        )

    async def rejection_counts(self) -> dict[str, int]:
        rows = await self._fetch("SELECT reason, COUNT(*) AS n FROM rejections GROUP BY reason")
        return {r["reason"]: int(r["n"]) for r in rows}

    async def merge_device_health(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Merge observations of any instance (see :meth:`Store.merge_device_health`)."""
        newer = (
            "(excluded.hb_seq IS NOT NULL"
            " AND (device_health.hb_seq IS NULL OR excluded.hb_seq > device_health.hb_seq))"
        )
        later = "(device_health.status_at IS NULL OR excluded.status_at > device_health.status_at)"
        readings = ", ".join(
            f"{c}=CASE WHEN {newer} THEN excluded.{c} ELSE device_health.{c} END"
            for c in ("battery_pct", "signal_dbm", "firmware", "uptime_s", "hb_seq")
        )
        values = sorted(
            (
                r["device_id"],
                _instant(r.get("last_seen_at")),
                r.get("hb_seq"),
                r.get("status"),
                _instant(r.get("status_at")),
                r.get("battery_pct"),
                r.get("signal_dbm"),
                r.get("firmware"),
                r.get("uptime_s"),
                r.get("merged_by"),
            )
            for r in rows
        )
        claims = {str(r["device_id"]): int(r["hb_seq"]) for r in rows if r.get("hb_seq") is not None}

        async def run(c: Conn) -> list[dict[str, Any]]:
            # Row locks in one order (no deadlock between instances), held until the upsert below.
            stored = await c.fetch(
                "SELECT device_id, hb_seq FROM device_health WHERE device_id = ANY($1::text[])"
                ' ORDER BY device_id COLLATE "C" FOR UPDATE',
                [v[0] for v in values],
            )
            refused = [d for d, seq in stored if seq is not None and d in claims and claims[d] <= seq]
            await c.executemany(
                "INSERT INTO device_health(device_id, last_seen_at, hb_seq, status, status_at, battery_pct,"
                " signal_dbm, firmware, uptime_s, merged_by, rev)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, nextval('device_health_rev'))"
                f" ON CONFLICT (device_id) DO UPDATE SET {readings},"
                # The row is wholly the merger's view only if its heartbeat and its status both won.
                f" merged_by=CASE WHEN {newer} AND (device_health.status_at IS NULL"
                " OR excluded.status_at >= device_health.status_at) THEN excluded.merged_by END,"
                f" last_seen_at=CASE WHEN {newer}"
                " THEN GREATEST(device_health.last_seen_at, excluded.last_seen_at)"
                " ELSE device_health.last_seen_at END,"
                f" status=CASE WHEN {later} AND excluded.status_at IS NOT NULL"
                " THEN excluded.status ELSE device_health.status END,"
                " status_at=GREATEST(device_health.status_at, excluded.status_at),"
                " rev=excluded.rev",
                values,
            )
            if not refused:
                return []
            back = await c.fetch("SELECT * FROM device_health WHERE device_id = ANY($1::text[])", refused)
            return [_health_row(r) for r in back]

        return await self._tx(run)

    async def device_health(self, *, after_rev: int = 0, not_by: str | None = None) -> list[dict[str, Any]]:
        rows = await self._fetch(
            "SELECT * FROM device_health WHERE rev > $1"
            " AND ($2::text IS NULL OR merged_by IS DISTINCT FROM $2)"
            ' ORDER BY device_id COLLATE "C"',
            after_rev,
            not_by,
        )
        return await parse_rows(_health_row, rows)

    async def device_health_of(self, device_ids: Sequence[str]) -> list[dict[str, Any]]:
        rows = await self._fetch(
            'SELECT * FROM device_health WHERE device_id = ANY($1::text[]) ORDER BY device_id COLLATE "C"',
            list(device_ids),
        )
        return [_health_row(r) for r in rows]

    async def flagged_devices(self) -> list[str]:
        rows = await self._fetch(
            "SELECT device_id FROM device_health WHERE flags <> '[]' ORDER BY device_id COLLATE \"C\""
        )
        return [str(r[0]) for r in rows]

    async def device_last_seen(self, device_ids: Sequence[str]) -> dict[str, datetime]:
        rows = await self._fetch(
            "SELECT device_id, last_seen_at FROM device_health"
            " WHERE device_id = ANY($1::text[]) AND last_seen_at IS NOT NULL",
            list(device_ids),
        )
        return {str(r["device_id"]): r["last_seen_at"].astimezone(UTC) for r in rows}

    async def record_health_changes(self, changes: Sequence[FlagChange]) -> list[int]:
        if not changes:
            return []

        async def work(c: Conn) -> list[int]:
            await c.executemany(
                "INSERT INTO device_health(device_id, flags) VALUES ($1, $2)"
                " ON CONFLICT (device_id) DO UPDATE SET flags=excluded.flags",
                [(ch.device_id, ch.flags) for ch in changes],
            )
            rows = await c.fetch(
                "INSERT INTO operator_events(at, kind, device_id, message)"
                " SELECT $1, e.kind, e.device_id, e.message"
                " FROM unnest($2::text[], $3::text[], $4::text[])"
                " WITH ORDINALITY AS e(kind, device_id, message, n)"
                " ORDER BY e.n RETURNING id",
                utcnow(),
                [ch.kind for ch in changes],
                [ch.device_id for ch in changes],
                [ch.message for ch in changes],
            )
            return sorted(int(r["id"]) for r in rows)  # ids follow the ORDER BY: in the order given

        return await self._tx(work)

    async def hold_lease(self, name: str, owner: str, *, now: float, lease_s: float) -> bool:
        holder = await self._tx(
            lambda c: c.fetchval(
                "INSERT INTO leases(name, owner, until) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE"
                " SET owner=excluded.owner, until=excluded.until"
                " WHERE leases.owner=excluded.owner OR leases.until < $4 RETURNING owner",
                name,
                owner,
                now + lease_s,
                now,
            )
        )
        return bool(holder == owner)

    async def release_lease(self, name: str, owner: str) -> None:
        await self._tx(lambda c: c.execute("DELETE FROM leases WHERE name=$1 AND owner=$2", name, owner))

    async def lease_holders(self, prefix: str, *, now: float) -> list[str]:
        rows = await self._fetch(
            "SELECT DISTINCT owner FROM leases WHERE starts_with(name, $1) AND until >= $2 ORDER BY owner",
            prefix,
            now,
        )
        return [str(r["owner"]) for r in rows]

    async def add_operator_event(
        self,
        kind: str,
        message: str,
        *,
        alert_id: str | None = None,
        device_id: str | None = None,
        scope: Sequence[str] | None = None,
        topic: str | None = None,
    ) -> int:
        event_id: int = await self._tx(
            lambda c: c.fetchval(
                "INSERT INTO operator_events(at, kind, alert_id, device_id, message, scope, topic)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                utcnow(),
                kind,
                alert_id,
                device_id,
                message,
                None if scope is None else list(scope),
                topic,
            )
        )
        return int(event_id)

    async def operator_events(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._fetch("SELECT * FROM operator_events ORDER BY id DESC LIMIT $1", limit)
        return [_event(r) for r in rows]

    async def operator_event(self, event_id: int) -> dict[str, Any] | None:
        row = await self._fetchrow("SELECT * FROM operator_events WHERE id = $1", event_id)
        return None if row is None else _event(row)

    async def open_system_alarms(self) -> dict[str, str]:
        rows = await self._fetch(
            "SELECT DISTINCT ON (topic) topic, kind, message FROM operator_events"
            " WHERE topic IS NOT NULL ORDER BY topic, id DESC"
        )
        return {r["topic"]: r["message"] for r in rows if r["kind"] == "alarm"}

    async def open_scoped_alarms(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._fetch(
            "SELECT * FROM operator_events WHERE scope IS NOT NULL AND handled_by IS NULL"
            " ORDER BY id DESC LIMIT $1",
            limit,
        )
        return [_event(r) for r in rows]

    async def handle_operator_event(self, event_id: int, by: str) -> bool:
        status: str = await self._tx(
            lambda c: c.execute(
                "UPDATE operator_events SET handled_by = $1 WHERE id = $2 AND handled_by IS NULL",
                by,
                event_id,
            )
        )
        return status == "UPDATE 1"


def _event(row: asyncpg.Record) -> dict[str, Any]:
    scope = row["scope"]
    return {**dict(row), "at": _iso(row["at"]), "scope": None if scope is None else list(scope)}
