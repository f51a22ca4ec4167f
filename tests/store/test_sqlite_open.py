"""Opening a SQLite store that cannot be migrated fails cleanly."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from dispatcher.store.sqlite import SqliteStore


async def test_a_failed_migration_raises_and_leaves_no_thread_keeping_us_alive(tmp_path: Path) -> None:
    path = tmp_path / "conflict.db"
    with sqlite3.connect(path) as conn:  # not our schema: the first migration cannot run
        conn.execute("CREATE TABLE practitioners (x INTEGER)")
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        await SqliteStore.open(path)
    # A worker left running would hang the dispatcher (or pytest) at exit, forever.
    lingering = [t for t in threading.enumerate() if t.ident not in before and t.is_alive() and not t.daemon]
    for thread in lingering:
        thread.join(5)
    assert not [t for t in lingering if t.is_alive()]
