"""PostgreSQL side of access control, audit, notes, search and retention (mixed into PostgresStore).

Kept apart from :mod:`dispatcher.store.postgres` so that each file stays
small; the same SQL as :mod:`dispatcher.store.sqlite_access`, in PostgreSQL's
dialect (``->>`` for JSON paths, numbered parameters).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

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
from dispatcher.store.pgutil import _ALERT_COLUMNS, Conn, _status_count, _utc, utcnow
from dispatcher.store.rows import in_turns, parse_rows_in_turns

T = TypeVar("T")


class PostgresAccess:
    """Users, sessions, login failures, audit, notes, alert search and the RGPD purge."""

    if TYPE_CHECKING:

        async def _tx(self, work: Callable[[Conn], Awaitable[T]]) -> T: ...
        async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...
        async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None: ...
        def _alert(self, row: asyncpg.Record) -> AlertRecord: ...
        async def alert_exists(self, alert_id: str) -> bool: ...

    @staticmethod
    def _user(row: asyncpg.Record) -> UserRecord:
        return UserRecord(
            id=row["id"],
            username=row["username"],
            display_name=row["display_name"],
            password_hash=row["password_hash"],
            role=row["role"],
            practitioner_id=row["practitioner_id"],
            conventions=tuple(row["conventions"]),
            disabled=row["disabled"],
            created_at=row["created_at"],
        )

    async def add_user(self, user: NewUser) -> UserRecord:
        if await self.get_user_by_name(user.username) is not None:
            raise AlreadyExists(f"user {user.username!r} already exists")
        row = await self._fetchrow(
            "INSERT INTO users(username, display_name, password_hash, role, practitioner_id,"
            " conventions, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            user.username,
            user.display_name,
            user.password_hash,
            user.role,
            user.practitioner_id,
            list(user.conventions),
            utcnow(),
        )
        assert row is not None  # INSERT … RETURNING always returns the row
        return self._user(row)

    async def get_user(self, user_id: int) -> UserRecord:
        row = await self._fetchrow("SELECT * FROM users WHERE id=$1", user_id)
        if row is None:
            raise NotFound(f"user {user_id} does not exist")
        return self._user(row)

    async def get_user_by_name(self, username: str) -> UserRecord | None:
        row = await self._fetchrow("SELECT * FROM users WHERE username=$1", username)
        return None if row is None else self._user(row)

    async def list_users(self) -> list[UserRecord]:
        return [self._user(r) for r in await self._fetch('SELECT * FROM users ORDER BY username COLLATE "C"')]

    async def users_page(self, words: Sequence[str], limit: int) -> tuple[list[UserRecord], int]:
        where, params = _users_holding(words)
        order = f'ORDER BY username COLLATE "C" LIMIT ${len(params) + 1}'
        rows = await self._fetch(f"SELECT * FROM users{where} {order}", *params, limit)
        total = await self._fetchrow(f"SELECT count(*) FROM users{where}", *params)
        return [self._user(r) for r in rows], int(total[0]) if total else 0

    async def update_user(self, user: UserRecord) -> None:
        status = await self._tx(
            lambda c: c.execute(
                "UPDATE users SET display_name=$1, password_hash=$2, role=$3, practitioner_id=$4,"
                " conventions=$5, disabled=$6 WHERE id=$7",
                user.display_name,
                user.password_hash,
                user.role,
                user.practitioner_id,
                list(user.conventions),
                user.disabled,
                user.id,
            )
        )
        if _status_count(status) == 0:
            raise NotFound(f"user {user.id} does not exist")

    async def create_session(self, token_hash: str, user_id: int, expires_at: datetime) -> None:
        await self._tx(
            lambda c: c.execute(
                "INSERT INTO sessions(token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
                token_hash,
                user_id,
                utcnow(),
                _utc(expires_at),
            )
        )

    async def session_user(self, token_hash: str, now: datetime) -> UserRecord | None:
        row = await self._fetchrow(
            "SELECT u.* FROM sessions s JOIN users u ON u.id=s.user_id"
            " WHERE s.token_hash=$1 AND s.expires_at>$2 AND NOT u.disabled",
            token_hash,
            _utc(now),
        )
        return None if row is None else self._user(row)

    async def delete_session(self, token_hash: str) -> None:
        await self._tx(lambda c: c.execute("DELETE FROM sessions WHERE token_hash=$1", token_hash))

    async def delete_user_sessions(self, user_id: int) -> int:
        status = await self._tx(lambda c: c.execute("DELETE FROM sessions WHERE user_id=$1", user_id))
        return _status_count(status)

    async def record_login_failure(self, username: str, ip: str, at: datetime) -> None:
        await self._tx(
            lambda c: c.execute(
                "INSERT INTO login_failures(username, ip, at) VALUES ($1, $2, $3)", username, ip, _utc(at)
            )
        )

    async def count_login_failures(self, username: str, ip: str, since: datetime) -> int:
        n = await self._tx(
            lambda c: c.fetchval(
                "SELECT COUNT(*) FROM login_failures WHERE username=$1 AND ip=$2 AND at>=$3",
                username,
                ip,
                _utc(since),
            )
        )
        return int(n)

    async def clear_login_failures(self, username: str, ip: str) -> None:
        await self._tx(
            lambda c: c.execute("DELETE FROM login_failures WHERE username=$1 AND ip=$2", username, ip)
        )

    async def take_pin_try(self, device_id: str, *, burst: float, refill_per_s: float, now: datetime) -> bool:
        """Take one of ``device_id``'s cancel PIN tries; False (nothing taken) when none is left."""
        tokens = await self._tx(
            lambda c: c.fetchval(
                "INSERT INTO pin_tries AS p (device_id, tokens, updated_at) VALUES ($1, $2::float8 - 1, $4)"
                " ON CONFLICT (device_id) DO UPDATE SET"
                " tokens = LEAST($2::float8, p.tokens"
                " + GREATEST(0, EXTRACT(EPOCH FROM $4 - p.updated_at)::float8) * $3::float8) - 1,"
                " updated_at = GREATEST(p.updated_at, $4)"
                " WHERE LEAST($2::float8, p.tokens"
                " + GREATEST(0, EXTRACT(EPOCH FROM $4 - p.updated_at)::float8) * $3::float8) >= 1"
                " RETURNING p.tokens",
                device_id,
                burst,
                refill_per_s,
                _utc(now),
            )
        )
        return tokens is not None

    async def begin_quarantine(self, device_id: str, until: datetime) -> bool:
        """Record ``device_id`` quarantined until ``until``; False if it already was (same episode)."""
        inserted = await self._tx(
            lambda c: c.fetchval(
                "INSERT INTO quarantines (device_id, until_at) VALUES ($1, $2)"
                " ON CONFLICT (device_id) DO NOTHING RETURNING device_id",
                device_id,
                _utc(until),
            )
        )
        return inserted is not None

    async def quarantines(self) -> list[tuple[str, datetime]]:
        """Every quarantined device and the end of its quarantine, soonest first."""
        rows = await self._fetch("SELECT device_id, until_at FROM quarantines ORDER BY until_at, device_id")
        return [(r["device_id"], r["until_at"]) for r in rows]

    async def end_quarantine(self, device_id: str) -> bool:
        """Forget ``device_id``'s quarantine; False if there was none (another instance ended it)."""
        deleted = await self._tx(
            lambda c: c.fetchval("DELETE FROM quarantines WHERE device_id=$1 RETURNING device_id", device_id)
        )
        return deleted is not None

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
        entry_id = await self._tx(
            lambda c: c.fetchval(
                "INSERT INTO audit_log(at, user_id, username, action, target_kind, target_id, ip, detail)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                utcnow(),
                user_id,
                username,
                action,
                target_kind,
                target_id,
                ip,
                detail or {},
            )
        )
        return int(entry_id)

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
        where = _Where()
        for column, value in (
            ("action", action),
            ("target_kind", target_kind),
            ("target_id", target_id),
            ("user_id", user_id),
        ):
            if value is not None:
                where.add(f"{column}=$?", value)
        if before_id is not None:
            where.add("id<$?", before_id)
        if since is not None:
            where.add("at>=$?", _utc(since))
        if until is not None:
            where.add("at<$?", _utc(until))
        rows = await self._fetch(
            f"SELECT * FROM audit_log WHERE {where.sql} ORDER BY id DESC LIMIT {where.next()}",
            *where.params,
            limit,
        )
        return [
            AuditEntry(
                id=r["id"],
                at=r["at"],
                user_id=r["user_id"],
                username=r["username"],
                action=r["action"],
                target_kind=r["target_kind"],
                target_id=r["target_id"],
                ip=r["ip"],
                detail=r["detail"],
            )
            for r in rows
        ]

    async def _search_rows(self, query: AlertQuery, columns: str = _ALERT_COLUMNS) -> list[asyncpg.Record]:
        """The rows :meth:`search_alerts` turns into records (``columns`` of them)."""
        if (
            (query.convention_names is not None and not query.convention_names)
            or query.practitioner_ids == ()
            or query.ids == ()
        ):
            return []
        where = _Where()
        if query.states:
            where.add("state = ANY($?::text[])", list(query.states))
        if query.kinds:
            where.add("kind = ANY($?::text[])", list(query.kinds))
        if query.convention_names is not None:
            # The same parameter twice: the convention routed to, or one of the territory's.
            where.add(
                "(context->>'convention_name' = ANY($?::text[])"
                " OR COALESCE(context->'operator_scope', '[]'::jsonb) ?| $?::text[])",
                list(query.convention_names),
            )
        if query.practitioner_id is not None:
            where.add("context->'practitioner'->>'id' = $?", query.practitioner_id)
        if query.practitioner_ids:
            where.add("context->'practitioner'->>'id' = ANY($?::text[])", list(query.practitioner_ids))
        if query.device_id is not None:
            where.add("device_id=$?", query.device_id)
        if query.ids is not None:
            where.add("id = ANY($?::text[])", list(query.ids))
        if query.since is not None:
            where.add("received_at>=$?", _utc(query.since))
        if query.until is not None:
            where.add("received_at<$?", _utc(query.until))
        return await self._fetch(
            f"SELECT {columns} FROM alerts WHERE {where.sql}"
            f" ORDER BY received_at DESC LIMIT {where.next()}",
            *where.params,
            query.limit,
        )

    async def search_alerts(self, query: AlertQuery) -> list[AlertRecord]:
        return [self._alert(r) for r in await self._search_rows(query)]

    async def alert_pages(self, query: AlertQuery) -> AsyncGenerator[Iterator[AlertRecord], None]:
        # asyncpg decodes the documents as it receives the rows: here the pages only
        # spare the caller holding every record at once.
        rows = await self._search_rows(query)
        async for turn in in_turns(rows):
            yield map(self._alert, turn)

    async def alert_heads(self, query: AlertQuery) -> list[AlertHead]:
        rows = await self._search_rows(query, "id, version, received_at")
        return [AlertHead(r[0], r[1], r[2]) for r in rows]

    async def alert_facts(self, query: AlertQuery) -> list[AlertFacts]:
        return await parse_rows_in_turns(_facts, await self._search_rows(query, _FACTS_COLUMNS))

    async def add_note(self, alert_id: str, *, user_id: int | None, author: str, text: str) -> NoteRecord:
        if not await self.alert_exists(alert_id):
            raise NotFound(f"alert {alert_id!r} does not exist")
        at = utcnow()
        note_id = await self._tx(
            lambda c: c.fetchval(
                "INSERT INTO alert_notes(alert_id, at, user_id, author, text) VALUES ($1, $2, $3, $4, $5)"
                " RETURNING id",
                alert_id,
                at,
                user_id,
                author,
                text,
            )
        )
        return NoteRecord(int(note_id), alert_id, at, user_id, author, text)

    async def notes_for(self, alert_id: str) -> list[NoteRecord]:
        rows = await self._fetch("SELECT * FROM alert_notes WHERE alert_id=$1 ORDER BY id", alert_id)
        return [
            NoteRecord(r["id"], r["alert_id"], r["at"], r["user_id"], r["author"], r["text"]) for r in rows
        ]

    async def notification_times(self, alert_id: str) -> dict[int, tuple[datetime, datetime]]:
        rows = await self._fetch(
            "SELECT id, created_at, updated_at FROM notifications WHERE alert_id=$1", alert_id
        )
        return {r["id"]: (r["created_at"], r["updated_at"]) for r in rows}

    async def alert_event_times(self, alert_ids: Sequence[str]) -> dict[str, dict[str, datetime]]:
        result: dict[str, dict[str, datetime]] = {a: {} for a in alert_ids}
        rows = await self._fetch(
            "SELECT alert_id, kind, MIN(at) AS first_at FROM alert_events"
            " WHERE alert_id = ANY($1::text[]) GROUP BY alert_id, kind",
            list(alert_ids),
        )
        for r in rows:
            result[r["alert_id"]][r["kind"]] = r["first_at"]
        return result

    async def purge_locations(self, cutoff: datetime, *, now: datetime) -> PurgeReport:
        """Erase location data older than ``cutoff`` in one transaction (see AccessStore)."""
        return await self._tx(lambda c: self._purge(c, _utc(cutoff), _utc(now)))

    async def _purge(self, conn: Conn, cutoff: datetime, now: datetime) -> PurgeReport:
        alerts = await conn.fetch(
            "SELECT id, context FROM alerts WHERE received_at<$1 AND location_purged_at IS NULL FOR UPDATE",
            cutoff,
        )
        await conn.executemany(
            "UPDATE alerts SET fix=NULL, raw=''::bytea, context=$2, location_purged_at=$3 WHERE id=$1",
            [(r["id"], purged_context(r["context"]), now) for r in alerts],
        )
        await conn.execute(
            "UPDATE alert_events SET detail=jsonb_set(detail, '{description}', to_jsonb($1::text))"
            " WHERE alert_id = ANY($2::text[]) AND kind='located'",
            PURGED_LOCATION,
            [r["id"] for r in alerts],
        )
        fixes = await conn.execute(
            "UPDATE devices SET last_fix=NULL WHERE last_fix IS NOT NULL"
            " AND COALESCE((last_fix->>'fix_ts')::numeric, 0)<$1",
            int(cutoff.timestamp() * 1000),
        )
        positions = await conn.execute(
            "DELETE FROM alert_positions WHERE alert_id IN (SELECT id FROM alerts WHERE received_at<$1)",
            cutoff,
        )
        visits = await conn.execute("DELETE FROM visits WHERE ends_at<$1", cutoff)
        sessions = await conn.execute("DELETE FROM sessions WHERE expires_at<=$1", now)
        failures = await conn.execute("DELETE FROM login_failures WHERE at<$1", now - timedelta(days=1))
        return PurgeReport(
            alerts=len(alerts),
            visits=_status_count(visits),
            last_fixes=_status_count(fixes),
            positions=_status_count(positions),
            sessions=_status_count(sessions),
            login_failures=_status_count(failures),
        )


