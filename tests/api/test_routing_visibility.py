"""Operators see every alert of their territory, fallback-routed ones included; a visit
that cannot be placed is refused with the field named (issue 10)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from protocol.messages import Location
from tests.api.conftest import GARD, Api
from tests.support.system import FALLBACK_NUMBER

SUMENE = (43.98845, 3.73235)  # 30325 (Gard)
AT_SEA = (43.35, 3.75)  # off Sète: no commune, no département


async def gps_alert(api: Api, lat: float, lon: float) -> str:
    system = api.system
    device = system.devices.get("bracelet-fabre") or await system.add_device(
        "bracelet-fabre", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    fix = Location(
        lat=lat, lon=lon, accuracy_m=10, fix_ts=int(datetime.now(UTC).timestamp() * 1000), source="gnss"
    )
    alert_id = await asyncio.to_thread(device.alert, fix)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id)
    return alert_id


async def sees(api: Api, username: str, alert_id: str) -> bool:
    client = await api.as_user(username)
    listed = alert_id in [a["id"] for a in (await client.get("/api/alerts")).json()]
    detail = (await client.get(f"/api/alerts/{alert_id}")).status_code == 200
    alarms = [e for e in (await client.get("/api/operator-events")).json() if e["alert_id"] == alert_id]
    assert listed == detail == bool(alarms), (username, listed, detail, alarms)
    return listed


async def test_an_alert_outside_every_convention_is_seen_by_its_departement_s_operators(api: Api) -> None:
    # The Gard convention now covers Nîmes only: Sumène (Gard) is in no convention.
    await api.system.store.upsert_convention(GARD.model_copy(update={"communes": ["30189"]}))
    await api.system.dispatcher.cache.refresh()
    alert_id = await gps_alert(api, *SUMENE)

    record = await api.system.store.get_alert(alert_id)
    assert record.context is not None and record.context["fallback"] == "deployment"
    await api.system.sandbox.wait_for(lambda: bool(api.system.sent_to(FALLBACK_NUMBER, "message")), within=10)
    assert await sees(api, "op-gard", alert_id)  # the Gard's operators: the alert and its alarm
    assert not await sees(api, "op-herault", alert_id)
    gard = await api.as_user("op-gard")
    [summary] = [a for a in (await gard.get("/api/alerts")).json() if a["id"] == alert_id]
    assert summary["fallback"] == "deployment" and summary["convention_name"] is None


async def test_a_fallback_alert_in_a_covered_departement_is_seen_by_that_convention_s_operators(
    api: Api,
) -> None:
    alert_id = await gps_alert(api, *SUMENE)  # Gard convention, but no unit lists Sumène
    record = await api.system.store.get_alert(alert_id)
    assert record.context is not None and record.context["fallback"] == "departemental"
    assert await sees(api, "op-gard", alert_id)
    assert not await sees(api, "op-herault", alert_id)


async def test_an_alert_of_no_departement_is_seen_by_every_operator(api: Api) -> None:
    alert_id = await gps_alert(api, *AT_SEA)
    assert await sees(api, "op-gard", alert_id) and await sees(api, "op-herault", alert_id)


async def test_a_visit_that_cannot_be_placed_is_refused_naming_the_field(api: Api) -> None:
    fabre = await api.as_user("dr-fabre")
    now = datetime.now(UTC)
    window = {"starts_at": now.isoformat(), "ends_at": (now + timedelta(hours=1)).isoformat()}
    refused = await fabre.post("/api/visits", json={"address": {"label": "chez Mme Durand"}, **window})
    assert refused.status_code == 422
    [problem] = refused.json()["detail"]
    assert problem["loc"] == ["body", "address", "label"] and "code postal" in problem["msg"]
    assert (await fabre.get("/api/visits")).json() == []

    by_postcode = await fabre.post(
        "/api/visits", json={"address": {"label": "Mas des Oliviers, 34790 Grabels"}, **window}
    )
    assert by_postcode.status_code == 201, by_postcode.text
    assert by_postcode.json()["address"]["insee"] == "34116" and not by_postcode.json()["geocoded"]
