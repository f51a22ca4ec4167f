"""SQLite: the web side's reads do not wait for the writer connection.

The console feed and the API read alerts (``get_alert``, ``list_alerts``,
``search_alerts``, ``alert_events``, ``notifications_for``) while the alert
path commits. With one connection, each read waited on its thread behind the
transaction in progress; with the read-only second connection it completes,
sees only what is committed, and sees a commit as soon as it returned.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from dispatcher.store.base import AlertQuery
from dispatcher.store.sqlite import SqliteStore
from tests.store.test_conformance import first, new_alert, seed, spec, window

# Generous: a read takes milliseconds; without the reader it never completes while the writer is held.
READ_TIMEOUT_S = 5.0


async def test_reads_complete_while_the_writer_is_held_in_a_transaction(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "vigie.db")
    release = threading.Event()
    try:
        await seed(store)
        await store.insert_alerts([(new_alert("a-1"), window(1), first("a-1", spec("alice")))])
        committed = await store.get_alert("a-1")
        in_tx = asyncio.Event()
        loop = asyncio.get_running_loop()

        def long_write(tx: sqlite3.Connection) -> None:
            # A write transaction kept open on the writer's thread (a slow fsync, a big batch).
            tx.execute("UPDATE alerts SET state='acknowledged', version=version+1 WHERE id='a-1'")
            loop.call_soon_threadsafe(in_tx.set)
            release.wait(timeout=30)

        writer = asyncio.create_task(store._atomic(long_write))
        await asyncio.wait_for(in_tx.wait(), READ_TIMEOUT_S)

        async def web_reads() -> tuple[str, int, int, int, int]:
            alert = await store.get_alert("a-1")
            listed = await store.list_alerts(limit=50)
            found = await store.search_alerts(AlertQuery())
            events = await store.alert_events("a-1")
            notifications = await store.notifications_for("a-1")
            return alert.state, len(listed), len(found), len(events), len(notifications)

        state, listed, found, events, notifications = await asyncio.wait_for(web_reads(), READ_TIMEOUT_S)
        assert state == committed.state == "notifying"  # the open transaction's write is not visible
        assert (listed, found, notifications) == (1, 1, 1)
        assert events >= 1

        release.set()
        await asyncio.wait_for(writer, READ_TIMEOUT_S)
        after = await store.get_alert("a-1")  # read right after our own commit: seen
        assert (after.state, after.version) == ("acknowledged", committed.version + 1)
    finally:
        release.set()
        await store.close()


async def test_in_memory_store_keeps_one_connection_for_reads_and_writes() -> None:
    # A second connection on ":memory:" would open another, empty database.
    store = await SqliteStore.open(":memory:")
    try:
        await seed(store)
        await store.insert_alerts([(new_alert("a-1"), window(1), None)])
        assert await store.alert_exists("a-1")
        assert [a.id for a in await store.list_alerts(limit=10)] == ["a-1"]
    finally:
        await store.close()
