"""Roles and scope of every route of the practitioner's page (and of operators' open visits).

A practitioner sees only her own visits, devices, alerts and reports:
anything else answers 404 exactly like a missing record. Other roles get 403
on /api/me/*, anonymous requests 401.
"""

from __future__ import annotations

import asyncio

from fastapi.routing import APIRoute

from dispatcher.web.practitioner import practitioner_routers
from tests.practitioner.conftest import Harness

VISIT = {"label": "8 Rue de la Croix de Lavit, 34090 Montpellier", "duration_s": 3600}
ME_ROUTES = [
    ("GET", "/api/me/visits"),
    ("POST", "/api/me/visits"),
    ("POST", "/api/me/visits/visit-x/checkout"),
    ("POST", "/api/me/visits/visit-x/extend"),
    ("GET", "/api/me/addresses/recent"),
    ("GET", "/api/me/geocode?q=rue"),
    ("GET", "/api/me/devices"),
    ("POST", "/api/me/devices/dev-x/test"),
    ("GET", "/api/me/devices/dev-x/tests/test-x"),
    ("GET", "/api/me/alerts"),
    ("GET", "/api/me/alerts/alert-x/report"),
    ("PUT", "/api/me/alerts/alert-x/report"),
    ("GET", "/api/me/alerts/alert-x/report.pdf"),
]


def test_the_route_table_above_lists_every_practitioner_route() -> None:
    names = {"visit-x": "{visit_id}", "dev-x": "{device_id}", "test-x": "{alert_id}", "alert-x": "{alert_id}"}
    listed = set()
    for method, path in ME_ROUTES:
        for sample, name in names.items():
            path = path.replace(sample, name)
        listed.add((method, path.split("?")[0]))
    routes = {
        (method, route.path)
        for router in practitioner_routers()
        for route in router.routes
        if isinstance(route, APIRoute) and route.path.startswith("/api/me")
        for method in route.methods
    }
    assert routes == listed


async def test_other_roles_get_403_and_strangers_401(harness: Harness) -> None:
    anonymous = await harness.as_user("dr-fabre")
    await anonymous.post("/api/auth/logout")
    for username in ("op-herault", "admin"):
        client = await harness.as_user(username)
        for method, path in ME_ROUTES:
            response = await client.request(method, path, json={} if method != "GET" else None)
            assert response.status_code == 403, (username, method, path, response.status_code)
    for method, path in [*ME_ROUTES, ("GET", "/api/open-visits")]:
        response = await anonymous.request(method, path, json={} if method != "GET" else None)
        assert response.status_code == 401, (method, path, response.status_code)
    dr = await harness.as_user("dr-fabre")
    assert (await dr.get("/api/open-visits")).status_code == 403


async def test_a_practitioner_sees_only_her_own_visits_devices_alerts_and_reports(harness: Harness) -> None:
    device = await harness.system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id)
    op = await harness.as_user("op-herault")
    await op.post(f"/api/alerts/{alert_id}/resolve")
    fabre, benali = await harness.as_user("dr-fabre"), await harness.as_user("dr-benali")
    visit = (await fabre.post("/api/me/visits", json=VISIT)).json()
    test = (await fabre.post("/api/me/devices/btn-boutonnet/test")).json()

    assert [v["id"] for v in (await fabre.get("/api/me/visits")).json()] == [visit["id"]]
    assert [d["id"] for d in (await fabre.get("/api/me/devices")).json()] == ["btn-boutonnet"]
    assert [a["id"] for a in (await fabre.get("/api/me/alerts")).json()] == [alert_id]
    assert (await fabre.get(f"/api/me/alerts/{alert_id}/report")).status_code == 200

    assert (await benali.get("/api/me/visits")).json() == []
    assert (await benali.get("/api/me/devices")).json() == []
    assert (await benali.get("/api/me/alerts")).json() == []
    assert (await benali.get("/api/me/addresses/recent")).json() == []
    for method, path, body in [
        ("POST", f"/api/me/visits/{visit['id']}/checkout", None),
        ("POST", f"/api/me/visits/{visit['id']}/extend", {"by_s": 600}),
        ("POST", "/api/me/devices/btn-boutonnet/test", None),
        ("GET", f"/api/me/devices/btn-boutonnet/tests/{test['alert_id']}", None),
        ("GET", f"/api/me/alerts/{alert_id}/report", None),
        ("PUT", f"/api/me/alerts/{alert_id}/report", {"facts": "x"}),
        ("GET", f"/api/me/alerts/{alert_id}/report.pdf", None),
    ]:
        response = await benali.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.status_code)
        assert response.json()["detail"].endswith("introuvable")
    timer = await harness.system.store.get_visit_timer(visit["id"])
    assert timer.phase == "open" and timer.version == 1, "her visit is untouched"


async def test_operators_see_open_visits_of_their_territory_only(harness: Harness) -> None:
    fabre = await harness.as_user("dr-fabre")
    visit = (await fabre.post("/api/me/visits", json=VISIT)).json()
    herault, gard, admin = [await harness.as_user(u) for u in ("op-herault", "op-gard", "admin")]
    seen = (await herault.get("/api/open-visits")).json()
    assert [(v["id"], v["practitioner_name"], v["overdue"]) for v in seen] == [
        (visit["id"], "Dr Claire Fabre", False)
    ]
    assert (await gard.get("/api/open-visits")).json() == []
    assert [v["id"] for v in (await admin.get("/api/open-visits")).json()] == [visit["id"]]
    reads = await harness.system.store.list_audit(action="visit.read")
    assert {a.username for a in reads} == {"op-herault", "op-gard", "admin"}


async def test_her_page_is_served_with_a_strict_csp_and_a_pwa_manifest(harness: Harness) -> None:
    client = await harness.as_user("dr-fabre")
    page = await client.get("/moi/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert 'lang="fr"' in page.text and "cdn" not in page.text.lower()
    manifest = await client.get("/moi/manifest.webmanifest")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    assert manifest.json()["start_url"] == "/moi/" and manifest.json()["lang"] == "fr"
