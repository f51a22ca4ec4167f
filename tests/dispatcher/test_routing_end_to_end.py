"""Routing that cannot come up empty, end to end: real Mosquitto, the dispatcher,
the provider sandbox over HTTP, signed simulated devices (issue 10).

The ``system`` fixture (and the store parameters) come from test_end_to_end.
"""

# ruff: noqa: F811  (pytest fixtures imported from test_end_to_end are parameters here)

from __future__ import annotations

import asyncio

from tests.dispatcher.test_end_to_end import notified_numbers, store_url, system  # noqa: F401
from tests.support.postgres import postgres_cluster  # noqa: F401
from tests.support.system import FALLBACK_NUMBER, System


async def test_no_fix_no_visit_no_site_goes_to_the_deployment_fallback_saying_why(system: System) -> None:
    # Lucie Martel has no site; her bracelet sends no fix and she declared no visit.
    device = await system.add_device("bracelet-martel", practitioner="lucie-martel")
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id)

    assert await notified_numbers(system, alert_id) == {FALLBACK_NUMBER}
    [sms] = system.sent_to(FALLBACK_NUMBER, "message")
    assert "Routage de secours: position inconnue" in sms
    events = await system.store.alert_events(alert_id)
    alarms = [e for e in events if e["kind"] == "operator_alarm"]
    assert alarms and "routage de secours" in alarms[0]["detail"]["reason"]
