"""Low finding: replay windows were flushed every 5 s but not at shutdown.

A cancel (or heartbeat) accepted shortly before a restart was not in the stored
window, so the same signed bytes replayed after the restart were accepted a
second time. Alerts were safe (deduplicated by id); cancels are not.
"""

from __future__ import annotations

import asyncio

from protocol.topics import UplinkKind
from tests.security.mqtt_stack import Stack, eventually

CANCEL_PIN = "2468"  # dr-claire-fabre's normal PIN in the demo directory


async def test_a_cancel_replayed_after_a_restart_is_refused(stack: Stack) -> None:
    device = await stack.add_device("btn-replay")
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id)
    cancel_id, cancel = device.encode(UplinkKind.CANCEL, alert_id=alert_id, pin=CANCEL_PIN)
    await asyncio.to_thread(device.publish_raw, UplinkKind.CANCEL, cancel)
    await asyncio.to_thread(device.wait_downlink, "received", cancel_id)
    events_before = len(await stack.system.store.alert_events(alert_id))

    await stack.stop_dispatcher()  # well within the 5 s periodic flush
    await stack.start_dispatcher()
    await asyncio.to_thread(device.connect)  # the old dispatcher's system closed its session

    await asyncio.to_thread(device.publish_raw, UplinkKind.CANCEL, cancel)  # the captured bytes again

    async def refused() -> bool:
        return (await stack.rejected()).get("replay", 0) >= 1

    await eventually(refused)
    assert len(await stack.system.store.alert_events(alert_id)) == events_before
    # The device still works: a new alert after the restart is received.
    fresh = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", fresh, 15.0)
