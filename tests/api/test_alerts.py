"""Alerts through the API: timeline, actions reaching the device, audit, report, statistics."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta

from tests.api.conftest import Api


async def test_operator_reads_the_full_alert_and_the_read_is_audited(api: Api) -> None:
    _, alert_id = await api.alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    await api.system.dispatcher.delivery.wait_idle()
    operator = await api.as_user("op-herault")

    listed = (await operator.get("/api/alerts", params={"state": ["notifying"]})).json()
    assert [a["id"] for a in listed] == [alert_id]
    assert listed[0]["needs_attention"] is True and "location" not in listed[0]

    alert = (await operator.get(f"/api/alerts/{alert_id}")).json()
    assert alert["practitioner"]["rpps"] == "10001234567"
    assert alert["practitioner"]["phones"] == ["+33639980150"]
    assert alert["location"]["source"] == "site"
    assert alert["location"]["address"]["label"].startswith("45 Rue du Faubourg Boutonnet")
    kinds = [e["kind"] for e in alert["timeline"]]
    assert kinds[:3] == ["received", "located", "routed"] and "notification" in kinds
    assert {n["contact_name"] for n in alert["notifications"]} >= {"Chef de poste"} or alert["notifications"]
    assert all(n["created_at"] for n in alert["notifications"])

    reads = await api.system.store.list_audit(action="alert.location.read", target_id=alert_id)
    assert [(r.username, r.target_kind) for r in reads] == [("op-herault", "alert")]
    assert (await operator.get("/api/alerts", params={"state": ["resolved"]})).json() == []


async def test_acknowledge_resolve_reach_the_device_and_are_audited(api: Api) -> None:
    device, alert_id = await api.alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    operator = await api.as_user("op-herault")

    response = await operator.post(f"/api/alerts/{alert_id}/acknowledge")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "acknowledged"
    assert response.json()["acked_by"].startswith("Olivier Opérateur")
    await asyncio.to_thread(device.wait_downlink, "acknowledged", alert_id)
    again = await operator.post(f"/api/alerts/{alert_id}/acknowledge")
    assert again.status_code == 409 and again.json()["detail"]

    note = await operator.post(
        f"/api/alerts/{alert_id}/notes", json={"text": "Équipage sur place à 22 h 14."}
    )
    assert note.status_code == 201
    assert (await operator.get(f"/api/alerts/{alert_id}/report")).status_code == 409  # not closed yet

    assert (await operator.post(f"/api/alerts/{alert_id}/resolve")).json()["state"] == "resolved"
    await asyncio.to_thread(device.wait_downlink, "resolved", alert_id)

    timeline = (await operator.get(f"/api/alerts/{alert_id}/timeline")).json()
    texts = [e["text"] for e in timeline]
    assert any(t.startswith("Prise en charge par Olivier Opérateur") for t in texts)
    assert any("Équipage sur place" in t for t in texts)
    actions = [e.action for e in await api.system.store.list_audit(target_id=alert_id)]
    assert {"alert.acknowledge", "alert.note", "alert.resolve"} <= set(actions)


async def test_false_alarm_from_the_console(api: Api) -> None:
    device, alert_id = await api.alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    admin = await api.as_user("admin")
    assert (await admin.post(f"/api/alerts/{alert_id}/false-alarm")).json()["state"] == "false_alarm"
    await asyncio.to_thread(device.wait_downlink, "resolved", alert_id)  # the device just stops
    assert (await admin.post(f"/api/alerts/{alert_id}/resolve")).status_code == 409


async def test_incident_report_is_prefilled_and_printable(api: Api) -> None:
    _, alert_id = await api.alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    operator = await api.as_user("op-herault")
    await operator.post(f"/api/alerts/{alert_id}/acknowledge")
    await operator.post(f"/api/alerts/{alert_id}/resolve")
    fabre = await api.as_user("dr-fabre")
    response = await fabre.get(f"/api/alerts/{alert_id}/report")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    for expected in (
        "Fiche de signalement",
        "Dr Claire Fabre",
        "10001234567",
        "Cabinet médical",
        "45 Rue du Faubourg Boutonnet",
        "Convention SSJ Hérault",
        "@media print",
        "ONVS",
    ):
        assert expected in html, expected
    assert "<script" not in html
    assert (await api.system.store.list_audit(action="alert.report"))[0].username == "dr-fabre"


async def test_statistics_are_anonymous(api: Api) -> None:
    _, first = await api.alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    _, second = await api.alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    operator = await api.as_user("op-herault")
    await operator.post(f"/api/alerts/{first}/acknowledge")
    await operator.post(f"/api/alerts/{second}/false-alarm")

    rows = (await operator.get("/api/stats")).json()
    assert len(rows) == 1
    row = rows[0]
    assert row["place_type"] == "cabinet" and row["departement"] == "34"
    # Two alerts, one acknowledged, one false alarm: every count under 5 is hidden, and so are the delays.
    counts = (row["alerts"], row["acknowledged"], row["false_alarms"], row["cancelled"])
    assert counts == ("<5", "<5", "<5", 0)
    assert row["median_ack_s"] is None and row["p90_ack_s"] is None

    response = await operator.get("/api/stats", params={"format": "csv"})
    assert response.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(response.text)))
    assert parsed[0]["alerts"] == "<5"
    for secret in ("Fabre", "Boutonnet", "btn-boutonnet", "10001234567", "+33"):
        assert secret not in response.text
    gard = await api.as_user("op-gard")
    assert (await gard.get("/api/stats")).json() == []


async def test_practitioner_declares_a_visit_and_her_next_alert_is_located_there(api: Api) -> None:
    fabre = await api.as_user("dr-fabre")
    now = datetime.now(UTC)
    body = {
        "address": {
            "label": "3 Rue des Écoles Laïques, 34000 Montpellier",
            "floor": "4e étage",
            "access_code": "A1234",
            "insee": "34172",
            "point": {"lat": 43.6125, "lon": 3.8772},
        },
        "starts_at": (now - timedelta(minutes=5)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
    }
    created = await fabre.post("/api/visits", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["practitioner_id"] == "dr-claire-fabre" and created.json()["geocoded"]
    assert [v["id"] for v in (await fabre.get("/api/visits")).json()].count(created.json()["id"]) == 1
    assert (
        await fabre.post("/api/visits", json={**body, "practitioner_id": "dr-karim-benali"})
    ).status_code == 403

    _, alert_id = await api.alert_from("bracelet-fabre", "dr-claire-fabre")
    alert = (await fabre.get(f"/api/alerts/{alert_id}")).json()
    assert alert["location"]["source"] == "home_visit"
    assert alert["location"]["address"]["access_code"] == "A1234"

    benali = await api.as_user("dr-benali")
    assert (await benali.delete(f"/api/visits/{created.json()['id']}")).status_code == 404
    assert (await fabre.delete(f"/api/visits/{created.json()['id']}")).status_code == 204


async def test_malformed_bodies_are_422_with_detail(api: Api) -> None:
    fabre = await api.as_user("dr-fabre")
    admin = await api.as_user("admin")
    now = datetime.now(UTC)
    backwards = {
        "address": {"label": "1 rue X, 34000 Montpellier"},
        "starts_at": now.isoformat(),
        "ends_at": (now - timedelta(hours=1)).isoformat(),
    }
    naive = {**backwards, "starts_at": "2026-01-01T10:00:00", "ends_at": "2026-01-01T11:00:00"}
    cases = [
        (fabre, "/api/visits", backwards),
        (fabre, "/api/visits", naive),
        (fabre, "/api/visits", {"address": "not an object"}),
        (admin, "/api/users", {"username": "ab", "display_name": "x", "password": "short", "role": "admin"}),
        (
            admin,
            "/api/users",
            {"username": "opx", "display_name": "x", "password": "x" * 12, "role": "operator"},
        ),
        (
            admin,
            "/api/practitioners",
            {"id": "BAD ID", "first_name": "a", "last_name": "b", "rpps": "1", "phones": []},
        ),
    ]
    for client, path, body in cases:
        response = await client.post(path, json=body)
        assert response.status_code == 422, (path, body, response.text)
        assert isinstance(response.json()["detail"], list) and response.json()["detail"][0]["msg"]
    raw = await admin.post("/api/users", content=b"{not json", headers={"content-type": "application/json"})
    assert raw.status_code == 422


async def test_admin_manages_the_directory_and_changes_are_audited(api: Api) -> None:
    admin = await api.as_user("admin")
    practitioner = {
        "id": "dr-ines-roux", "first_name": "Inès", "last_name": "Roux", "rpps": "10009999999",
        "phones": ["+33639980160"], "cancel_pin": "1111", "duress_pin": "2222",
    }  # fmt: skip
    response = await admin.post("/api/practitioners", json=practitioner)
    assert response.status_code == 201 and response.json()["has_duress_pin"]
    assert (await admin.post("/api/practitioners", json=practitioner)).status_code == 409
    assert "dr-ines-roux" in api.system.dispatcher.cache.current.practitioners

    user = {"username": "dr-roux", "display_name": "Inès Roux", "password": "a long passphrase",
            "role": "practitioner", "practitioner_id": "dr-ines-roux"}  # fmt: skip
    created = await admin.post("/api/users", json=user)
    assert created.status_code == 201 and "password" not in created.text
    assert (await admin.post("/api/users", json=user)).status_code == 409

    changes = await api.system.store.list_audit(action="config.change")
    assert {(c.target_kind, c.detail["change"]) for c in changes} >= {
        ("practitioner", "create"),
        ("user", "create"),
    }
    audit = (await admin.get("/api/audit", params={"action": "config.change"})).json()
    assert audit and all(e["username"] == "admin" for e in audit)
