"""The low web findings of issue 13.

Before the fix: an open WebSocket kept streaming after its account was
disabled, logged out or re-scoped; admin reads of home visits (address, door
code) were not audited; ``/docs`` and ``/redoc`` loaded unpinned scripts from a
CDN on the console's origin; the printable report had no CSP; every alert's
stored context held the argon2 hashes of the practitioner's PINs.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import websockets
from playwright.async_api import Browser, Response
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from dispatcher import audit
from dispatcher.store import open_store
from dispatcher.store.schema import MIGRATIONS
from protocol.topics import UplinkKind
from tests.api.conftest import PASSWORD, Served
from tests.security.web import logged_in, raise_alert, state_is
from tests.support.feed import next_message

pytestmark = pytest.mark.attacks


@asynccontextmanager
async def _feed(served: Served, username: str) -> AsyncIterator[tuple[ClientConnection, httpx.AsyncClient]]:
    """A console WebSocket of ``username`` (after its snapshot), and an HTTP client of the same session."""
    async with httpx.AsyncClient(base_url=served.url) as http:
        login = await http.post("/api/auth/login", json={"username": username, "password": PASSWORD})
        assert login.status_code == 200
        cookie = f"vigie_session={login.cookies['vigie_session']}"
        url = served.url.replace("http", "ws") + "/api/ws"
        async with websockets.connect(url, additional_headers={"Cookie": cookie}) as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            yield ws, http


async def _closed_with(ws: ClientConnection, within: float = 5.0) -> int | None:
    """Read until the server closes the feed; its close code (fails after ``within`` seconds)."""

    async def until_closed() -> None:
        while True:
            await ws.recv()

    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(until_closed(), within)
    return ws.close_code


async def _user_id(served: Served, username: str) -> int:
    record = await served.system.store.get_user_by_name(username)
    assert record is not None
    return record.id


async def test_open_feeds_close_on_logout_disable_and_rescope(served: Served) -> None:
    async with _feed(served, "op-herault") as (ws, http):
        assert (await http.post("/api/auth/logout")).status_code == 204
        assert await _closed_with(ws) == 4401
    async with logged_in(served.url, "admin") as admin, _feed(served, "op-gard") as (ws, _):
        gard = await _user_id(served, "op-gard")
        assert (await admin.patch(f"/api/users/{gard}", json={"conventions": ["ssj-34"]})).status_code == 200
        assert await _closed_with(ws) == 4409  # the page reconnects and gets the Hérault snapshot
    async with logged_in(served.url, "admin") as admin, _feed(served, "op-gard") as (ws, _):
        assert (await admin.patch(f"/api/users/{gard}", json={"disabled": True})).status_code == 200
        assert await _closed_with(ws) == 4401
    # Legitimate use: another operator's feed is untouched and still live.
    async with _feed(served, "op-herault") as (ws, _):
        _, alert_id = await raise_alert(served.system, "btn-boutonnet")
        message = await asyncio.wait_for(next_message(ws), 5)
        assert message["type"] == "alert" and message["alert"]["id"] == alert_id


async def test_admin_reads_of_home_visits_are_audited(served: Served) -> None:
    async with logged_in(served.url, "dr-fabre") as practitioner:
        body = {
            "address": {"label": "8 Rue de la Loge, 34000 Montpellier", "access_code": "4512B"},
            "starts_at": "2026-11-27T08:00:00+00:00",
            "ends_at": "2026-11-27T09:00:00+00:00",
        }
        assert (await practitioner.post("/api/visits", json=body)).status_code == 201
        assert (await practitioner.get("/api/visits")).status_code == 200  # her own: not audited
    async with logged_in(served.url, "admin") as admin:
        visits = (await admin.get("/api/visits")).json()
        assert visits[0]["address"]["access_code"] == "4512B"
    reads = await served.system.store.list_audit(action=audit.VISIT_READ)
    assert [(r.username, r.detail.get("count")) for r in reads] == [("admin", 1)]


async def test_api_docs_render_offline_and_the_report_has_a_csp(browser: Browser, served: Served) -> None:
    context = await browser.new_context()
    outside: list[str] = []

    def note(response: Response) -> None:
        # What was really fetched from elsewhere (ReDoc's footer logo is attempted, and blocked by the CSP).
        if not response.url.startswith((served.url, "blob:", "data:")):
            outside.append(response.url)

    context.on("response", note)
    page = await context.new_page()
    await page.goto(served.url + "/docs")
    await page.wait_for_selector(".swagger-ui .opblock", timeout=10_000)  # rendered from local files
    assert "/api/alerts" in await page.content()
    await page.goto(served.url + "/redoc")
    await page.wait_for_selector("[data-section-id]", timeout=10_000)
    assert "/api/alerts" in await page.content()
    assert outside == [], outside

    # The fiche de signalement: a CSP that lets nothing run or load but its print button.
    system = served.system
    _, alert_id = await raise_alert(system, "btn-boutonnet")
    async with logged_in(served.url, "op-herault") as operator:
        assert (await operator.post(f"/api/alerts/{alert_id}/resolve")).status_code == 200
    await state_is(system, alert_id, "resolved")
    login = {"username": "op-herault", "password": PASSWORD}
    assert (await context.request.post(served.url + "/api/auth/login", data=login)).ok
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    report = await page.goto(f"{served.url}/api/alerts/{alert_id}/report")
    assert report is not None and report.status == 200
    csp = await report.header_value("content-security-policy") or ""
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    # Were a note ever to slip through escaping as a <script>, it would not run.
    await page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = \"document.title = 'injecté'\"; document.body.appendChild(s); }"
    )
    assert await page.title() != "injecté"
    violations.clear()
    await page.evaluate("window.print = () => { document.title = 'imprimé' }")  # headless: no dialog
    await page.click("button")
    assert await page.title() == "imprimé"  # the hashed inline handler ran
    assert violations == []
    await context.close()


async def test_alert_contexts_hold_no_pin_hash_and_old_ones_are_purged(served: Served) -> None:
    system = served.system
    _, alert_id = await raise_alert(system, "btn-boutonnet")
    record = await system.store.get_alert(alert_id)
    assert record.context is not None and record.context["practitioner"]["id"] == "dr-claire-fabre"
    assert not {"cancel_pin_hash", "duress_pin_hash"} & set(record.context["practitioner"])
    raw = json.dumps(record.context)
    assert "$argon2" not in raw
    # Legitimate use: the PINs still work (checked against the directory).
    device = system.devices["btn-boutonnet"]
    await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=alert_id, pin="2468")
    await asyncio.to_thread(device.wait_downlink, "cancelled", alert_id)
    await state_is(system, alert_id, "cancelled")


async def test_the_migration_erases_pin_hashes_already_stored(tmp_path: Path) -> None:
    """An alert stored by an older version (hashes in its context) loses them when the store opens."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    # The schema as the version before migration 9 left it (the later migrations run at open).
    step = next(i for i, script in enumerate(MIGRATIONS) if "inbound_messages" in script)
    hashes = {"cancel_pin_hash": "$argon2id$x", "duress_pin_hash": "$argon2id$y"}
    context = {"practitioner": {"id": "p", **hashes}, "site": {"id": "s", **hashes}}
    with sqlite3.connect(tmp_path / "old.db") as conn:
        for number, script in enumerate(MIGRATIONS[:step], start=1):
            conn.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
        conn.execute(
            "INSERT INTO devices(id, doc, state, hmac_key, created_at)"
            " VALUES ('d', '{}', 'active', x'00', 'x')"
        )
        conn.execute(
            "INSERT INTO alerts(id, device_id, kind, seq, device_ts, received_at, gesture, raw, state,"
            " context, updated_at) VALUES ('a', 'd', 'alert', 1, 'x', '2026-01-01T00:00:00+00:00', 'hold',"
            " x'', 'resolved', ?, 'x')",
            (json.dumps(context),),
        )
    store = await open_store(url)
    try:
        assert (await store.get_alert("a")).context == {"practitioner": {"id": "p"}, "site": {"id": "s"}}
    finally:
        await store.close()
