"""Fixtures of the store tests: the same store API on SQLite and on PostgreSQL.

``store`` is parametrised over both implementations; each test gets a fresh
database (a new SQLite file, or ``CREATE DATABASE`` on the session's
PostgreSQL cluster) and a recording proxy, so a conformance test that claims
to cover a method (``@covers``) is checked to have really called it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dispatcher.store import open_store
from dispatcher.store.base import Store
from tests.store.coverage import Recording
from tests.support import postgres as _pg
from tests.support.postgres import PostgresCluster, fresh_database

# The session cluster and per-test database fixtures, shared with the other test packages.
postgres_cluster = _pg.postgres_cluster
postgres_url = _pg.postgres_url

StoreOpener = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vigie.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    with fresh_database(cluster) as url:
        yield url


@pytest.fixture
async def store(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Any]:
    """An open store, wrapped so the methods a test calls are recorded."""
    real = await open_store(database_url)
    recording = Recording(real)
    try:
        yield recording
    finally:
        await real.close()
    declared = getattr(request.function, "covers", ())
    missing = set(declared) - recording.called
    assert not missing, f"test declares @covers({sorted(missing)}) but never called them"


@pytest.fixture
async def open_another(database_url: str) -> AsyncIterator[StoreOpener]:
    """Open more stores on the same database (another dispatcher instance)."""
    opened: list[Store] = []

    async def opener() -> Store:
        opened.append(await open_store(database_url))
        return opened[-1]

    yield opener
    for s in opened:
        await s.close()