class _Where:
    """A conjunction of conditions with numbered parameters (``$?`` becomes ``$n``)."""

    def __init__(self) -> None:
        self.clauses: list[str] = ["true"]
        self.params: list[Any] = []

    def add(self, clause: str, value: Any) -> None:
        self.params.append(value)
        self.clauses.append(clause.replace("$?", f"${len(self.params)}"))

    def next(self) -> str:
        """The placeholder of the parameter after these (e.g. the LIMIT)."""
        return f"${len(self.params) + 1}"

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses)


def purged_context(context: dict[str, Any] | None) -> dict[str, Any] | None:
    """An alert context without its location details: source, commune and département remain."""
    if not isinstance(context, dict):
        return context
    location = context.get("location") or {}
    return {
        **context,
        "location": {
            "source": location.get("source", "unknown"),
            "description": PURGED_LOCATION,
            "stale": bool(location.get("stale", False)),
            "insee": location.get("insee"),
            "departement": location.get("departement"),
        },
    }


# What the statistics count of an alert, read from its documents by PostgreSQL (AlertFacts' order).
_FACTS_COLUMNS = (
    "id, kind, received_at, state, context->>'convention_name', context->'operator_scope',"
    " context#>>'{practitioner,id}', context#>>'{location,source}', context#>>'{site,kind}',"
    " COALESCE(escalation->'duress' = 'true'::jsonb, false),"
    " (SELECT MIN(at) FROM alert_events e WHERE e.alert_id = alerts.id AND e.kind = 'Acknowledged')"
)


def _facts(r: asyncpg.Record) -> AlertFacts:
    return AlertFacts(
        id=r[0],
        kind=r[1],
        received_at=r[2],
        state=r[3],
        convention_name=r[4],
        operator_scope=tuple(r[5] or ()),
        practitioner_id=r[6],
        location_source=r[7],
        site_kind=r[8],
        duress=r[9],
        acknowledged_at=r[10],
    )


def _users_holding(words: Sequence[str]) -> tuple[str, list[str]]:
    """A WHERE clause for accounts holding every word (ILIKE ignores case), and its parameters."""
    held = " AND ".join(
        f"(username ILIKE ${n} ESCAPE '\\' OR display_name ILIKE ${n} ESCAPE '\\'"
        f" OR coalesce(practitioner_id, '') ILIKE ${n} ESCAPE '\\')"
        for n in range(1, len(words) + 1)
    )
    return (f" WHERE {held}" if words else ""), [contains_pattern(w) for w in words]
