"""SQLite side of access control, audit, notes, search and retention (mixed into SqliteStore).

Added for the REST API and the console; kept apart from
:mod:`dispatcher.store.sqlite` so that each file stays small. Plain SQL that the
PostgreSQL mixin mirrors one to one; JSON paths use json_extract (``->>`` there).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncGenerator, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiosqlite

from dispatcher.store.base import (
    PURGED_LOCATION,
    AlertFacts,
    AlertHead,
    AlertQuery,
    AlertRecord,
    AlreadyExists,
    AuditEntry,
    NewUser,
    NoteRecord,
    NotFound,
    PurgeReport,
    UserRecord,
    contains_pattern,
)
from dispatcher.store.rows import in_turns, parse_rows_in_turns
from dispatcher.store.sqlite_positions import _from_us, _to_us
from dispatcher.store.sqliteutil import _iso, _loads, utcnow


class SqliteAccess:
    """Users, sessions, login failures, audit, notes, alert search and the RGPD purge."""

    if TYPE_CHECKING:

        def _tx(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...
        async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None: ...
        async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]: ...
        async def _all_in_pages(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]: ...
        def _pages(self, sql: str, params: Iterable[Any] = ()) -> AsyncGenerator[list[sqlite3.Row], None]: ...
        def _alert(self, row: sqlite3.Row) -> AlertRecord: ...
        async def alert_exists(self, alert_id: str) -> bool: ...

    @staticmethod
    def _user(row: sqlite3.Row) -> UserRecord:
        return UserRecord(
            id=row["id"],
            username=row["username"],
            display_name=row["display_name"],
            password_hash=row["password_hash"],
            role=row["role"],
            practitioner_id=row["practitioner_id"],
            conventions=tuple(json.loads(row["conventions"])),
            disabled=bool(row["disabled"]),
            created_at=datetime.fromisoformat(row["created_at"]),
        )

    async def add_user(self, user: NewUser) -> UserRecord:
        if await self.get_user_by_name(user.username) is not None:
            raise AlreadyExists(f"user {user.username!r} already exists")
        async with self._tx() as tx:
            cur = await tx.execute(
                "INSERT INTO users(username, display_name, password_hash, role, practitioner_id,"
                " conventions, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    user.username,
                    user.display_name,
                    user.password_hash,
                    user.role,
                    user.practitioner_id,
                    json.dumps(list(user.conventions)),
                    _iso(utcnow()),
                ),
            )
            user_id = int(cur.lastrowid or 0)
        return await self.get_user(user_id)

    async def get_user(self, user_id: int) -> UserRecord:
        row = await self._one("SELECT * FROM users WHERE id=?", (user_id,))
        if row is None:
            raise NotFound(f"user {user_id} does not exist")
        return self._user(row)

    async def get_user_by_name(self, username: str) -> UserRecord | None:
        row = await self._one("SELECT * FROM users WHERE username=?", (username,))
        return None if row is None else self._user(row)

    async def list_users(self) -> list[UserRecord]:
        return [self._user(r) for r in await self._all("SELECT * FROM users ORDER BY username")]

    async def users_page(self, words: Sequence[str], limit: int) -> tuple[list[UserRecord], int]:
        where, params = _users_holding(words)
        rows = await self._all(f"SELECT * FROM users{where} ORDER BY username LIMIT ?", (*params, limit))
        total = await self._one(f"SELECT count(*) FROM users{where}", params)
        return [self._user(r) for r in rows], int(total[0]) if total else 0

    async def update_user(self, user: UserRecord) -> None:
        async with self._tx() as tx:
            cur = await tx.execute(
                "UPDATE users SET display_name=?, password_hash=?, role=?, practitioner_id=?,"
                " conventions=?, disabled=? WHERE id=?",
                (
                    user.display_name,
                    user.password_hash,
                    user.role,
                    user.practitioner_id,
                    json.dumps(list(user.conventions)),
                    int(user.disabled),
                    user.id,
                ),
            )
            if cur.rowcount == 0:
                raise NotFound(f"user {user.id} does not exist")

    async def create_session(self, token_hash: str, user_id: int, expires_at: datetime) -> None:
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO sessions(token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash, user_id, _iso(utcnow()), _iso(expires_at)),
            )

    async def session_user(self, token_hash: str, now: datetime) -> UserRecord | None:
        row = await self._one(
            "SELECT u.* FROM sessions s JOIN users u ON u.id=s.user_id"
            " WHERE s.token_hash=? AND s.expires_at>? AND u.disabled=0",
            (token_hash, _iso(now)),
        )
        return None if row is None else self._user(row)

    async def delete_session(self, token_hash: str) -> None:
        async with self._tx() as tx:
            await tx.execute("DELETE FROM sessions WHERE token_hash=?", (token_hash,))

    async def delete_user_sessions(self, user_id: int) -> int:
        async with self._tx() as tx:
            cur = await tx.execute("DELETE FROM sessions WHERE user_id=?", (user_id,))
            return cur.rowcount

    async def record_login_failure(self, username: str, ip: str, at: datetime) -> None:
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO login_failures(username, ip, at) VALUES (?, ?, ?)", (username, ip, _iso(at))
            )

    async def count_login_failures(self, username: str, ip: str, since: datetime) -> int:
        row = await self._one(
            "SELECT COUNT(*) AS n FROM login_failures WHERE username=? AND ip=? AND at>=?",
            (username, ip, _iso(since)),
        )
        return int(row["n"]) if row else 0

    async def clear_login_failures(self, username: str, ip: str) -> None:
        async with self._tx() as tx:
            await tx.execute("DELETE FROM login_failures WHERE username=? AND ip=?", (username, ip))

    async def take_pin_try(self, device_id: str, *, burst: float, refill_per_s: float, now: datetime) -> bool:
        """Take one of ``device_id``'s cancel PIN tries; False (nothing taken) when none is left."""
        async with self._tx() as tx:
            cur = await tx.execute(
                "INSERT INTO pin_tries(device_id, tokens, updated_us) VALUES (:device, :burst - 1, :now)"
                " ON CONFLICT(device_id) DO UPDATE SET"
                " tokens = MIN(:burst, tokens + MAX(0, :now - updated_us) * :rate / 1e6) - 1,"
                " updated_us = MAX(updated_us, :now)"
                " WHERE MIN(:burst, tokens + MAX(0, :now - updated_us) * :rate / 1e6) >= 1"
                " RETURNING tokens",
                {"device": device_id, "burst": burst, "rate": refill_per_s, "now": _to_us(now)},
            )
            return await cur.fetchone() is not None

    async def begin_quarantine(self, device_id: str, until: datetime) -> bool:
        """Record ``device_id`` quarantined until ``until``; False if it already was (same episode)."""
        async with self._tx() as tx:
            cur = await tx.execute(
                "INSERT INTO quarantines(device_id, until_us) VALUES (?, ?)"
                " ON CONFLICT(device_id) DO NOTHING RETURNING device_id",
                (device_id, _to_us(until)),
            )
            return await cur.fetchone() is not None

    async def quarantines(self) -> list[tuple[str, datetime]]:
        """Every quarantined device and the end of its quarantine, soonest first."""
        rows = await self._all("SELECT device_id, until_us FROM quarantines ORDER BY until_us, device_id")
        return [(r["device_id"], _from_us(r["until_us"])) for r in rows]

    async def end_quarantine(self, device_id: str) -> bool:
        """Forget ``device_id``'s quarantine; False if there was none (another instance ended it)."""
        async with self._tx() as tx:
            cur = await tx.execute(
                "DELETE FROM quarantines WHERE device_id=? RETURNING device_id", (device_id,)
            )
            return await cur.fetchone() is not None

    async def append_audit(
        self,
        *,
        action: str,
        user_id: int | None,
        username: str | None,
        target_kind: str | None = None,
        target_id: str | None = None,
        ip: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        async with self._tx() as tx:
            cur = await tx.execute(
                "INSERT INTO audit_log(at, user_id, username, action, target_kind, target_id, ip, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _iso(utcnow()),
                    user_id,
                    username,
                    action,
                    target_kind,
                    target_id,
                    ip,
                    json.dumps(detail or {}),
                ),
            )
            return int(cur.lastrowid or 0)

    async def list_audit(
        self,
        *,
        action: str | None = None,
        target_kind: str | None = None,
        target_id: str | None = None,
        user_id: int | None = None,
        before_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        where: list[str] = ["1=1"]
        params: list[Any] = []
        for column, value in (
            ("action", action),
            ("target_kind", target_kind),
            ("target_id", target_id),
            ("user_id", user_id),
        ):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        if before_id is not None:
            where.append("id<?")
            params.append(before_id)
        # Instants are stored as UTC ISO text, which sorts as time does.
        for clause, instant in (("at>=?", since), ("at<?", until)):
            if instant is not None:
                where.append(clause)
                params.append(_iso(instant))
        rows = await self._all(
            f"SELECT * FROM audit_log WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [
            AuditEntry(
                id=r["id"],
                at=datetime.fromisoformat(r["at"]),
                user_id=r["user_id"],
                username=r["username"],
                action=r["action"],
                target_kind=r["target_kind"],
                target_id=r["target_id"],
                ip=r["ip"],
                detail=json.loads(r["detail"]),
            )
            for r in rows
        ]

    def _search_statement(self, query: AlertQuery, columns: str = "*") -> tuple[str, tuple[Any, ...]] | None:
        """The SELECT of :meth:`search_alerts` and its parameters (None: nothing can match)."""
        if (
            (query.convention_names is not None and not query.convention_names)
            or query.practitioner_ids == ()
            or query.ids == ()
        ):
            return None
        where: list[str] = ["1=1"]
        params: list[Any] = []

        def among(column: str, values: Sequence[str]) -> None:
            where.append(f"{column} IN ({','.join('?' * len(values))})")
            params.extend(values)

        if query.states:
            among("state", query.states)
        if query.kinds:
            among("kind", query.kinds)
        if query.convention_names is not None:
            marks = ",".join("?" * len(query.convention_names))
            where.append(
                f"(json_extract(context, '$.convention_name') IN ({marks}) OR EXISTS (SELECT 1 FROM"
                f" json_each(context, '$.operator_scope') AS scope WHERE scope.value IN ({marks})))"
            )
            params.extend([*query.convention_names, *query.convention_names])
        if query.practitioner_id is not None:
            where.append("json_extract(context, '$.practitioner.id')=?")
            params.append(query.practitioner_id)
        if query.practitioner_ids:
            among("json_extract(context, '$.practitioner.id')", query.practitioner_ids)
        if query.device_id is not None:
            where.append("device_id=?")
            params.append(query.device_id)
        if query.ids is not None:  # one parameter, whatever their number (SQLite bounds the count)
            where.append("id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(query.ids))
        if query.since is not None:
            where.append("received_at>=?")
            params.append(_iso(query.since))
        if query.until is not None:
            where.append("received_at<?")
            params.append(_iso(query.until))
        sql = f"SELECT {columns} FROM alerts WHERE {' AND '.join(where)} ORDER BY received_at DESC LIMIT ?"
        return sql, (*params, query.limit)

    async def search_alerts(self, query: AlertQuery) -> list[AlertRecord]:
        statement = self._search_statement(query)
        if statement is None:
            return []
        return await parse_rows_in_turns(self._alert, await self._all_in_pages(*statement))

    async def alert_pages(self, query: AlertQuery) -> AsyncGenerator[Iterator[AlertRecord], None]:
        statement = self._search_statement(query)
        if statement is None:
            return
        async with contextlib.aclosing(self._pages(*statement)) as pages:
            async for rows in pages:
                # Smaller pages than the reads': the caller's work on each record (a summary, a
                # place on the map) runs on the loop, and a read's 100 of them held it for 30 ms.
                async for turn in in_turns(rows):
                    yield map(self._alert, turn)

    async def alert_heads(self, query: AlertQuery) -> list[AlertHead]:
        statement = self._search_statement(query, "id, version, received_at")
        if statement is None:
            return []
        rows = await self._all_in_pages(*statement)
        return [AlertHead(r[0], r[1], datetime.fromisoformat(r[2])) for r in rows]

    async def alert_facts(self, query: AlertQuery) -> list[AlertFacts]:
        statement = self._search_statement(query, _FACTS_COLUMNS)
        if statement is None:
            return []
        return await parse_rows_in_turns(_facts, await self._all_in_pages(*statement))

    async def add_note(self, alert_id: str, *, user_id: int | None, author: str, text: str) -> NoteRecord:
        if not await self.alert_exists(alert_id):
            raise NotFound(f"alert {alert_id!r} does not exist")
        at = utcnow()
        async with self._tx() as tx:
            cur = await tx.execute(
                "INSERT INTO alert_notes(alert_id, at, user_id, author, text) VALUES (?, ?, ?, ?, ?)",
                (alert_id, _iso(at), user_id, author, text),
            )
            note_id = int(cur.lastrowid or 0)
        return NoteRecord(note_id, alert_id, at, user_id, author, text)

    async def notes_for(self, alert_id: str) -> list[NoteRecord]:
        rows = await self._all("SELECT * FROM alert_notes WHERE alert_id=? ORDER BY id", (alert_id,))
        return [
            NoteRecord(
                r["id"], r["alert_id"], datetime.fromisoformat(r["at"]), r["user_id"], r["author"], r["text"]
            )
            for r in rows
        ]

    async def notification_times(self, alert_id: str) -> dict[int, tuple[datetime, datetime]]:
        rows = await self._all(
            "SELECT id, created_at, updated_at FROM notifications WHERE alert_id=?", (alert_id,)
        )
        return {
            r["id"]: (datetime.fromisoformat(r["created_at"]), datetime.fromisoformat(r["updated_at"]))
            for r in rows
        }

    async def alert_event_times(self, alert_ids: Sequence[str]) -> dict[str, dict[str, datetime]]:
        result: dict[str, dict[str, datetime]] = {a: {} for a in alert_ids}
        ids = list(alert_ids)
        for start in range(0, len(ids), 500):  # stay below SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            rows = await self._all(
                "SELECT alert_id, kind, MIN(at) AS first_at FROM alert_events"
                f" WHERE alert_id IN ({','.join('?' * len(chunk))}) GROUP BY alert_id, kind",
                chunk,
            )
            for r in rows:
                result[r["alert_id"]][r["kind"]] = datetime.fromisoformat(r["first_at"])
        return result

    async def purge_locations(self, cutoff: datetime, *, now: datetime) -> PurgeReport:
        cut = _iso(cutoff)
        cutoff_ms = int(cutoff.timestamp() * 1000)
        async with self._tx() as tx:
            async with tx.execute(
                "SELECT id, context FROM alerts WHERE received_at<? AND location_purged_at IS NULL", (cut,)
            ) as cur:
                alerts = list(await cur.fetchall())
            for row in alerts:
                await tx.execute(
                    "UPDATE alerts SET fix=NULL, raw=X'', context=?, location_purged_at=? WHERE id=?",
                    (_purged_context(row["context"]), _iso(now), row["id"]),
                )
                await tx.execute(
                    "UPDATE alert_events SET detail=json_set(detail, '$.description', ?)"
                    " WHERE alert_id=? AND kind='located'",
                    (PURGED_LOCATION, row["id"]),
                )
            fixes = await tx.execute(
                "UPDATE devices SET last_fix=NULL WHERE last_fix IS NOT NULL"
                " AND COALESCE(json_extract(last_fix, '$.fix_ts'), 0)<?",
                (cutoff_ms,),
            )
            positions = await tx.execute(
                "DELETE FROM alert_positions WHERE alert_id IN (SELECT id FROM alerts WHERE received_at<?)",
                (cut,),
            )
            visits = await tx.execute("DELETE FROM visits WHERE ends_at<?", (cut,))
            sessions = await tx.execute("DELETE FROM sessions WHERE expires_at<=?", (_iso(now),))
            failures = await tx.execute(
                "DELETE FROM login_failures WHERE at<?", (_iso(now - timedelta(days=1)),)
            )
        return PurgeReport(
            alerts=len(alerts),
            visits=visits.rowcount,
            last_fixes=fixes.rowcount,
            positions=positions.rowcount,
            sessions=sessions.rowcount,
            login_failures=failures.rowcount,
        )


def _purged_context(text: str | None) -> str | None:
    """An alert context without its location details: source, commune and département remain."""
    context = _loads(text)
    if not isinstance(context, dict):
        return text
    location = context.get("location") or {}
    context["location"] = {
        "source": location.get("source", "unknown"),
        "description": PURGED_LOCATION,
        "stale": bool(location.get("stale", False)),
        "insee": location.get("insee"),
        "departement": location.get("departement"),
    }
    return json.dumps(context)


# What the statistics count of an alert, read from its documents by SQLite (AlertFacts' order).
_FACTS_COLUMNS = (
    "id, kind, received_at, state, json_extract(context, '$.convention_name'),"
    " json_extract(context, '$.operator_scope'), json_extract(context, '$.practitioner.id'),"
    " json_extract(context, '$.location.source'), json_extract(context, '$.site.kind'),"
    " json_extract(escalation, '$.duress'),"
    " (SELECT MIN(at) FROM alert_events WHERE alert_id = alerts.id AND kind = 'Acknowledged')"
)


def _facts(row: sqlite3.Row) -> AlertFacts:
    scope, acked = row[5], row[10]
    return AlertFacts(
        id=row[0],
        kind=row[1],
        received_at=datetime.fromisoformat(row[2]),
        state=row[3],
        convention_name=row[4],
        operator_scope=tuple(json.loads(scope)) if scope else (),
        practitioner_id=row[6],
        location_source=row[7],
        site_kind=row[8],
        duress=bool(row[9]),
        acknowledged_at=None if acked is None else datetime.fromisoformat(acked),
    )


def _users_holding(words: Sequence[str]) -> tuple[str, list[str]]:
    """A WHERE clause for accounts holding every word (LIKE ignores ASCII case), and its parameters."""
    if not words:
        return "", []
    held = " AND ".join(
        "(username LIKE ? ESCAPE '\\' OR display_name LIKE ? ESCAPE '\\'"
        " OR coalesce(practitioner_id, '') LIKE ? ESCAPE '\\')"
        for _ in words
    )
    return f" WHERE {held}", [contains_pattern(w) for w in words for _ in range(3)]
