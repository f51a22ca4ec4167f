"""The alert detail shows the latest live position and its age to operators (issue 15), audited."""

from __future__ import annotations

import asyncio
import time

from protocol.messages import Location
from protocol.topics import UplinkKind
from tests.api.conftest import Api


async def test_operators_read_the_live_position_and_its_age_her_own_view_does_not_show_it(api: Api) -> None:
    device, alert_id = await api.alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    operator = await api.as_user("op-herault")
    assert (await operator.get(f"/api/alerts/{alert_id}")).json()["live_position"] is None

    taken_ms = int(time.time() * 1000) - 3_000
    fix = Location(lat=43.6215, lon=3.8712, accuracy_m=7.0, fix_ts=taken_ms, source="gnss")
    await asyncio.to_thread(device.send, UplinkKind.POSITION, location=fix, alert_id=alert_id)

    async def stored() -> bool:
        return await api.system.store.latest_alert_position(alert_id) is not None

    await api.system.until(stored)
    live = (await operator.get(f"/api/alerts/{alert_id}")).json()["live_position"]
    assert (live["lat"], live["lon"], live["accuracy_m"]) == (43.6215, 3.8712, 7.0)
    assert 3 <= live["age_s"] < 60
    reads = await api.system.store.list_audit(action="alert.location.read", target_id=alert_id)
    assert [r.username for r in reads] == ["op-herault", "op-herault"]

    fabre = await api.as_user("dr-fabre")  # a duress must read like a cancel there: never shown
    assert (await fabre.get(f"/api/alerts/{alert_id}")).json()["live_position"] is None
