"""PostgreSQL implementation of the store, for several dispatcher instances (asyncpg).

Same semantics as :class:`dispatcher.store.sqlite.SqliteStore`, method for
method; what differs is what several instances sharing one database need:

* every public method is one transaction on a connection from a pool, and a
  commit is durable when it returns (``synchronous_commit`` must stay ``on``),
  but for the notification claim, committed with ``synchronous_commit=off``
  like SqliteStore's (see :meth:`PostgresStore.claim_notifications`);
* escalation timers and notifications are claimed with ``SELECT … FOR UPDATE
  SKIP LOCKED`` plus a lease column: two instances never claim the same row,
  no transaction is ever held across a provider call, and a dead instance's
  timers are taken over once its lease has run out;
* ``insert_alerts`` locks the rows of the batch's devices (in id order, so two
  instances cannot deadlock) and *merges* the stored anti-replay window with
  the caller's, so the stored window never forgets a sequence number another
  instance accepted;
* per-alert serialisation relies on the optimistic ``version`` check: a
  concurrent writer makes :meth:`apply_transition` raise :class:`Conflict`,
  and the engine re-reads and re-applies.

Driver errors are translated like the SQLite store's: integrity violations
become :class:`AlreadyExists`, a lost or refused connection, a full disk or a
read-only server (a standby after a failover) become :class:`StoreUnavailable`.
Deadlocks and serialization failures are retried a few times first.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from asyncpg import exceptions as pgerr
from pydantic import BaseModel

from dispatcher.domain import Device, DeviceState, HomeVisit
from dispatcher.store.base import (
    PROVIDER_PENDING_STATUSES,
    AlertRecord,
    AlreadyExists,
    CommuneRecord,
    Conflict,
    DeviceCredentials,
    InsertOutcome,
    Lease,
    NewAlert,
    NotFound,
    NotificationRecord,
    NotificationSpec,
    ReconcileRow,
    StoreError,
    StoreUnavailable,
    Timer,
    Transition,
    claimed_record,
)
from dispatcher.store.documents import DocumentDirectory
from dispatcher.store.pgutil import _ALERT_COLUMNS, Conn, _iso, _status_count, _utc, utcnow
from dispatcher.store.postgres_access import PostgresAccess
from dispatcher.store.postgres_positions import PostgresPositions
from dispatcher.store.postgres_responders import PostgresResponders, insert_transition_links
from dispatcher.store.postgres_schema import MIGRATION_LOCK_KEY, MIGRATIONS, SCHEMA_VERSION_TABLE
from dispatcher.store.postgres_visits import PostgresVisits
from protocol.replay import SequenceWindow, merge_windows

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_NOTIFICATION_COLUMNS = (
    "id, alert_id, contact_id, contact_name, phone, channel, purpose, tier, round, status,"
    " provider_sid, error, attempts, duress, actor"
)

# Transient by nature: the server rolled the transaction back, running it again is safe.
_RETRYABLE = (pgerr.DeadlockDetectedError, pgerr.SerializationError)
# The database cannot be written now; the caller keeps its data and retries later.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    pgerr.PostgresConnectionError,
    pgerr.ConnectionDoesNotExistError,
    pgerr.InsufficientResourcesError,  # disk full, out of memory, too many connections
    pgerr.OperatorInterventionError,  # admin shutdown, crash recovery, cannot connect now
    pgerr.ReadOnlySQLTransactionError,  # connected to a standby
    pgerr.QueryCanceledError,  # statement_timeout
    pgerr.InvalidCatalogNameError,  # database does not exist (yet)
)
_ATTEMPTS = 3


def _instant(text: str | None) -> datetime | None:
    """An ISO instant from the health snapshots, as PostgreSQL's timestamptz wants it."""
    return datetime.fromisoformat(text) if text else None


def _health_row(r: asyncpg.Record) -> dict[str, Any]:
    """A device_health row with its instants as the ISO text the SQLite store keeps."""
    return {**dict(r), "last_seen_at": _iso(r["last_seen_at"]), "status_at": _iso(r["status_at"])}


