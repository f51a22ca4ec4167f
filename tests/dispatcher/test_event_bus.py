"""The console's event bus: a subscriber that falls behind is told to re-read, never left with holes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from dispatcher.events import RESYNC_EVENT, EventBus
from dispatcher.web.console.coalesce import coalesce


async def test_a_subscriber_that_falls_behind_gets_a_resync_then_the_events_that_follow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus(queue_size=10)
    async with bus.subscribe() as slow, bus.subscribe() as other:
        await asyncio.sleep(0)
        with caplog.at_level(logging.WARNING, logger="dispatcher.events"):
            for i in range(10):
                bus.publish("notification", alert_id=f"old-{i}")
            bus.publish("alert", alert_id="new")  # the queue is full: the unread ten are dropped
            bus.publish("alert", alert_id="newer")
        got = [slow.get_nowait() for _ in range(slow.qsize())]
        assert got == [
            {"kind": RESYNC_EVENT},
            {"kind": "alert", "alert_id": "new"},
            {"kind": "alert", "alert_id": "newer"},
        ]
        assert other.qsize() == 3  # the other subscriber overflowed alike; nobody blocked
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 2 and all("10 événements non lus abandonnés" in w for w in warnings)


def test_a_queue_with_no_room_for_the_resync_is_refused() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        EventBus(queue_size=1)


def _per_alert(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return coalesce(events, RESYNC_EVENT)


async def test_a_subscriber_that_compacts_keeps_one_event_per_alert_instead_of_a_resync(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus(queue_size=10)
    async with bus.subscribe(compact=_per_alert) as feed:
        with caplog.at_level(logging.WARNING, logger="dispatcher.events"):
            for i in range(10):
                bus.publish("notification", alert_id="a" if i % 2 else "b", n=i)
            bus.publish("alert", alert_id="c")  # the queue is full: compacted, nothing dropped
            bus.publish("alert", alert_id="d")
        got = [feed.get_nowait() for _ in range(feed.qsize())]
        assert got == [
            {"kind": "notification", "alert_id": "b", "n": 8},
            {"kind": "notification", "alert_id": "a", "n": 9},
            {"kind": "alert", "alert_id": "c"},
            {"kind": "alert", "alert_id": "d"},
        ]
        assert not caplog.records


async def test_waiting_events_that_do_not_compact_enough_still_end_in_a_resync() -> None:
    bus = EventBus(queue_size=10)
    async with bus.subscribe(compact=_per_alert) as feed:
        for i in range(10):
            bus.publish("alert", alert_id=f"distinct-{i}")
        bus.publish("alert", alert_id="new")  # 11 alerts do not fit in half the queue
        got = [feed.get_nowait() for _ in range(feed.qsize())]
        assert got == [{"kind": RESYNC_EVENT}, {"kind": "alert", "alert_id": "new"}]


def test_the_bus_remembers_the_system_alarms_open_whoever_published_them() -> None:
    """A console connecting mid-episode is shown them in its snapshot (its own or another instance's)."""
    bus = EventBus()
    bus.publish("operator_alarm", alert_id="a-1", reason="alerte sans contact", version=3)  # an alert's
    bus.publish("operator_alarm", alert_id=None, reason="fournisseur injoignable", topic="provider")
    bus.deliver(
        {"kind": "operator_alarm", "alert_id": None, "reason": "aucune instance", "topic": "alert_takers"}
    )
    assert bus.system_alarms == {"provider": "fournisseur injoignable", "alert_takers": "aucune instance"}
    bus.publish("system", topic="provider", cleared="fournisseur de nouveau joignable")
    assert bus.system_alarms == {"alert_takers": "aucune instance"}
    bus.deliver({"kind": "system", "topic": "alert_takers", "cleared": "de nouveau reçues"})
    assert bus.system_alarms == {}
