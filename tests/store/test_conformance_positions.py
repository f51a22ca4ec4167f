"""Store conformance of the live positions of open alerts (issue 15).

Same fixtures as test_conformance.py: every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dispatcher.store.base import NotFound, PositionFix
from tests.store.coverage import covers
from tests.store.test_conformance import NOW, first, new_alert, seed, window


def fix(lat: float, *, at_s: float, accuracy_m: float | None = 6.5, received_s: float = 1.0) -> PositionFix:
    return PositionFix(
        lat=lat,
        lon=3.8781,
        accuracy_m=accuracy_m,
        at=NOW + timedelta(seconds=at_s),
        received_at=NOW + timedelta(seconds=at_s + received_s),
    )


@covers("record_alert_position", "latest_alert_position", "latest_alert_positions")
async def test_the_latest_fix_of_an_alert_is_the_one_taken_last(store: Any) -> None:
    await seed(store, "btn-1", "btn-2")
    await store.insert_alerts(
        [
            (new_alert("a-1", seq=1), window(1), first("a-1")),
            (new_alert("a-2", device_id="btn-2", seq=1), window(1), first("a-2")),
        ]
    )
    assert await store.latest_alert_position("a-1") is None

    await store.record_alert_position("a-1", fix(43.61, at_s=5))
    assert await store.latest_alert_position("a-1") == fix(43.61, at_s=5)  # exact, to the microsecond
    await store.record_alert_position("a-1", fix(43.62, at_s=10, accuracy_m=None))
    assert await store.latest_alert_position("a-1") == fix(43.62, at_s=10, accuracy_m=None)

    # Delivered late (taken before the one we have): kept, but not "where she is now".
    await store.record_alert_position("a-1", fix(43.60, at_s=7, received_s=9))
    assert await store.latest_alert_position("a-1") == fix(43.62, at_s=10, accuracy_m=None)
    # Two fixes of the same instant: the last received wins.
    await store.record_alert_position("a-1", fix(43.63, at_s=10, received_s=2))
    assert await store.latest_alert_position("a-1") == fix(43.63, at_s=10, received_s=2)

    assert await store.latest_alert_position("a-2") is None  # one alert's positions are its own
    with pytest.raises(NotFound):
        await store.record_alert_position("a-404", fix(43.6, at_s=1))
    assert await store.latest_alert_position("a-404") is None

    # The overview map reads the latest fix of many alerts at once: the same ones.
    await store.record_alert_position("a-2", fix(43.70, at_s=3))
    await store.record_alert_position("a-2", fix(43.71, at_s=2, received_s=5))
    assert await store.latest_alert_positions(["a-1", "a-2", "a-404"]) == {
        "a-1": fix(43.63, at_s=10, received_s=2),
        "a-2": fix(43.70, at_s=3),
    }
    assert await store.latest_alert_positions(["a-2"]) == {"a-2": fix(43.70, at_s=3)}
    assert await store.latest_alert_positions([]) == {}


@covers("record_alert_position", "latest_alert_position", "purge_locations")
async def test_positions_are_erased_with_the_alerts_location(store: Any) -> None:
    await seed(store)
    old, recent = NOW - timedelta(days=100), NOW - timedelta(days=1)
    await store.insert_alerts(
        [
            (new_alert("a-old", seq=1, at=old), window(1), first("a-old")),
            (new_alert("a-new", seq=2, at=recent), window(1, 2), first("a-new")),
        ]
    )
    for seconds in (5, 10):
        taken = old + timedelta(seconds=seconds)
        await store.record_alert_position("a-old", PositionFix(43.61, 3.87, 5.0, taken, taken))
    await store.record_alert_position("a-new", fix(43.62, at_s=-86_000))

    report = await store.purge_locations(NOW - timedelta(days=90), now=NOW)
    assert (report.alerts, report.positions) == (1, 2)
    assert await store.latest_alert_position("a-old") is None
    assert await store.latest_alert_position("a-new") == fix(43.62, at_s=-86_000)
    again = await store.purge_locations(NOW - timedelta(days=90), now=NOW)
    assert again.positions == 0
