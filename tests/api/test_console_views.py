"""The console's escalation view, overview map and alert filters, through the API (scoped, validated)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from protocol.messages import Location
from protocol.topics import UplinkKind
from sandbox.fleet import SimulatedDevice
from tests.api.conftest import Api
from tests.practitioner.conftest import Harness, grace_s, harness

__all__ = ["grace_s", "harness"]
PARIS = ZoneInfo("Europe/Paris")


async def test_the_escalation_view_names_each_tier_and_counts_down_from_the_server_clock(api: Api) -> None:
    _, alert_id = await api.alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    await api.system.dispatcher.delivery.wait_idle()
    operator = await api.as_user("op-herault")
    response = await operator.get(f"/api/alerts/{alert_id}/escalation")
    assert response.status_code == 200, response.text
    view = response.json()
    assert [t["status"] for t in view["tiers"]] == ["current", "upcoming", "upcoming"]
    assert view["running"] and view["tiers"][0]["contacts"]
    alerted = [d for c in view["tiers"][0]["contacts"] for d in c["deliveries"]]
    assert alerted and {d["channel"] for d in alerted} <= {"sms", "voice"}
    assert view["next"]["tier"] == 1 and not view["next"]["renotify"]
    left = datetime.fromisoformat(view["next"]["due_at"]) - datetime.fromisoformat(view["now"])
    assert timedelta(seconds=100) < left <= timedelta(seconds=120)  # Hérault's first tier waits 120 s

    # Not the practitioner's to see (after a duress, the chain goes on); out of scope is a 404.
    assert (
        await (await api.as_user("dr-fabre")).get(f"/api/alerts/{alert_id}/escalation")
    ).status_code == 403
    assert (await (await api.as_user("op-gard")).get(f"/api/alerts/{alert_id}/escalation")).status_code == 404

    assert (await operator.post(f"/api/alerts/{alert_id}/acknowledge")).status_code == 200
    view = (await operator.get(f"/api/alerts/{alert_id}/escalation")).json()
    assert view["next"] is None and not view["running"]
    assert view["acked_via"] == "console" and view["acked_by"].startswith("Olivier Opérateur")


async def test_filters_narrow_the_list_server_side_within_the_scope(api: Api) -> None:
    _, hers = await api.alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    _, his = await api.alert_from("bracelet-benali", "dr-karim-benali", "mmg-saint-gely")
    operator = await api.as_user("op-herault")

    async def ids(**params: object) -> list[str]:
        response = await operator.get("/api/alerts", params=params)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()]

    assert set(await ids()) == {hers, his}
    assert await ids(practitioner="FABRE") == [hers]
    assert await ids(practitioner="clai fab") == [hers]  # words of her name, any case
    assert await ids(practitioner="Bénali") == [his]  # accents ignored
    assert await ids(practitioner="Dupont") == []
    assert (await operator.post(f"/api/alerts/{his}/acknowledge")).status_code == 200
    assert await ids(state=["acknowledged"]) == [his]
    assert set(await ids(state=["notifying", "acknowledged"])) == {hers, his}
    assert set(await ids(convention_id="ssj-34")) == {hers, his}
    today = datetime.now(PARIS).date()
    assert set(await ids(date_from=today.isoformat(), date_to=today.isoformat())) == {hers, his}
    assert await ids(date_to=(today - timedelta(days=1)).isoformat()) == []
    assert await ids(date_from=(today + timedelta(days=1)).isoformat()) == []

    gard = await api.as_user("op-gard")  # another territory: its own convention's filter finds nothing here
    assert (await gard.get("/api/alerts", params={"convention_id": "ssj-34"})).json() == []
    assert (await gard.get("/api/alerts", params={"practitioner": "Fabre"})).json() == []

    for bad in [
        {"state": "open"}, {"practitioner": "F"}, {"date_from": "27/11/2026"},
        {"date_from": today.isoformat(), "date_to": (today - timedelta(days=1)).isoformat()},
    ]:  # fmt: skip
        response = await operator.get("/api/alerts", params=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["detail"][0]["loc"][0] == "query"


def bracelet_of(harness: Harness) -> SimulatedDevice:
    return harness.system.devices["bracelet-benali"]


async def visit_and_alert(harness: Harness, fix_age_s: float) -> tuple[dict[str, Any], str]:
    """Dr Fabre's visit declared from her page (geocoded), and Dr Benali's alert with a GPS fix."""
    fabre = await harness.as_user("dr-fabre")
    body = {"label": "120 Avenue de Lodève, 34070 Montpellier", "duration_s": 3600}
    visit = (await fabre.post("/api/me/visits", json=body)).json()
    bracelet = await harness.system.add_device(
        "bracelet-benali", practitioner="dr-karim-benali", site="mmg-saint-gely"
    )
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    fix = Location(
        lat=43.69262, lon=3.80581, accuracy_m=12, fix_ts=now_ms - int(fix_age_s * 1000), source="gnss"
    )
    alert_id = await asyncio.to_thread(bracelet.alert, fix)
    await asyncio.to_thread(bracelet.wait_downlink, "received", alert_id)
    return visit, alert_id


async def test_the_overview_has_open_alerts_and_open_visits_with_their_positions(harness: Harness) -> None:
    visit, alert_id = await visit_and_alert(harness, 20)
    fabre = await harness.as_user("dr-fabre")

    operator = await harness.as_user("op-herault")
    view = (await operator.get("/api/overview")).json()
    (alert,) = view["alerts"]
    assert alert["id"] == alert_id and alert["point"] == {"lat": 43.69262, "lon": 3.80581}
    age = datetime.fromisoformat(view["now"]) - datetime.fromisoformat(alert["position_at"])
    assert timedelta(seconds=19) < age < timedelta(seconds=60)  # the fix's age, not the alert's
    (shown,) = view["visits"]
    assert shown["id"] == visit["id"] and shown["practitioner_name"] == "Dr Claire Fabre"
    assert shown["point"]["lat"] == 43.61042 and not shown["overdue"]
    reads = await harness.system.store.list_audit(action="alert.location.read")
    assert [(r.username, r.detail.get("via"), r.detail.get("alerts")) for r in reads] == [
        ("op-herault", "overview", [alert_id])
    ]
    # The alerts this process holds in memory are taken from there; others are read: the same map.
    harness.system.dispatcher.bus.alerts.forget()
    assert (await operator.get("/api/overview")).json()["alerts"] == view["alerts"]

    # The device sends where she is now: the overview follows its latest live position.
    moved = Location(
        lat=43.6951, lon=3.8102, accuracy_m=8, fix_ts=int(time.time() * 1000) - 1000, source="gnss"
    )
    await asyncio.to_thread(bracelet_of(harness).send, UplinkKind.POSITION, location=moved, alert_id=alert_id)

    async def stored() -> bool:
        return await harness.system.store.latest_alert_position(alert_id) is not None

    await harness.system.until(stored)
    view = (await operator.get("/api/overview")).json()
    (alert,) = view["alerts"]
    assert alert["live"] and alert["point"] == {"lat": 43.6951, "lon": 3.8102} and alert["source"] == "gps"
    age = datetime.fromisoformat(view["now"]) - datetime.fromisoformat(alert["position_at"])
    assert timedelta(0) < age < timedelta(seconds=10)

    gard = await harness.as_user("op-gard")
    assert (await gard.get("/api/overview")).json()["alerts"] == []
    assert (await gard.get("/api/overview")).json()["visits"] == []
    assert (await fabre.get("/api/overview")).status_code == 403
