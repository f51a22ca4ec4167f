"""SQLite implementation of the store (the embedded default), via aiosqlite.

WAL journal with ``synchronous=FULL``: a committed alert survives a power
loss, not only a process crash. Each public method is one transaction.

Two connections, each with its own aiosqlite thread. The *writer* runs every
write and every read made inside a write transaction (the reads that decide a
write: claims, leases, replay windows, PIN tries, ``merge_device_health``...).
The *reader* (opened ``mode=ro``) runs every stand-alone read (:meth:`SqliteStore._one`,
:meth:`SqliteStore._all`): the console feed's snapshot and per-alert summaries,
the API's lists and details, the practitioner and responder pages, and the
alert path's own look-ups (``get_alert``, ``alert_exists``,
``notification_by_sid``...). With a single connection, each of those reads
queued on the one thread behind the alert path's fsynced commits, and each
commit behind them (issue 16: publish → console push p99 1.8 s at 100/s).

Why every stand-alone read may go to the reader: none of them runs inside a
transaction, so none needs to see uncommitted work; each is its own read
transaction, and a WAL reader sees every transaction committed before its
read starts - a read made after our own commit returned sees it. (On the
shared connection such a read could even see another coroutine's open
``_tx``, uncommitted: the reader cannot.)
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from dispatcher.store.base import AlreadyExists, StoreUnavailable
from dispatcher.store.rows import Reused
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

log = logging.getLogger(__name__)
#: Rows per hop of :meth:`SqliteStore._all_in_pages` (≈ 2 ms of the reader's thread for alerts).
READ_PAGE_ROWS = 100

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
        self._parsed = Reused()
        # Stand-alone reads (see the module's docstring); the writer until open() adds the reader.
        self._reader = conn
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
            # After the migrations: the reader opens read-only, on tables that exist.
            uri = _reader_uri(path)
            store._reader = conn if uri is None else await _open_reader(uri)
        except BaseException:
            # aiosqlite's worker thread is not a daemon: left open, it keeps the process alive.
            await conn.close()
            raise
        return store

    async def close(self) -> None:
        """Close the reader, then the writer (whose close checkpoints the WAL)."""
        try:
            if self._reader is not self._conn:
                await self._reader.close()
        finally:
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
            except BaseException as exc:
                await self._roll_back()  # a cancelled BEGIN still runs on the thread
                if isinstance(exc, sqlite3.OperationalError):
                    raise StoreUnavailable(str(exc)) from exc
                raise
            try:
                yield self._conn
                await self._conn.execute("COMMIT")
            except BaseException as exc:
                await self._roll_back()
                if isinstance(exc, sqlite3.IntegrityError):
                    raise AlreadyExists(str(exc)) from exc
                if isinstance(exc, sqlite3.OperationalError):
                    raise StoreUnavailable(str(exc)) from exc
                raise

    async def _roll_back(self) -> None:
        """End whatever transaction the writer's thread holds, after the statement in flight.

        Called while an exception - often a cancellation - propagates. Whether
        a transaction is open cannot be read from the event loop's side: a
        cancelled ``BEGIN`` or ``COMMIT`` may still be running on aiosqlite's
        thread. The ROLLBACK is queued behind it, and finding no transaction
        there (the COMMIT went through) is no error. Either way the original
        exception must go on: turned into an OperationalError, a cancellation
        was caught by a pass's ``except Exception`` and its task never stopped.
        """
        try:
            await self._conn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if "no transaction is active" not in str(exc):
                log.exception("base SQLite : ROLLBACK impossible")

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
                result: T = await self._conn._execute(_run_atomic, self._conn._conn, work, power_safe)  # type: ignore[no-untyped-call]
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(str(exc)) from exc
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(str(exc)) from exc
            return result

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        """One stand-alone read on the reader connection: it sees every committed transaction."""
        # One hop to aiosqlite's thread, not three (execute, fetch, close): every
        # provider callback looks its notification up by SID.
        reader = self._reader
        row: sqlite3.Row | None = await reader._execute(_fetchone, reader._conn, sql, tuple(params))  # type: ignore[no-untyped-call]
        return row

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Like :meth:`_one`, every row."""
        reader = self._reader
        rows: list[sqlite3.Row] = await reader._execute(_fetchall, reader._conn, sql, tuple(params))  # type: ignore[no-untyped-call]
        return rows

    async def _all_in_pages(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Like :meth:`_all`, for reads of thousands of rows: one page per hop to the reader's thread.

        A console's snapshot in a surge reads every open alert (≈ 5 KB each): in
        one hop the reader's thread was busy for a tenth of a second and more, and
        the alert path's own look-ups queued behind it. Between pages they pass.
        """
        rows: list[sqlite3.Row] = []
        async with contextlib.aclosing(self._pages(sql, params)) as pages:
            async for page in pages:
                rows.extend(page)
        return rows

    async def _pages(self, sql: str, params: Iterable[Any] = ()) -> AsyncGenerator[list[sqlite3.Row], None]:
        """The rows of one statement (one read transaction), :data:`READ_PAGE_ROWS` per hop."""
        reader = self._reader
        cursor: sqlite3.Cursor = await reader._execute(reader._conn.execute, sql, tuple(params))  # type: ignore[no-untyped-call]
        try:
            while page := await reader._execute(cursor.fetchmany, READ_PAGE_ROWS):  # type: ignore[no-untyped-call]
                yield page
        finally:
            await reader._execute(cursor.close)  # type: ignore[no-untyped-call]


def _reader_uri(path: Path) -> str | None:
    """The read-only URI of ``path``, or None where a second connection would not see the same database.

    ``:memory:`` gives each connection its own, empty database: such a store
    keeps its single connection for everything, reads included.
    """
    if str(path) == ":memory:":
        return None
    return path.resolve().as_uri() + "?mode=ro"


async def _open_reader(uri: str) -> aiosqlite.Connection:
    """The second, read-only connection (its own aiosqlite thread)."""
    reader = await aiosqlite.connect(uri, uri=True, isolation_level=None)
    try:
        reader.row_factory = sqlite3.Row
        # query_only: belt and braces with mode=ro; busy_timeout: the rare WAL-index lock (recovery).
        await reader.execute("PRAGMA query_only=1")
        await reader.execute("PRAGMA busy_timeout=5000")
    except BaseException:
        await reader.close()
        raise
    return reader


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
