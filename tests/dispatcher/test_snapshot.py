"""The in-memory directory snapshot: reloaded when the store's directory version moves, only then."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatcher.directory.loader import load_directory
from dispatcher.directory.snapshot import DirectoryCache
from dispatcher.domain import Device, DeviceKind
from dispatcher.store.base import NewAlert
from dispatcher.store.sqlite import SqliteStore
from protocol.replay import SequenceWindow

HERAULT = Path(__file__).resolve().parents[2] / "dispatcher" / "data" / "herault.yaml"
KEY = b"k" * 32

# What the admin CLI does, in a process of its own: its commit reaches the
# dispatcher only through the database file.
REVOKE_ELSEWHERE = """
import asyncio, sys
from dispatcher.store.sqlite import SqliteStore

async def main() -> None:
    store = await SqliteStore.open(sys.argv[1])
    try:
        await store.revoke_device(sys.argv[2])
    finally:
        await store.close()

asyncio.run(main())
"""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "vigie.db")
    await load_directory(HERAULT, s, None)
    await s.add_device(Device(id="btn-1", kind=DeviceKind.BUTTON, site_id="cabinet-boutonnet"), KEY)
    try:
        yield s
    finally:
        await s.close()


async def _revoke_in_another_process(db: Path, device_id: str) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", REVOKE_ELSEWHERE, str(db), device_id)
    assert await proc.wait() == 0


def _alert(alert_id: str, seq: int) -> NewAlert:
    now = datetime.now(UTC)
    return NewAlert(alert_id, "btn-1", "alert", seq, now, now, "hold", None, b"{}")


async def test_revocation_by_another_process_is_refused_after_the_next_poll(store: SqliteStore) -> None:
    cache = DirectoryCache(store)
    await cache.refresh()
    assert cache.current.key_for("btn-1") == KEY
    before = cache.current

    await _revoke_in_another_process(store.path, "btn-1")

    assert await cache.refresh_if_changed()
    assert cache.current is not before
    assert cache.current.key_for("btn-1") is None  # its alerts are refused from now on
    assert cache.current.any_key_for("btn-1") == KEY  # downlinks about past alerts still signed


async def test_alerts_do_not_force_a_reload(store: SqliteStore) -> None:
    """Every alert updates its device's replay window and fix: that is not a directory change."""
    cache = DirectoryCache(store)
    await cache.refresh()
    snapshot = cache.current

    await store.insert_alerts([(_alert("a-1", 1), SequenceWindow().admit(1), None)])
    await store.save_replay_windows({"btn-1": SequenceWindow().admit(1).admit(2)})

    assert not await cache.refresh_if_changed()
    assert cache.current is snapshot
