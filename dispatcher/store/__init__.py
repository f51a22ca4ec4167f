"""Persistence behind one interface (:class:`dispatcher.store.base.Store`).

SQLite is the embedded default; :func:`open_store` picks the implementation
from the database URL.
"""

from __future__ import annotations

from pathlib import Path

from dispatcher.store.base import Store


def sqlite_path(database_url: str) -> Path:
    """``sqlite:///relative`` or ``sqlite:////absolute`` → a path."""
    return Path(database_url.removeprefix("sqlite:///"))


async def open_store(database_url: str) -> Store:
    """Open the store a ``VIGIE_DATABASE_URL`` names (migrating it if needed)."""
    if database_url.startswith("sqlite:///"):
        from dispatcher.store.sqlite import SqliteStore

        return await SqliteStore.open(sqlite_path(database_url))
    raise ValueError(f"unsupported database URL {database_url!r}: expected sqlite:///path")