async def _init_connection(conn: Conn) -> None:
    """Documents travel as Python objects; directory docs are cast to text to validate as JSON."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class PostgresStore(PostgresAccess, PostgresVisits, PostgresPositions, PostgresResponders, DocumentDirectory):
    """The store on a PostgreSQL database. Create with :meth:`open`."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], *, acquire_timeout_s: float = 10.0) -> None:
        self._pool = pool
        # A pool exhausted for this long means the database is in trouble: StoreUnavailable.
        self._acquire_timeout_s = acquire_timeout_s

    @classmethod
    async def open(
        cls, dsn: str, *, min_size: int = 2, max_size: int = 10, command_timeout: float = 30.0
    ) -> PostgresStore:
        """Connect a pool to ``dsn`` (``postgresql://user@host:port/db``) and migrate the schema."""
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=command_timeout,
                init=_init_connection,
                # Durability is the point of the store: refuse a server-wide "off".
                server_settings={"synchronous_commit": "on", "application_name": "vigie-dispatcher"},
            )
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"connexion à PostgreSQL impossible : {exc}") from exc
        store = cls(pool)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def _migrate(self) -> None:
        async def run(conn: Conn) -> None:
            # Serialises concurrent starts; released at the end of the transaction.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await conn.execute(SCHEMA_VERSION_TABLE)
            current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_version(version) VALUES ($1)", number)

        await self._tx(run)

    async def schema_version(self) -> int:
        """The last migration applied (for operators and tests)."""
        version: int = await self._tx(lambda c: c.fetchval("SELECT MAX(version) FROM schema_version"))
        return version

    # -- transactions and error mapping --------------------------------------------

    async def _tx(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction; retry transient aborts, translate driver errors."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self._pool.acquire(timeout=self._acquire_timeout_s) as conn, conn.transaction():
                    return await work(conn)
            except StoreError:
                raise
            except _RETRYABLE as exc:
                if attempt == _ATTEMPTS:
                    raise StoreUnavailable(f"transaction interrompue à chaque essai : {exc}") from exc
            except pgerr.IntegrityConstraintViolationError as exc:
                # As SqliteStore does with sqlite3.IntegrityError (foreign keys included).
                raise AlreadyExists(str(exc)) from exc
            except _UNAVAILABLE as exc:
                raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._tx(lambda c: c.fetch(sql, *args))
        return rows

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._tx(lambda c: c.fetchrow(sql, *args))
        return row

    # -- directory -----------------------------------------------------------------

    async def _upsert_doc(self, table: str, record: BaseModel, record_id: str) -> None:
        sql = (
            f"INSERT INTO {table}(id, doc) VALUES ($1, $2::text::jsonb)"
            " ON CONFLICT (id) DO UPDATE SET doc=excluded.doc"
        )
        await self._tx(lambda c: c.execute(sql, record_id, record.model_dump_json()))

    async def _get_doc(self, table: str, model: type[M], record_id: str) -> M:
        row = await self._fetchrow(f"SELECT doc::text AS doc FROM {table} WHERE id=$1", record_id)
        if row is None:
            raise NotFound(f"{table[:-1]} {record_id!r} does not exist")
        return model.model_validate_json(row["doc"])

    async def _list_docs(self, table: str, model: type[M]) -> list[M]:
        rows = await self._fetch(f'SELECT doc::text AS doc FROM {table} ORDER BY id COLLATE "C"')
        return [model.model_validate_json(r["doc"]) for r in rows]

    async def add_device(self, device: Device, hmac_key: bytes) -> None:
        await self._check_device_bindings(device)
        sql = (
            "INSERT INTO devices(id, doc, state, hmac_key, created_at)"
            " VALUES ($1, $2::text::jsonb, $3, $4, $5)"
        )
        try:
            await self._tx(
                lambda c: c.execute(
                    sql, device.id, device.model_dump_json(), device.state.value, hmac_key, utcnow()
                )
            )
        except AlreadyExists:
            raise AlreadyExists(f"device {device.id!r} already exists") from None

    async def update_device(self, device: Device) -> None:
        await self._check_device_bindings(device)
        status = await self._tx(
            lambda c: c.execute(
                "UPDATE devices SET doc=$1::text::jsonb, state=$2 WHERE id=$3",
                device.model_dump_json(),
                device.state.value,
                device.id,
            )
        )
        if _status_count(status) == 0:
            raise NotFound(f"device {device.id!r} does not exist")

    async def device_credentials(self) -> Sequence[DeviceCredentials]:
        rows = await self._fetch("SELECT id, hmac_key, state FROM devices")
        return [DeviceCredentials(r["id"], bytes(r["hmac_key"]), DeviceState(r["state"])) for r in rows]

    async def directory_version(self) -> int:
        row = await self._fetchrow("SELECT version FROM directory_version WHERE id=1")
        return 0 if row is None else int(row["version"])

    # -- communes and last known positions (GeoStore) ------------------------------

    async def replace_communes(self, departements: Sequence[str], communes: Sequence[CommuneRecord]) -> int:
        async def run(conn: Conn) -> int:
            await conn.execute("DELETE FROM communes WHERE departement = ANY($1::text[])", list(departements))
            await conn.executemany(
                "INSERT INTO communes(code, nom, departement, geometry) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (code) DO UPDATE SET nom=excluded.nom, departement=excluded.departement,"
                " geometry=excluded.geometry",
                [(c.code, c.nom, c.departement, c.wkb) for c in communes],
            )
            await conn.execute("UPDATE communes_version SET version=version+1 WHERE id=1")
            return int(await conn.fetchval("SELECT count(*) FROM communes"))

        return await self._tx(run)

    async def list_communes(self) -> list[CommuneRecord]:
        rows = await self._fetch("SELECT code, nom, departement, geometry FROM communes ORDER BY code")
        return [CommuneRecord(r["code"], r["nom"], r["departement"], bytes(r["geometry"])) for r in rows]

    async def communes_version(self) -> int:
        row = await self._fetchrow("SELECT version FROM communes_version WHERE id=1")
        return 0 if row is None else int(row["version"])

    async def save_last_fixes(self, fixes: dict[str, dict[str, Any]]) -> None:
        if not fixes:
            return
        rows = [(json.dumps(f), d, f["fix_ts"]) for d, f in fixes.items()]
        sql = (
            "UPDATE devices SET last_fix=$1::text::jsonb WHERE id=$2 AND (last_fix IS NULL"
            " OR COALESCE((last_fix->>'fix_ts')::numeric, 0) < $3)"
        )
        await self._tx(lambda c: c.executemany(sql, rows))

    async def replay_windows(self) -> dict[str, SequenceWindow]:
        """Persisted anti-replay windows of every device."""
        rows = await self._fetch("SELECT id, replay_high, replay_seen FROM devices")
        return {
            r["id"]: SequenceWindow.from_stored(r["replay_high"], bytes(r["replay_seen"] or b""))
            for r in rows
        }

    async def deployment_secret(self, name: str, candidate: str) -> str:
        async def run(conn: Conn) -> str:
            await conn.execute(
                "INSERT INTO deployment_secrets(name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                name,
                candidate,
            )
            value: str = await conn.fetchval("SELECT value FROM deployment_secrets WHERE name=$1", name)
            return value

        return await self._tx(run)

    async def save_replay_windows(self, windows: dict[str, SequenceWindow]) -> None:
        """Flush in-memory windows in one transaction, merged with what is stored.

        SqliteStore skips a window older than the stored one; here another
        instance may have stored seqs this one never saw, so both are kept.
        """

        async def run(conn: Conn) -> None:
            stored = await self._lock_windows(conn, windows.keys())
            rows = [
                (d, merged.high, merged.to_bytes())
                for d, w in windows.items()
                if d in stored and (merged := merge_windows(stored[d], w)) != stored[d]
            ]
            await conn.executemany("UPDATE devices SET replay_high=$2, replay_seen=$3 WHERE id=$1", rows)

        await self._tx(run)

    async def admit_sequence(self, device_id: str, seq: int) -> bool:
        async def run(conn: Conn) -> bool:
            window = (await self._lock_windows(conn, [device_id])).get(device_id)
            if window is None or not window.is_fresh(seq):
                return False
            window = window.admit(seq)
            await conn.execute(
                "UPDATE devices SET replay_high=$2, replay_seen=$3 WHERE id=$1",
                device_id,
                window.high,
                window.to_bytes(),
            )
            return True

        return await self._tx(run)

    async def _lock_windows(self, conn: Conn, device_ids: Iterable[str]) -> dict[str, SequenceWindow]:
        """Lock the devices' rows (sorted: a fixed order cannot deadlock) and read their windows."""
        rows = await conn.fetch(
            "SELECT id, replay_high, replay_seen FROM devices WHERE id = ANY($1::text[])"
            ' ORDER BY id COLLATE "C" FOR UPDATE',
            sorted(set(device_ids)),
        )
        return {
            r["id"]: SequenceWindow.from_stored(r["replay_high"], bytes(r["replay_seen"] or b""))
            for r in rows
        }

    async def upsert_visit(self, visit: HomeVisit) -> None:
        await self.get_practitioner(visit.practitioner_id)
        sql = (
            "INSERT INTO visits(id, practitioner_id, ends_at, doc) VALUES ($1, $2, $3, $4::text::jsonb)"
            " ON CONFLICT (id) DO UPDATE SET practitioner_id=excluded.practitioner_id,"
            " ends_at=excluded.ends_at, doc=excluded.doc"
        )
        await self._tx(
            lambda c: c.execute(
                sql, visit.id, visit.practitioner_id, _utc(visit.ends_at), visit.model_dump_json()
            )
        )

    async def delete_visit(self, visit_id: str) -> None:
        status = await self._tx(lambda c: c.execute("DELETE FROM visits WHERE id=$1", visit_id))
        if _status_count(status) == 0:
            raise NotFound(f"visit {visit_id!r} does not exist")

    async def list_visits(self, practitioner_id: str | None = None) -> Sequence[HomeVisit]:
        if practitioner_id is None:
            rows = await self._fetch("SELECT doc::text AS doc FROM visits ORDER BY ends_at")
        else:
            rows = await self._fetch(
                "SELECT doc::text AS doc FROM visits WHERE practitioner_id=$1 ORDER BY ends_at",
                practitioner_id,
            )
        return [HomeVisit.model_validate_json(r["doc"]) for r in rows]

    # -- alerts --------------------------------------------------------------------

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

    # -- notifications -------------------------------------------------------------

    @staticmethod
    def _notification(row: asyncpg.Record) -> NotificationRecord:
        return NotificationRecord(*(row[k] for k in _NOTIFICATION_COLUMNS.replace(" ", "").split(",")))

    async def claim_notifications(
        self, owner: str, *, ids: Sequence[int] | None = None, lease_s: float = 30.0, now: float
    ) -> list[NotificationRecord]:
        """Mark pending notifications as being sent by ``owner`` and return them.

        ``FOR UPDATE SKIP LOCKED``: rows another instance is claiming right now
        are skipped, rows it already claimed are no longer 'pending' when the
        lock is taken (re-checked), so a row is claimed once. The rows are
        returned as they were before the claim, as SqliteStore does.
        """
        where = "status='pending'" if ids is None else "status='pending' AND id = ANY($4::bigint[])"
        sql = (
            f"WITH c AS (SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE {where}"
            " ORDER BY id FOR UPDATE SKIP LOCKED)"
            " UPDATE notifications n SET status='sending', lease_owner=$1, lease_until=$2,"
            " attempts=n.attempts+1, updated_at=$3 FROM c WHERE n.id=c.id"
            f" RETURNING {', '.join('c.' + col.strip() for col in _NOTIFICATION_COLUMNS.split(','))}"
        )
        args: list[Any] = [owner, now + lease_s, utcnow()]
        if ids is not None:
            args.append(list(ids))

        async def claim(conn: Conn) -> list[asyncpg.Record]:
            # The claim precedes every first provider request: no wait for the WAL
            # flush here (as SqliteStore's synchronous=NORMAL claim). A server
            # crash may lose it - the row is then 'pending' again and sent after
            # recovery, possibly twice; see docs/lifecycle.md.
            await conn.execute("SET LOCAL synchronous_commit = off")
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows

        rows = await self._tx(claim)
        return sorted((self._notification(r) for r in rows), key=lambda n: n.id)

    async def record_notification(
        self, notification_id: int, *, status: str, provider_sid: str | None = None, error: str | None = None
    ) -> None:
        """Store what the provider answered for one notification."""
        await self._tx(
            lambda c: c.execute(
                "UPDATE notifications SET status=$1, provider_sid=COALESCE($2, provider_sid), error=$3,"
                " lease_owner=NULL, lease_until=NULL, updated_at=$4 WHERE id=$5",
                status,
                provider_sid,
                error,
                utcnow(),
                notification_id,
            )
        )

    async def notification_by_sid(self, sid: str) -> NotificationRecord | None:
        row = await self._fetchrow(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE provider_sid=$1", sid
        )
        return None if row is None else self._notification(row)

    async def notifications_for(self, alert_id: str) -> list[NotificationRecord]:
        rows = await self._fetch(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE alert_id=$1 ORDER BY id", alert_id
        )
        return [self._notification(r) for r in rows]

    async def record_notifications(self, rows: Sequence[tuple[int, str, str | None, str | None]]) -> None:
        """Several outcomes ``(id, status, provider_sid, error)`` in one transaction (group commit)."""
        now = utcnow()
        await self._tx(
            lambda c: c.executemany(
                "UPDATE notifications SET status=$1, provider_sid=COALESCE($2, provider_sid), error=$3,"
                " lease_owner=NULL, lease_until=NULL, updated_at=$4 WHERE id=$5",
                [(status, sid, error, now, nid) for nid, status, sid, error in rows],
            )
        )

    async def mark_notification(
        self, notification_id: int, *, status: str, owner: str, lease_until: float, error: str | None
    ) -> None:
        """Move a claimed row between 'sending' and 'retry_wait', renewing its lease."""
        await self._tx(
            lambda c: c.execute(
                "UPDATE notifications SET status=$1, lease_owner=$2, lease_until=$3,"
                " error=COALESCE($4, error), updated_at=$5 WHERE id=$6",
                status,
                owner,
                lease_until,
                error,
                utcnow(),
                notification_id,
            )
        )

    async def abandoned_notifications(self, now: float, owner: str | None = None) -> list[NotificationRecord]:
        """Rows left 'sending' or 'retry_wait' by a crashed owner (lease run out, or ``owner`` itself)."""
        rows = await self._fetch(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE status IN ('sending', 'retry_wait')"
            " AND (lease_until<$1 OR lease_owner=$2) ORDER BY id",
            now,
            owner,
        )
        return [self._notification(r) for r in rows]

    async def active_alert_for_phone(self, phone: str, states: Sequence[str]) -> str | None:
        """Most recent alert in ``states`` that notified ``phone`` (for SMS replies)."""
        row = await self._fetchrow(
            "SELECT n.alert_id FROM notifications n JOIN alerts a ON a.id=n.alert_id"
            " WHERE n.phone=$1 AND a.state = ANY($2::text[]) AND n.purpose='alert'"
            " ORDER BY n.id DESC LIMIT 1",
            phone,
            list(states),
        )
        return None if row is None else str(row["alert_id"])

    async def notifications_to_reconcile(
        self, *, stuck_before: datetime, limit: int = 200
    ) -> list[ReconcileRow]:
        """Rows 'unknown', and provider-pending rows unchanged since ``stuck_before`` (oldest first)."""
        columns = ", ".join(f"n.{c.strip()}" for c in _NOTIFICATION_COLUMNS.split(","))
        rows = await self._fetch(
            f"SELECT {columns}, n.created_at AS n_created, n.updated_at AS n_updated, a.state AS a_state"
            " FROM notifications n JOIN alerts a ON a.id=n.alert_id"
            " WHERE n.status='unknown' OR (n.status = ANY($1::text[]) AND n.updated_at<$2)"
            " ORDER BY n.updated_at LIMIT $3",
            list(PROVIDER_PENDING_STATUSES),
            stuck_before,
            limit,
        )
        return [
            ReconcileRow(self._notification(r), r["n_created"], r["n_updated"], str(r["a_state"]))
            for r in rows
        ]

    async def settle_notification(
        self,
        notification_id: int,
        *,
        expected: str,
        status: str,
        provider_sid: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Compare-and-set of a row's status (see the protocol)."""
        done = await self._tx(
            lambda c: c.execute(
                "UPDATE notifications SET status=$1, provider_sid=COALESCE($2, provider_sid), error=$3,"
                " lease_owner=NULL, lease_until=NULL, updated_at=$4 WHERE id=$5 AND status=$6",
                status,
                provider_sid,
                error,
                utcnow(),
                notification_id,
                expected,
            )
        )
        return str(done).endswith(" 1")

    async def open_alerts_for_phone(self, phone: str, states: Sequence[str]) -> list[str]:
        """Alerts in ``states`` that sent ``phone`` an alert notification, most recent first."""
        rows = await self._fetch(
            "SELECT n.alert_id, MAX(n.id) AS last FROM notifications n JOIN alerts a ON a.id=n.alert_id"
            " WHERE n.phone=$1 AND a.state = ANY($2::text[]) AND n.purpose='alert'"
            " GROUP BY n.alert_id ORDER BY last DESC",
            phone,
            list(states),
        )
        return [str(r["alert_id"]) for r in rows]

    async def claim_inbound_message(self, sid: str, at: datetime) -> bool:
        """Remember a provider message id; False when it was already seen (a replayed webhook)."""
        status = await self._tx(
            lambda c: c.execute(
                "INSERT INTO inbound_messages(sid, at) VALUES ($1, $2) ON CONFLICT (sid) DO NOTHING",
                sid,
                _utc(at),
            )
        )
        return _status_count(status) == 1

    async def forget_inbound_messages(self, before: datetime) -> int:
        """Forget the provider message ids claimed before ``before``; how many (retention)."""
        status = await self._tx(
            lambda c: c.execute("DELETE FROM inbound_messages WHERE at < $1", _utc(before))
        )
        return _status_count(status)

    async def notifications_in_doubt(self, channel: str, phone: str) -> list[int]:
        rows = await self._fetch(
            "SELECT id FROM notifications WHERE phone=$1 AND channel=$2 AND provider_sid IS NULL"
            " AND status IN ('sending', 'unknown') ORDER BY id",
            phone,
            channel,
        )
        return [int(r["id"]) for r in rows]

    async def disown_provider_records(self, sids: Sequence[str], at: datetime) -> None:
        await self._tx(
            lambda c: c.executemany(
                "INSERT INTO disowned_provider_records(sid, at) VALUES ($1, $2) ON CONFLICT (sid) DO NOTHING",
                [(sid, _utc(at)) for sid in sids],
            )
        )

    async def disowned_provider_records(self, sids: Sequence[str]) -> set[str]:
        if not sids:
            return set()
        rows = await self._fetch(
            "SELECT sid FROM disowned_provider_records WHERE sid = ANY($1::text[])", list(sids)
        )
        return {str(r["sid"]) for r in rows}

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

    # -- rejections, health, operator events ---------------------------------------

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
        return [_health_row(r) for r in rows]

    async def record_health_change(self, device_id: str, flags: str, kind: str, message: str) -> int:
        async def work(c: Conn) -> int:
            await c.execute(
                "INSERT INTO device_health(device_id, flags) VALUES ($1, $2)"
                " ON CONFLICT (device_id) DO UPDATE SET flags=excluded.flags",
                device_id,
                flags,
            )
            event_id: int = await c.fetchval(
                "INSERT INTO operator_events(at, kind, device_id, message) VALUES ($1, $2, $3, $4)"
                " RETURNING id",
                utcnow(),
                kind,
                device_id,
                message,
            )
            return event_id

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

    async def add_operator_event(
        self, kind: str, message: str, *, alert_id: str | None = None, device_id: str | None = None
    ) -> int:
        event_id: int = await self._tx(
            lambda c: c.fetchval(
                "INSERT INTO operator_events(at, kind, alert_id, device_id, message)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                utcnow(),
                kind,
                alert_id,
                device_id,
                message,
            )
        )
        return int(event_id)

    async def operator_events(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._fetch("SELECT * FROM operator_events ORDER BY id DESC LIMIT $1", limit)
        return [{**dict(r), "at": _iso(r["at"])} for r in rows]
