"""A throw-away PostgreSQL cluster for the tests (the server itself: sandbox/postgres.py).

One cluster per test session (``initdb`` takes seconds), one fresh database
per test (``CREATE DATABASE`` takes milliseconds), torn down at the end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from sandbox.postgres import PostgresCluster, pg_bin_dir

__all__ = [
    "PostgresCluster",
    "fresh_database",
    "pg_bin_dir",
    "postgres_cluster",
    "shared_cluster",
    "stores_under_test",
]


class _Shared:
    """The session's cluster, started on first use; several conftests may hold it."""

    cluster: PostgresCluster | None = None
    users = 0


@contextlib.contextmanager
def shared_cluster() -> Iterator[PostgresCluster]:
    """Hold the session-wide cluster; the last holder to leave stops it."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    if _Shared.cluster is None:
        cluster = PostgresCluster(bin_dir)
        cluster.start()
        _Shared.cluster = cluster
    _Shared.users += 1
    try:
        yield _Shared.cluster
    finally:
        _Shared.users -= 1
        if _Shared.users == 0:
            _Shared.cluster.stop()
            _Shared.cluster = None


@contextlib.contextmanager
def fresh_database(cluster: PostgresCluster, prefix: str = "t") -> Iterator[str]:
    """A database URL valid for the ``with`` block; dropped afterwards."""
    name = cluster.create_database(prefix)
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)


def stores_under_test() -> list[str]:
    """Stores the dispatcher tests run against: ``$VIGIE_TEST_STORES`` or all available."""
    wanted = os.environ.get("VIGIE_TEST_STORES")
    if wanted:
        return [s.strip() for s in wanted.split(",") if s.strip()]
    return ["sqlite", "postgres"] if pg_bin_dir() is not None else ["sqlite"]


# Fixtures: import them into a conftest or test module that needs them.


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL cluster (skips the test if PostgreSQL is not installed)."""
    if pg_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries not installed (scripts/system-deps.sh installs them)")
    with shared_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh, empty database for this test: ``postgresql://vigie@127.0.0.1:PORT/NAME``."""
    with fresh_database(postgres_cluster) as url:
        yield url
