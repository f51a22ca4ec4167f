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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from asyncpg import exceptions as pgerr

from dispatcher.store.base import AlreadyExists, StoreError, StoreUnavailable
from dispatcher.store.pgutil import Conn
from dispatcher.store.postgres_access import PostgresAccess
from dispatcher.store.postgres_alerts import PostgresAlerts
from dispatcher.store.postgres_directory import PostgresDirectory
from dispatcher.store.postgres_fleet import PostgresFleet
from dispatcher.store.postgres_notifications import PostgresNotifications
from dispatcher.store.postgres_positions import PostgresPositions
from dispatcher.store.postgres_responders import PostgresResponders
from dispatcher.store.postgres_schema import MIGRATION_LOCK_KEY, MIGRATIONS, SCHEMA_VERSION_TABLE
from dispatcher.store.postgres_visits import PostgresVisits
from dispatcher.store.rows import Reused

T = TypeVar("T")

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


async def _init_connection(conn: Conn) -> None:
    """Documents travel as Python objects; directory docs are cast to text to validate as JSON."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class PostgresStore(
    PostgresAccess,
    PostgresVisits,
    PostgresPositions,
    PostgresResponders,
    PostgresAlerts,
    PostgresNotifications,
    PostgresFleet,
    PostgresDirectory,
):
    """The store on a PostgreSQL database. Create with :meth:`open`.

    This class is the pool, its transactions and the error mapping; each
    concern's methods come from a mixin, the twin of SqliteStore's:
    :mod:`~dispatcher.store.postgres_directory`, :mod:`~dispatcher.store.postgres_alerts`,
    :mod:`~dispatcher.store.postgres_notifications`, :mod:`~dispatcher.store.postgres_fleet`,
    :mod:`~dispatcher.store.postgres_access`, :mod:`~dispatcher.store.postgres_visits`,
    positions and responder links.
    """

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], *, acquire_timeout_s: float = 10.0) -> None:
        self._pool = pool
        self._parsed = Reused()
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
