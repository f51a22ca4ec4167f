"""SQLite implementation of the store (the embedded default), via aiosqlite.

WAL journal with ``synchronous=FULL``: a committed alert survives a power
loss, not only a process crash. Each public method is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import msgspec
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
    StoreUnavailable,
    Timer,
    Transition,
    claimed_record,
)
from dispatcher.store.documents import DocumentDirectory
from dispatcher.store.schema import MIGRATIONS
from dispatcher.store.sqlite_access import SqliteAccess
from dispatcher.store.sqlite_positions import SqlitePositions
from dispatcher.store.sqlite_responders import SqliteResponders, insert_transition_links
from dispatcher.store.sqlite_visits import SqliteVisits
from dispatcher.store.writelock import PriorityWriteLock
from protocol.replay import SequenceWindow, merge_windows

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_NOTIFICATION_COLUMNS = (
    "id, alert_id, contact_id, contact_name, phone, channel, purpose, tier, round, status,"
    " provider_sid, error, attempts, duress, actor"
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class SqliteStore(SqliteAccess, SqliteVisits, SqlitePositions, SqliteResponders, DocumentDirectory):
    """The store on one SQLite file. Create with :meth:`open`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        # One connection serves every coroutine: transactions must not interleave,
        # and those on an alert's way to its first SMS go first.
        self._write_lock = PriorityWriteLock()

    @classmethod
    async def open(cls, path: Path | str) -> SqliteStore:
        """Open (creating if needed) and migrate the database at ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            for pragma in (
                "PRAGMA journal_mode=WAL",
                "PRAGMA synchronous=FULL",
                "PRAGMA foreign_keys=ON",
                "PRAGMA busy_timeout=5000",
            ):
                await conn.execute(pragma)
            store = cls(conn, path)
            await store._migrate()
        except BaseException:
            # aiosqlite's worker thread is not a daemon: left open, it keeps the process alive.
            await conn.close()
            raise
        return store

    async def close(self) -> None:
        await self._conn.close()

    async def _migrate(self) -> None:
        async with self._conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        current = int(row[0]) if row else 0
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            await self._conn.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction (routine priority); driver errors become StoreUnavailable."""
        async with self._write_lock.hold(urgent=False):
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(str(exc)) from exc
            try:
                yield self._conn
                await self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    await self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise AlreadyExists(str(exc)) from exc
                if isinstance(exc, sqlite3.OperationalError):
                    raise StoreUnavailable(str(exc)) from exc
                raise

    async def _atomic(
        self, work: Callable[[sqlite3.Connection], T], *, power_safe: bool = True, urgent: bool = True
    ) -> T:
        """Run ``work`` as one write transaction, whole, on aiosqlite's thread.

        For the hot path's transactions: :meth:`_tx` costs a thread hop (and an
        event-loop wake-up) per statement - about ten per alert inserted -
        this costs one. ``power_safe=False`` commits without the WAL fsync
        (``synchronous=NORMAL``): durable against a crash or kill -9 of the
        process, not against a power loss; the next power-safe commit syncs it.
        ``urgent=False`` lets the alert path's transactions go first.
        """
        async with self._write_lock.hold(urgent=urgent):
            try:
                # aiosqlite has no public "run this function on your thread".
                result: T = await self._conn._execute(_run_atomic, self._conn._conn, work, power_safe)
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(str(exc)) from exc
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(str(exc)) from exc
            return result

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        # One hop to aiosqlite's thread, not three (execute, fetch, close): every
        # provider callback looks its notification up by SID.
        row: sqlite3.Row | None = await self._conn._execute(_fetchone, self._conn._conn, sql, tuple(params))
        return row

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        rows: list[sqlite3.Row] = await self._conn._execute(_fetchall, self._conn._conn, sql, tuple(params))
        return rows

    # -- directory -----------------------------------------------------------------

    async def _upsert_doc(self, table: str, record: BaseModel, record_id: str) -> None:
        async with self._tx() as tx:
            await tx.execute(
                f"INSERT INTO {table}(id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc=excluded.doc",
                (record_id, record.model_dump_json()),
            )

    async def _get_doc(self, table: str, model: type[M], record_id: str) -> M:
        row = await self._one(f"SELECT doc FROM {table} WHERE id=?", (record_id,))
        if row is None:
            raise NotFound(f"{table[:-1]} {record_id!r} does not exist")
        return model.model_validate_json(row["doc"])

    async def _list_docs(self, table: str, model: type[M]) -> list[M]:
        return [
            model.model_validate_json(r["doc"])
            for r in await self._all(f"SELECT doc FROM {table} ORDER BY id")
        ]

    async def add_device(self, device: Device, hmac_key: bytes) -> None:
        await self._check_device_bindings(device)
        if await self._one("SELECT 1 FROM devices WHERE id=?", (device.id,)) is not None:
            raise AlreadyExists(f"device {device.id!r} already exists")
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO devices(id, doc, state, hmac_key, created_at) VALUES (?, ?, ?, ?, ?)",
                (device.id, device.model_dump_json(), device.state.value, hmac_key, _iso(utcnow())),
            )

    async def update_device(self, device: Device) -> None:
        await self._check_device_bindings(device)
        async with self._tx() as tx:
            cur = await tx.execute(
                "UPDATE devices SET doc=?, state=? WHERE id=?",
                (device.model_dump_json(), device.state, device.id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"device {device.id!r} does not exist")

    async def device_credentials(self) -> Sequence[DeviceCredentials]:
        rows = await self._all("SELECT id, hmac_key, state FROM devices")
        return [DeviceCredentials(r["id"], bytes(r["hmac_key"]), DeviceState(r["state"])) for r in rows]

    async def directory_version(self) -> int:
        row = await self._one("SELECT version FROM directory_version WHERE id=1")
        return 0 if row is None else int(row["version"])

    async def replay_windows(self) -> dict[str, SequenceWindow]:
        """Persisted anti-replay windows of every device."""
        rows = await self._all("SELECT id, replay_high, replay_seen FROM devices")
        return {
            r["id"]: SequenceWindow.from_stored(r["replay_high"], bytes(r["replay_seen"] or b""))
            for r in rows
        }

    async def save_replay_windows(self, windows: dict[str, SequenceWindow]) -> None:
        """Flush in-memory windows in one transaction, merged with the stored ones (their union:
        :meth:`admit_sequence` may have stored numbers this window has not seen)."""
        async with self._tx() as tx:
            cur = await tx.execute(
                "SELECT id, replay_high, replay_seen FROM devices"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(windows)),),
            )
            stored = {
                r[0]: SequenceWindow.from_stored(r[1], bytes(r[2] or b"")) for r in await cur.fetchall()
            }
            rows = [
                (merged.high, merged.to_bytes(), d)
                for d, w in windows.items()
                if d in stored and (merged := merge_windows(stored[d], w)) != stored[d]
            ]
            await tx.executemany("UPDATE devices SET replay_high=?, replay_seen=? WHERE id=?", rows)

    async def admit_sequence(self, device_id: str, seq: int) -> bool:
        async with self._tx() as tx:
            cur = await tx.execute("SELECT replay_high, replay_seen FROM devices WHERE id=?", (device_id,))
            row = await cur.fetchone()
            if row is None:
                return False
            window = SequenceWindow.from_stored(row[0], bytes(row[1] or b""))
            if not window.is_fresh(seq):
                return False
            window = window.admit(seq)
            await tx.execute(
                "UPDATE devices SET replay_high=?, replay_seen=? WHERE id=?",
                (window.high, window.to_bytes(), device_id),
            )
            return True

    async def deployment_secret(self, name: str, candidate: str) -> str:
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO deployment_secrets(name, value) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
                (name, candidate),
            )
            cur = await tx.execute("SELECT value FROM deployment_secrets WHERE name=?", (name,))
            row = await cur.fetchone()
        assert row is not None
        return str(row[0])

    # -- communes and last known positions (GeoStore) ------------------------------

    async def replace_communes(self, departements: Sequence[str], communes: Sequence[CommuneRecord]) -> int:
        async with self._tx() as tx:
            await tx.executemany("DELETE FROM communes WHERE departement=?", [(d,) for d in departements])
            await tx.executemany(
                "INSERT INTO communes(code, nom, departement, geometry) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(code) DO UPDATE SET nom=excluded.nom, departement=excluded.departement,"
                " geometry=excluded.geometry",
                [(c.code, c.nom, c.departement, c.wkb) for c in communes],
            )
            await tx.execute("UPDATE communes_version SET version=version+1 WHERE id=1")
            async with tx.execute("SELECT count(*) FROM communes") as cur:
                row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def list_communes(self) -> list[CommuneRecord]:
        rows = await self._all("SELECT code, nom, departement, geometry FROM communes ORDER BY code")
        return [CommuneRecord(r["code"], r["nom"], r["departement"], bytes(r["geometry"])) for r in rows]

    async def communes_version(self) -> int:
        row = await self._one("SELECT version FROM communes_version WHERE id=1")
        return 0 if row is None else int(row["version"])

    async def save_last_fixes(self, fixes: dict[str, dict[str, Any]]) -> None:
        if not fixes:
            return
        async with self._tx() as tx:
            await tx.executemany(
                "UPDATE devices SET last_fix=? WHERE id=? AND (last_fix IS NULL"
                " OR COALESCE(json_extract(last_fix, '$.fix_ts'), 0) < ?)",
                [(json.dumps(f), d, f["fix_ts"]) for d, f in fixes.items()],
            )

    async def upsert_visit(self, visit: HomeVisit) -> None:
        await self.get_practitioner(visit.practitioner_id)
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO visits(id, practitioner_id, ends_at, doc) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET practitioner_id=excluded.practitioner_id,"
                " ends_at=excluded.ends_at, doc=excluded.doc",
                (visit.id, visit.practitioner_id, _iso(visit.ends_at), visit.model_dump_json()),
            )

    async def delete_visit(self, visit_id: str) -> None:
        async with self._tx() as tx:
            cur = await tx.execute("DELETE FROM visits WHERE id=?", (visit_id,))
            if cur.rowcount == 0:
                raise NotFound(f"visit {visit_id!r} does not exist")

    async def list_visits(self, practitioner_id: str | None = None) -> Sequence[HomeVisit]:
        if practitioner_id is None:
            rows = await self._all("SELECT doc FROM visits ORDER BY ends_at")
        else:
            rows = await self._all(
                "SELECT doc FROM visits WHERE practitioner_id=? ORDER BY ends_at", (practitioner_id,)
            )
        return [HomeVisit.model_validate_json(r["doc"]) for r in rows]

    # -- alerts --------------------------------------------------------------------

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
            rows = await self._all(
                f"SELECT * FROM alerts WHERE state IN ({marks}) ORDER BY received_at DESC LIMIT ?",
                (*states, limit),
            )
        else:
            rows = await self._all("SELECT * FROM alerts ORDER BY received_at DESC LIMIT ?", (limit,))
        return [self._alert(r) for r in rows]

    async def unstarted_alerts(self) -> list[AlertRecord]:
        """Alerts persisted without an escalation (routing failed before commit)."""
        rows = await self._all("SELECT * FROM alerts WHERE escalation IS NULL ORDER BY received_at")
        return [self._alert(r) for r in rows]

    async def alert_events(self, alert_id: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT at, kind, detail FROM alert_events WHERE alert_id=? ORDER BY id", (alert_id,)
        )
        return [{"at": r["at"], "kind": r["kind"], "detail": json.loads(r["detail"])} for r in rows]

    async def last_fix(self, device_id: str) -> dict[str, Any] | None:
        row = await self._one("SELECT last_fix FROM devices WHERE id=?", (device_id,))
        return None if row is None else _loads(row["last_fix"])

    # -- notifications -------------------------------------------------------------

    def _notification(self, row: sqlite3.Row) -> NotificationRecord:
        record = NotificationRecord(*(row[k] for k in _NOTIFICATION_COLUMNS.replace(" ", "").split(",")))
        return replace(record, duress=bool(record.duress))  # SQLite stores booleans as integers

    async def claim_notifications(
        self, owner: str, *, ids: Sequence[int] | None = None, lease_s: float = 30.0, now: float
    ) -> list[NotificationRecord]:
        """Mark pending notifications as being sent by ``owner`` and return them.

        Once claimed, a crash leaves the row 'sending': we then cannot know
        whether the provider received it, so it is never re-sent blindly.

        The claim is committed without fsync (see ``_atomic``): it precedes
        every first provider request, and the alert's own commit already paid
        for one fsync. A process crash keeps it; only a power loss can revert
        it to 'pending' (and the row be sent again) - docs/lifecycle.md.
        """
        where = "status='pending'"
        params: list[Any] = []
        if ids is not None:
            where += f" AND id IN ({','.join('?' * len(ids))})"
            params.extend(ids)

        def claim(tx: sqlite3.Connection) -> list[NotificationRecord]:
            sql = f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE {where}"
            rows = [self._notification(r) for r in tx.execute(sql, params).fetchall()]
            tx.executemany(
                "UPDATE notifications SET status='sending', lease_owner=?, lease_until=?,"
                " attempts=attempts+1, updated_at=? WHERE id=?",
                [(owner, now + lease_s, _iso(utcnow()), r.id) for r in rows],
            )
            return rows

        return await self._atomic(claim, power_safe=False)

    async def record_notification(
        self, notification_id: int, *, status: str, provider_sid: str | None = None, error: str | None = None
    ) -> None:
        """Store what the provider answered for one notification."""
        async with self._tx() as tx:
            await tx.execute(
                "UPDATE notifications SET status=?, provider_sid=COALESCE(?, provider_sid), error=?,"
                " lease_owner=NULL, lease_until=NULL, updated_at=? WHERE id=?",
                (status, provider_sid, error, _iso(utcnow()), notification_id),
            )

    async def record_notifications(self, rows: Sequence[tuple[int, str, str | None, str | None]]) -> None:
        """Several outcomes ``(id, status, provider_sid, error)`` in ONE transaction (group commit)."""
        now = _iso(utcnow())
        params = [(status, sid, error, now, nid) for nid, status, sid, error in rows]
        await self._atomic(
            urgent=False,
            work=lambda tx: tx.executemany(
                "UPDATE notifications SET status=?, provider_sid=COALESCE(?, provider_sid), error=?,"
                " lease_owner=NULL, lease_until=NULL, updated_at=? WHERE id=?",
                params,
            ),
        )

    async def notification_by_sid(self, sid: str) -> NotificationRecord | None:
        row = await self._one(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE provider_sid=?", (sid,)
        )
        return None if row is None else self._notification(row)

    async def notifications_for(self, alert_id: str) -> list[NotificationRecord]:
        rows = await self._all(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE alert_id=? ORDER BY id", (alert_id,)
        )
        return [self._notification(r) for r in rows]

    async def mark_notification(
        self, notification_id: int, *, status: str, owner: str, lease_until: float, error: str | None
    ) -> None:
        """Move a claimed row between 'sending' and 'retry_wait', renewing its lease."""
        async with self._tx() as tx:
            await tx.execute(
                "UPDATE notifications SET status=?, lease_owner=?, lease_until=?, error=COALESCE(?, error),"
                " updated_at=? WHERE id=?",
                (status, owner, lease_until, error, _iso(utcnow()), notification_id),
            )

    async def abandoned_notifications(self, now: float, owner: str | None = None) -> list[NotificationRecord]:
        """Rows left 'sending' or 'retry_wait' by a crashed owner.

        A lease that ran out marks a dead owner; so does ``owner`` itself when
        an instance restarts under the same id (it has claimed nothing yet, but
        its previous life's leases may still run for up to 30 s).
        """
        rows = await self._all(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE status IN ('sending', 'retry_wait')"
            " AND (lease_until<? OR lease_owner=?)",
            (now, owner),
        )
        return [self._notification(r) for r in rows]

    async def active_alert_for_phone(self, phone: str, states: Sequence[str]) -> str | None:
        """Most recent alert in ``states`` that notified ``phone`` (for SMS replies)."""
        marks = ",".join("?" * len(states))
        row = await self._one(
            f"SELECT n.alert_id FROM notifications n JOIN alerts a ON a.id=n.alert_id "
            f"WHERE n.phone=? AND a.state IN ({marks}) AND n.purpose='alert' ORDER BY n.id DESC LIMIT 1",
            (phone, *states),
        )
        return None if row is None else str(row["alert_id"])

    async def notifications_to_reconcile(
        self, *, stuck_before: datetime, limit: int = 200
    ) -> list[ReconcileRow]:
        """Rows 'unknown', and provider-pending rows unchanged since ``stuck_before`` (oldest first)."""
        marks = ",".join("?" * len(PROVIDER_PENDING_STATUSES))
        columns = ", ".join(f"n.{c.strip()}" for c in _NOTIFICATION_COLUMNS.split(","))
        rows = await self._all(
            f"SELECT {columns}, n.created_at AS n_created, n.updated_at AS n_updated, a.state AS a_state"
            " FROM notifications n JOIN alerts a ON a.id=n.alert_id"
            f" WHERE n.status='unknown' OR (n.status IN ({marks}) AND n.updated_at<?)"
            " ORDER BY n.updated_at LIMIT ?",
            (*PROVIDER_PENDING_STATUSES, _iso(stuck_before), limit),
        )
        return [
            ReconcileRow(
                self._notification(r),
                datetime.fromisoformat(r["n_created"]),
                datetime.fromisoformat(r["n_updated"]),
                str(r["a_state"]),
            )
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

        def settle(tx: sqlite3.Connection) -> bool:
            cursor = tx.execute(
                "UPDATE notifications SET status=?, provider_sid=COALESCE(?, provider_sid), error=?,"
                " lease_owner=NULL, lease_until=NULL, updated_at=? WHERE id=? AND status=?",
                (status, provider_sid, error, _iso(utcnow()), notification_id, expected),
            )
            return cursor.rowcount == 1

        return await self._atomic(settle, urgent=False)

    async def open_alerts_for_phone(self, phone: str, states: Sequence[str]) -> list[str]:
        """Alerts in ``states`` that sent ``phone`` an alert notification, most recent first."""
        marks = ",".join("?" * len(states))
        rows = await self._all(
            f"SELECT n.alert_id, MAX(n.id) AS last FROM notifications n JOIN alerts a ON a.id=n.alert_id "
            f"WHERE n.phone=? AND a.state IN ({marks}) AND n.purpose='alert' "
            f"GROUP BY n.alert_id ORDER BY last DESC",
            (phone, *states),
        )
        return [str(r["alert_id"]) for r in rows]

    async def claim_inbound_message(self, sid: str, at: datetime) -> bool:
        """Remember a provider message id; False when it was already seen (a replayed webhook)."""
        async with self._tx() as tx:
            cur = await tx.execute(
                "INSERT OR IGNORE INTO inbound_messages(sid, at) VALUES (?, ?)", (sid, _iso(at))
            )
            return cur.rowcount == 1

    async def forget_inbound_messages(self, before: datetime) -> int:
        """Forget the provider message ids claimed before ``before``; how many (retention)."""
        async with self._tx() as tx:
            cur = await tx.execute("DELETE FROM inbound_messages WHERE at < ?", (_iso(before),))
            return cur.rowcount

    async def notifications_in_doubt(self, channel: str, phone: str) -> list[int]:
        rows = await self._all(
            "SELECT id FROM notifications WHERE phone=? AND channel=? AND provider_sid IS NULL"
            " AND status IN ('sending', 'unknown') ORDER BY id",
            (phone, channel),
        )
        return [int(r["id"]) for r in rows]

    async def disown_provider_records(self, sids: Sequence[str], at: datetime) -> None:
        async with self._tx() as tx:
            await tx.executemany(
                "INSERT OR IGNORE INTO disowned_provider_records(sid, at) VALUES (?, ?)",
                [(sid, _iso(at)) for sid in sids],
            )

    async def disowned_provider_records(self, sids: Sequence[str]) -> set[str]:
        if not sids:
            return set()
        marks = ",".join("?" * len(sids))
        rows = await self._all(
            f"SELECT sid FROM disowned_provider_records WHERE sid IN ({marks})", tuple(sids)
        )
        return {str(r["sid"]) for r in rows}

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

    # -- rejections, health, operator events ---------------------------------------

    async def record_rejections(self, rows: Sequence[tuple[str | None, str, str, str]]) -> None:
        """Persist rejected messages: (device_id, topic, reason, detail)."""
        now = _iso(utcnow())
        async with self._tx() as tx:
            await tx.executemany(
                "INSERT INTO rejections(at, device_id, topic, reason, detail) VALUES (?, ?, ?, ?, ?)",
                [(now, d, t, r, detail[:500]) for d, t, r, detail in rows],
            )

    async def rejection_counts(self) -> dict[str, int]:
        rows = await self._all("SELECT reason, COUNT(*) AS n FROM rejections GROUP BY reason")
        return {r["reason"]: r["n"] for r in rows}

    async def merge_device_health(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Merge observations of any instance (see :meth:`Store.merge_device_health`)."""
        # NULL compares as unknown: COALESCE makes "newer than nothing" true.
        newer = "COALESCE(excluded.hb_seq > device_health.hb_seq, excluded.hb_seq IS NOT NULL)"
        later = "COALESCE(excluded.status_at > device_health.status_at, excluded.status_at IS NOT NULL)"
        readings = ", ".join(
            f"{c}=CASE WHEN {newer} THEN excluded.{c} ELSE device_health.{c} END"
            for c in ("battery_pct", "signal_dbm", "firmware", "uptime_s", "hb_seq")
        )
        # SET expressions all see the row as it was: the order of the assignments does not matter.
        seen = (
            f"last_seen_at=CASE WHEN {newer} AND COALESCE(excluded.last_seen_at > device_health.last_seen_at,"
            " TRUE) THEN excluded.last_seen_at ELSE device_health.last_seen_at END"
        )
        # The row is wholly the merger's view only if its heartbeat and its status both won.
        mine = (
            f"merged_by=CASE WHEN {newer} AND COALESCE(excluded.status_at >= device_health.status_at,"
            " device_health.status_at IS NULL) THEN excluded.merged_by END"
        )
        claims = {str(r["device_id"]): int(r["hb_seq"]) for r in rows if r.get("hb_seq") is not None}
        async with self._tx() as tx:
            refused = await self._refused_heartbeats(tx, claims)
            await tx.executemany(
                "INSERT INTO device_health(device_id, last_seen_at, hb_seq, status, status_at, battery_pct,"
                " signal_dbm, firmware, uptime_s, merged_by, rev) VALUES (:device_id, :last_seen_at,"
                " :hb_seq, :status, :status_at, :battery_pct, :signal_dbm, :firmware, :uptime_s, :merged_by,"
                " (SELECT COALESCE(MAX(rev), 0) + 1 FROM device_health))"
                f" ON CONFLICT(device_id) DO UPDATE SET {readings}, {seen}, {mine},"
                f" status=CASE WHEN {later} THEN excluded.status ELSE device_health.status END,"
                f" status_at=CASE WHEN {later} THEN excluded.status_at ELSE device_health.status_at END,"
                " rev=excluded.rev",
                [_health_params(r) for r in rows],
            )
            if not refused:
                return []
            cur = await tx.execute(
                "SELECT * FROM device_health WHERE device_id IN (SELECT value FROM json_each(?))",
                (json.dumps(refused),),
            )
            return [dict(r) for r in await cur.fetchall()]

    @staticmethod
    async def _refused_heartbeats(tx: aiosqlite.Connection, claims: dict[str, int]) -> list[str]:
        """Devices whose claimed heartbeat is not above the stored one (a replay, or merged late)."""
        if not claims:
            return []
        # Compared in SQL: only the refused (almost never any) come back to Python.
        cur = await tx.execute(
            "SELECT device_id FROM json_each(?) AS claim JOIN device_health ON device_id = claim.key"
            " WHERE hb_seq >= claim.value",
            (json.dumps(claims),),
        )
        return [str(r[0]) for r in await cur.fetchall()]

    async def device_health(self, *, after_rev: int = 0, not_by: str | None = None) -> list[dict[str, Any]]:
        params: tuple[object, ...] = (after_rev,)
        sql = "SELECT * FROM device_health WHERE rev > ?"
        if not_by is not None:  # IS NOT: NULL (a mixed row) is read
            sql += " AND merged_by IS NOT ?"
            params = (after_rev, not_by)
        # Sorted here: ORDER BY device_id in SQL makes SQLite walk all 100,000 rows in key order
        # instead of the few past ``after_rev`` in the rev index.
        rows = [dict(r) for r in await self._all(sql, params)]
        return sorted(rows, key=lambda r: str(r["device_id"]))

    async def record_health_change(self, device_id: str, flags: str, kind: str, message: str) -> int:
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO device_health(device_id, flags) VALUES (?, ?)"
                " ON CONFLICT(device_id) DO UPDATE SET flags=excluded.flags",
                (device_id, flags),
            )
            cur = await tx.execute(
                "INSERT INTO operator_events(at, kind, device_id, message) VALUES (?, ?, ?, ?)",
                (_iso(utcnow()), kind, device_id, message),
            )
            return int(cur.lastrowid or 0)

    async def hold_lease(self, name: str, owner: str, *, now: float, lease_s: float) -> bool:
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO leases(name, owner, until) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE"
                " SET owner=excluded.owner, until=excluded.until"
                " WHERE leases.owner=excluded.owner OR leases.until < ?",
                (name, owner, now + lease_s, now),
            )
            cur = await tx.execute("SELECT owner FROM leases WHERE name=?", (name,))
            row = await cur.fetchone()
        return row is not None and row[0] == owner

    async def release_lease(self, name: str, owner: str) -> None:
        async with self._tx() as tx:
            await tx.execute("DELETE FROM leases WHERE name=? AND owner=?", (name, owner))

    async def add_operator_event(
        self, kind: str, message: str, *, alert_id: str | None = None, device_id: str | None = None
    ) -> int:
        async with self._tx() as tx:
            cur = await tx.execute(
                "INSERT INTO operator_events(at, kind, alert_id, device_id, message) VALUES (?, ?, ?, ?, ?)",
                (_iso(utcnow()), kind, alert_id, device_id, message),
            )
            return int(cur.lastrowid or 0)

    async def operator_events(self, limit: int = 100) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in await self._all("SELECT * FROM operator_events ORDER BY id DESC LIMIT ?", (limit,))
        ]


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


def _run_atomic(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], power_safe: bool) -> T:
    """On aiosqlite's thread: BEGIN, ``work``, COMMIT (ROLLBACK if it raised)."""
    if not power_safe:
        conn.execute("PRAGMA synchronous=NORMAL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result
    finally:
        if not power_safe:
            conn.execute("PRAGMA synchronous=FULL")


def _fetchone(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(sql, params).fetchone()
    return row


def _fetchall(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
    return conn.execute(sql, params).fetchall()


_HEALTH_COLUMNS = (
    "device_id",
    "last_seen_at",
    "hb_seq",
    "status",
    "status_at",
    "battery_pct",
    "signal_dbm",
    "firmware",
    "uptime_s",
    "merged_by",
)


def _health_params(row: dict[str, Any]) -> dict[str, Any]:
    """A health observation as SQL parameters (every column named, ``None`` when absent)."""
    return {k: row.get(k) for k in _HEALTH_COLUMNS}


def _timer(r: Any) -> Timer:
    return Timer(
        r["id"], r["alert_id"], r["kind"], datetime.fromtimestamp(r["due_at"], UTC), json.loads(r["payload"])
    )
