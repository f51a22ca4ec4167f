"""PositionRecorder's invariants on a real SQLite store: one waiting position per alert, bounded.

The recorder runs as a task; these tests drive it with a real store and event bus and wait on
what it publishes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher.alerting.positions import PositionRecorder
from dispatcher.events import EventBus
from dispatcher.store.sqlite import SqliteStore
from protocol.codec import Rejected, encode_uplink
from protocol.messages import Location, Position
from tests.store.test_conformance import first, new_alert, seed, window

KEY = b"k" * 32
NOW_MS = 1_795_000_000_000


def position(alert_id: str, lat: float, fix_ts: int, device: str = "btn-1", seq: int = 10) -> Position:
    fix = Location(lat=lat, lon=3.87, accuracy_m=5.0, fix_ts=fix_ts, source="gnss")
    message, _ = encode_uplink(
        kind="position", device_id=device, event_id=f"p-{seq}", seq=seq, ts_ms=fix_ts, key=KEY,
        alert_id=alert_id, location=fix,
    )  # fmt: skip
    assert isinstance(message, Position)
    return message


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "vigie.db")
    await seed(s)
    await s.insert_alerts([(new_alert("a-1", seq=1), window(1), first("a-1"))])
    try:
        yield s
    finally:
        await s.close()


async def test_a_late_older_fix_never_replaces_the_waiting_newer_one(store: SqliteStore) -> None:
    bus, refused, told = EventBus(), [], []
    recorder = PositionRecorder(store, bus, lambda *a: refused.append(a), lambda *a: told.append(a))
    recorder.offer(position("a-1", 43.62, NOW_MS + 5_000, seq=11), "t")
    recorder.offer(position("a-1", 43.61, NOW_MS, seq=10), "t")  # delivered late
    assert recorder.pending == 1
    async with bus.subscribe() as events:
        task = asyncio.create_task(recorder.run())
        try:
            assert await asyncio.wait_for(events.get(), 5) == {"kind": "alert", "alert_id": "a-1"}
        finally:
            task.cancel()
    latest = await store.latest_alert_position("a-1")
    assert latest is not None and latest.lat == 43.62
    assert refused == [] and told == []


async def test_beyond_the_bound_new_alerts_positions_are_refused_as_queue_full(store: SqliteStore) -> None:
    refused: list[tuple[Any, ...]] = []
    recorder = PositionRecorder(store, EventBus(), lambda *a: refused.append(a), lambda *_a: None, limit=2)
    for n, alert_id in enumerate(("a-1", "x-2", "x-3")):
        recorder.offer(position(alert_id, 43.6, NOW_MS + n, seq=n), "t")
    assert recorder.pending == 2
    ((device, _topic, rejection),) = refused
    assert device == "btn-1" and isinstance(rejection, Rejected) and rejection.reason.value == "queue_full"
    recorder.offer(position("a-1", 43.7, NOW_MS + 9), "t")  # a waiting alert's newer fix still gets in
    assert recorder.pending == 2 and len(refused) == 1
