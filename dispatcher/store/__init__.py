"""Persistence behind one interface (:class:`dispatcher.store.base.Store`).

SQLite is the embedded default (one dispatcher instance); PostgreSQL serves
several instances sharing one database. :func:`open_store` picks the
implementation from the database URL.
"""

from __future__ import annotations

from pathlib import Path

from dispatcher.store.base import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def sqlite_path(database_url: str) -> Path:
    """``sqlite:///relative`` or ``sqlite:////absolute`` → a path."""
    return Path(database_url.removeprefix("sqlite:///"))


def is_postgres(database_url: str) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) DSN."""
    return database_url.startswith(POSTGRES_SCHEMES)


async def open_store(database_url: str) -> Store:
    """Open the store a ``VIGIE_DATABASE_URL`` names (migrating it if needed).

    ``sqlite:///path`` or a libpq-style DSN ``postgresql://user[:pass]@host[:port]/db[?sslmode=...]``
    (asyncpg is imported only then, so SQLite deployments do not need it).
    """
    if database_url.startswith("sqlite:///"):
        from dispatcher.store.sqlite import SqliteStore

        return await SqliteStore.open(sqlite_path(database_url))
    if is_postgres(database_url):
        from dispatcher.store.postgres import PostgresStore

        return await PostgresStore.open(database_url)
    raise ValueError(
        f"URL de base non prise en charge {database_url!r} : attendu sqlite:///chemin ou"
        " postgresql://utilisateur@hôte/base"
    )
