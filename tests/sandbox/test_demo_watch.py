"""The demo's alert watch stops when the demo stops, whatever arrives at that moment."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from broker_config.runner import free_port
from dispatcher.events import EventBus
from dispatcher.store import open_store
from sandbox.demo_watch import AlertWatch
from sandbox.twilio_server import TwilioSandbox


async def test_the_watch_stops_when_cancelled_as_an_event_arrives(tmp_path: Path) -> None:
    """An event published in the same turn as the cancellation: with asyncio.wait_for on Python
    3.11 the watch took the event and kept running, and the demo never exited (its --once test
    hung once in a while)."""
    bus = EventBus()
    store = await open_store(f"sqlite:///{tmp_path / 'vigie.db'}")
    try:
        async with TwilioSandbox(port=free_port()) as sandbox:
            watch = AlertWatch(store=store, bus=bus, sandbox=sandbox, names={})
            task = asyncio.create_task(watch.run())
            await asyncio.sleep(0)  # one turn: the watch subscribes and waits for an event
            bus.publish("device_status", device_id="btn-1", status="online", battery_pct=80)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                async with asyncio.timeout(5):
                    await task
    finally:
        await store.close()
