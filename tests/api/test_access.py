"""Authentication, roles and territorial isolation, against the real app and store."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
import pytest

from dispatcher.fleet.alert_takers import NO_TAKER
from dispatcher.fleet.presence import TOPIC as ALERT_TAKERS
from dispatcher.store import sqlite_path
from tests.api.conftest import PASSWORD, Api


async def test_unauthenticated_requests_get_401(api: Api) -> None:
    client = api.anonymous()
    for path in ("/api/alerts", "/api/auth/me", "/api/users", "/api/devices/health", "/api/stats"):
        response = await client.get(path)
        assert response.status_code == 401, path
        assert response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"


async def test_login_cookie_is_httponly_strict_and_secure(api: Api) -> None:
    client = api.anonymous()
    response = await client.post("/api/auth/login", json={"username": "op-herault", "password": PASSWORD})
    assert response.status_code == 200
    assert response.json()["role"] == "operator" and response.json()["conventions"] == ["ssj-34"]
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    assert "password" not in response.text
    assert (await client.get("/api/auth/me")).json()["username"] == "op-herault"


async def test_bearer_token_and_logout_revokes_it(api: Api) -> None:
    client = api.anonymous()
    response = await client.post("/api/auth/token", data={"username": "admin", "password": PASSWORD})
    assert response.status_code == 200 and response.json()["token_type"] == "bearer"
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    assert (await client.get("/api/auth/me", headers=headers)).status_code == 200
    assert (await client.post("/api/auth/logout", headers=headers)).status_code == 204
    assert (await client.get("/api/auth/me", headers=headers)).status_code == 401


async def test_wrong_password_is_401_and_brute_force_is_throttled(api: Api) -> None:
    client = api.anonymous()
    for _ in range(5):
        response = await client.post("/api/auth/login", json={"username": "admin", "password": "guess"})
        assert response.status_code == 401
    # Even the right password is refused now, for this user from this address.
    response = await client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0
    # The same user from another address, and another user from this one, are not locked out.
    other_ip = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app, client=("192.0.2.7", 4000)), base_url="https://vigie.test"
    )
    api.clients.append(other_ip)
    assert (
        await other_ip.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
    ).status_code == 200
    await api.as_user("op-herault")
    failures = await api.system.store.list_audit(action="auth.login_failed")
    assert len(failures) == 5 and {f.target_id for f in failures} == {"admin"}


async def test_unknown_user_looks_like_a_wrong_password(api: Api) -> None:
    response = await api.anonymous().post("/api/auth/login", json={"username": "nobody", "password": "x"})
    assert response.status_code == 401
    assert response.json()["detail"] == "identifiant ou mot de passe incorrect"


@pytest.mark.parametrize(
    ("user", "method", "path", "body"),
    [
        (
            "op-herault",
            "POST",
            "/api/users",
            {"username": "x-y", "display_name": "X", "password": "x" * 12, "role": "admin"},
        ),
        ("op-herault", "GET", "/api/audit", None),
        ("op-herault", "GET", "/api/visits", None),
        ("op-herault", "PATCH", "/api/devices/anything", {"label": "x"}),
        ("dr-fabre", "GET", "/api/conventions", None),
        ("dr-fabre", "GET", "/api/stats", None),
        ("dr-fabre", "POST", "/api/alerts/some-alert/acknowledge", None),
        ("dr-fabre", "GET", "/api/operator-events", None),
        (
            "dr-fabre",
            "PUT",
            "/api/sites/cabinet-boutonnet",
            {"kind": "cabinet", "name": "x", "address": {"label": "1 rue X"}},
        ),
    ],
)
async def test_wrong_role_is_403(api: Api, user: str, method: str, path: str, body: object) -> None:
    client = await api.as_user(user)
    response = await client.request(method, path, json=body)
    assert response.status_code == 403, response.text


async def test_operator_of_another_territory_gets_404_not_403(api: Api) -> None:
    _, alert_id = await api.alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    gard = await api.as_user("op-gard")
    herault = await api.as_user("op-herault")

    assert (await herault.get(f"/api/alerts/{alert_id}")).status_code == 200
    hidden = await gard.get(f"/api/alerts/{alert_id}")
    missing = await gard.get("/api/alerts/no-such-alert")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()  # existence is not leaked
    for action in ("acknowledge", "resolve", "false-alarm", "take-over"):
        assert (await gard.post(f"/api/alerts/{alert_id}/{action}")).status_code == 404
    assert (await gard.get(f"/api/alerts/{alert_id}/report")).status_code == 404
    assert (await gard.get(f"/api/alerts/{alert_id}/timeline")).status_code == 404
    assert (await gard.post(f"/api/alerts/{alert_id}/notes", json={"text": "x"})).status_code == 404
    assert (await gard.get("/api/alerts")).json() == []
    assert (await gard.get("/api/alerts", params={"convention_id": "ssj-34"})).json() == []
    assert [a["id"] for a in (await herault.get("/api/alerts")).json()] == [alert_id]
    # Nor the territory's devices, sites or practitioners.
    assert (await gard.get("/api/devices/btn-boutonnet")).status_code == 404
    assert (await gard.get("/api/devices/health")).json() == []
    assert (await gard.get("/api/sites")).json() == []
    assert (await gard.get("/api/practitioners/dr-claire-fabre")).status_code == 404
    assert [c["id"] for c in (await gard.get("/api/conventions")).json()] == ["ssj-30"]
    assert (await gard.get("/api/conventions/ssj-34")).status_code == 404
    # The Hérault operator, for comparison, sees them.
    assert (await herault.get("/api/devices/btn-boutonnet")).status_code == 200
    assert [s["id"] for s in (await herault.get("/api/sites")).json()] == [
        "cabinet-boutonnet",
        "mmg-saint-gely",
    ]


async def test_every_operator_sees_the_alarms_about_the_whole_system(api: Api) -> None:
    """No alert taken, provider down: every territory's operators must know; an alert's alarm stays theirs."""
    _, alert_id = await api.alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    store = api.system.dispatcher.store
    await store.add_operator_event("alarm", "alerte sans contact joignable", alert_id=alert_id)
    await store.add_operator_event("alarm", NO_TAKER, topic=ALERT_TAKERS)
    gard = await api.as_user("op-gard")
    herault = await api.as_user("op-herault")
    assert [e["message"] for e in (await gard.get("/api/operator-events")).json()] == [NO_TAKER]
    seen = [e["message"] for e in (await herault.get("/api/operator-events")).json()]
    assert seen[:2] == [NO_TAKER, "alerte sans contact joignable"]


async def test_a_visit_alarm_from_before_scopes_is_read_by_admins_only(api: Api) -> None:
    """Before migration 18 a home visit's alarm had no scope: it names a practitioner and her
    phone, of any territory, so no operator reads it; admins do."""
    old = "Visite dépassée — Dr Claire Fabre (dr-claire-fabre) : ALERTE NON DÉCLENCHÉE, appelez-la"
    store = api.system.dispatcher.store
    await store.add_operator_event("alarm", old)  # as written then: no alert, device, scope or topic
    await store.add_operator_event("alarm", NO_TAKER, topic=ALERT_TAKERS)
    for operator in ("op-gard", "op-herault"):
        client = await api.as_user(operator)
        assert [e["message"] for e in (await client.get("/api/operator-events")).json()] == [NO_TAKER]
    admin = await api.as_user("admin")
    assert [e["message"] for e in (await admin.get("/api/operator-events")).json()] == [NO_TAKER, old]


async def test_practitioner_sees_only_her_own_alerts(api: Api) -> None:
    _, alert_id = await api.alert_from("bracelet-fabre", "dr-claire-fabre")
    fabre = await api.as_user("dr-fabre")
    benali = await api.as_user("dr-benali")
    assert [a["id"] for a in (await fabre.get("/api/alerts")).json()] == [alert_id]
    assert (await fabre.get(f"/api/alerts/{alert_id}")).status_code == 200
    assert (await benali.get(f"/api/alerts/{alert_id}")).status_code == 404
    assert (await benali.get("/api/alerts", params={"practitioner_id": "dr-claire-fabre"})).json() == []
    assert [d["id"] for d in (await fabre.get("/api/devices")).json()] == ["bracelet-fabre"]
    assert (await benali.get("/api/devices")).json() == []
    assert (await benali.get("/api/practitioners/dr-claire-fabre")).status_code == 404
    assert (
        await fabre.post(f"/api/alerts/{alert_id}/notes", json={"text": "Agresseur parti."})
    ).status_code == 201


async def test_responses_never_expose_keys_or_hashes(api: Api) -> None:
    await api.system.add_device("btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet")
    admin = await api.as_user("admin")
    operator = await api.as_user("op-herault")
    paths = ("/api/practitioners", "/api/devices", "/api/users", "/api/practitioners/dr-claire-fabre",
             "/api/sites", "/api/sites/mmg-saint-gely")  # fmt: skip
    for path, text in [(p, (await admin.get(p)).text) for p in paths] + [
        (p, (await operator.get(p)).text) for p in ("/api/sites", "/api/sites/mmg-saint-gely")
    ]:
        assert "argon2" not in text and "hash" not in text.replace("has_", "") and "hmac" not in text, path
    practitioner = (await admin.get("/api/practitioners/dr-claire-fabre")).json()
    assert practitioner["has_cancel_pin"] and practitioner["has_duress_pin"]


async def test_audit_log_is_append_only_even_in_sql(api: Api) -> None:
    await api.as_user("admin")
    admin = await api.as_user("admin")
    assert (await admin.get("/api/audit")).status_code == 200
    assert (await admin.delete("/api/audit")).status_code == 405
    assert (await admin.put("/api/audit", json={})).status_code == 405

    def tamper(sql: str) -> None:
        with sqlite3.connect(sqlite_path(api.system.dispatcher.settings.database_url)) as db:
            db.execute(sql)

    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        await asyncio.to_thread(tamper, "UPDATE audit_log SET username='nobody'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        await asyncio.to_thread(tamper, "DELETE FROM audit_log")
    assert len(await api.system.store.list_audit(action="auth.login")) == 2


async def test_disabling_a_user_ends_her_sessions(api: Api) -> None:
    admin = await api.as_user("admin")
    operator = await api.as_user("op-herault")
    user_id = (await operator.get("/api/auth/me")).json()["id"]
    response = await admin.patch(f"/api/users/{user_id}", json={"disabled": True})
    assert response.status_code == 200 and response.json()["disabled"] is True
    assert (await operator.get("/api/alerts")).status_code == 401
    relog = await api.anonymous().post(
        "/api/auth/login", json={"username": "op-herault", "password": PASSWORD}
    )
    assert relog.status_code == 401
    changes = await api.system.store.list_audit(action="config.change", target_kind="user")
    assert changes and changes[0].username == "admin" and changes[0].detail["fields"] == ["disabled"]
