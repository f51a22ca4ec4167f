"""SQLite implementation of the store (the embedded default), via aiosqlite.

WAL journal with ``synchronous=FULL``: a committed alert survives a power
loss, not only a process crash. Each public method is one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from dispatcher.store.base import AlreadyExists, StoreUnavailable
from dispatcher.store.schema import MIGRATIONS
from dispatcher.store.sqlite_access import SqliteAccess
from dispatcher.store.sqlite_alerts import SqliteAlerts
from dispatcher.store.sqlite_directory import SqliteDirectory
from dispatcher.store.sqlite_fleet import SqliteFleet
from dispatcher.store.sqlite_notifications import SqliteNotifications
from dispatcher.store.sqlite_positions import SqlitePositions
from dispatcher.store.sqlite_responders import SqliteResponders
from dispatcher.store.sqlite_visits import SqliteVisits
from dispatcher.store.writelock import PriorityWriteLock

T = TypeVar("T")


class SqliteStore(
    SqliteAccess,
    SqliteVisits,
    SqlitePositions,
    SqliteResponders,
    SqliteAlerts,
    SqliteNotifications,
    SqliteFleet,
    SqliteDirectory,
):
    """The store on one SQLite file. Create with :meth:`open`.

    This class is the connection and its transactions; each concern's methods
    come from a mixin: the directory (:mod:`~dispatcher.store.sqlite_directory`),
    alerts and timers (:mod:`~dispatcher.store.sqlite_alerts`), notifications
    (:mod:`~dispatcher.store.sqlite_notifications`), the fleet's records
    (:mod:`~dispatcher.store.sqlite_fleet`), access control and retention
    (:mod:`~dispatcher.store.sqlite_access`), visit timers
    (:mod:`~dispatcher.store.sqlite_visits`), positions and responder links.
    """

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
