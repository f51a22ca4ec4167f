"""The console as an operator reads it, in real headless Chromium against the whole running system.

* every label French: no raw domain value (English enums) in the rendered text, alerts in several
  states open one after the other, the device-health pane, no doubled word ("Cabinet Cabinet ...");
* every time in Europe/Paris, whatever the browser's zone (UTC, America/New_York).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from dispatcher.domain import DeviceKind
from protocol.messages import Location
from protocol.topics import UplinkKind
from tests.api.conftest import PASSWORD, Served
from tests.console.test_browser import ARTIFACTS, browser, chromium, login

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium"]
PARIS = ZoneInfo("Europe/Paris")

# Machine values of the domain (states, delivery statuses, channels, roles, location sources,
# gestures, device kinds/states/statuses, event kinds, site kinds): none may reach the operator.
ENGLISH = [
    "received",
    "notifying",
    "acknowledged",
    "resolved",
    "cancelled",
    "canceled",
    "false_alarm",
    "duress",
    "drill",
    "alert",
    "pending",
    "sending",
    "queued",
    "accepted",
    "scheduled",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "ringing",
    "initiated",
    "in-progress",
    "no-answer",
    "busy",
    "completed",
    "unknown",
    "sms",
    "voice",
    "purpose",
    "ack_notice",
    "duress_notice",
    "operator",
    "admin",
    "practitioner",
    "gps",
    "gnss",
    "home_visit",
    "site",
    "last_known",
    "hold",
    "multi_press",
    "keyboard",
    "button",
    "pocket",
    "revoked",
    "online",
    "offline",
    "low_battery",
    "provider",
    "alarm",
    "centre_sante",
    "mmg",
    "other",
    "None",
    "null",
    "undefined",
    "NaN",
    "Invalid",
    # the escalation view's and the overview's machine values
    "link",
    "current",
    "alerted",
    "upcoming",
    "not_reached",
    "empty",
    "renotify",
    "live",
    "open",
    "true",
    "false",
]
WORD = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in ENGLISH) + r")(?![\w-])")
DOUBLED = re.compile(r"(?<!\w)(\w{3,}) \1(?!\w)", re.IGNORECASE)


def english_words(text: str) -> list[str]:
    return sorted(set(WORD.findall(text)))


def test_the_word_list_catches_what_the_issue_saw() -> None:
    """The check itself can fail: the strings seen by operators before the fix are caught."""
    for seen in ["Olivier (operator)", "online", "in-progress", "geste : hold", "Localisée (home_visit)"]:
        assert english_words(seen), seen
    assert DOUBLED.search("Cabinet Cabinet médical du Faubourg")
    assert not english_words("Alerte reçue de la balise (geste : appui long) — GPS de la balise — SMS")


LONG_LABELS = {
    "btn-boutonnet": "bouton sous le bureau, cabinet Boutonnet",
    "poche-fabre": "bouton de poche simulé au clavier (make demo-device)",
    "bracelet-benali": "bracelet du Dr Benali, MMG",
}


@dataclass
class Scene:
    resolved: str  # desk button at her cabinet, acknowledged then resolved
    acknowledged: str  # her pocket button during a declared home visit, acknowledged
    notifying: str  # a bracelet with a GPS fix, nobody has it yet
    false_alarm: str  # the desk button again, declared a false alarm


async def _api(served: Served, username: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=served.url)
    response = await client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return client


@pytest.fixture
async def scene(served: Served) -> AsyncIterator[Scene]:
    system = served.system
    op, fabre = await _api(served, "op-herault"), await _api(served, "dr-fabre")
    try:
        desk = await system.add_device(
            "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet", kind=DeviceKind.BUTTON
        )
        resolved = await asyncio.to_thread(desk.alert)
        await asyncio.to_thread(desk.wait_downlink, "received", resolved)
        assert (await op.post(f"/api/alerts/{resolved}/acknowledge")).status_code == 200
        assert (await op.post(f"/api/alerts/{resolved}/resolve")).status_code == 200
        false_alarm = await asyncio.to_thread(desk.alert)
        await asyncio.to_thread(desk.wait_downlink, "received", false_alarm)
        assert (await op.post(f"/api/alerts/{false_alarm}/false-alarm")).status_code == 200

        now = datetime.now(UTC)
        visit = {
            "address": {
                "label": "8 Rue de la Croix de Lavit, 34090 Montpellier", "floor": "3e",
                "access_code": "4712B", "insee": "34172", "point": {"lat": 43.6247, "lon": 3.8712},
            },
            "starts_at": (now - timedelta(minutes=5)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
        }  # fmt: skip
        response = await fabre.post("/api/visits", json=visit)
        assert response.status_code in (200, 201), response.text
        pocket = await system.add_device(
            "poche-fabre", practitioner="dr-claire-fabre", kind=DeviceKind.POCKET
        )
        acknowledged = await asyncio.to_thread(pocket.alert)
        await asyncio.to_thread(pocket.wait_downlink, "received", acknowledged)
        assert (await op.post(f"/api/alerts/{acknowledged}/acknowledge")).status_code == 200

        bracelet = await system.add_device(
            "bracelet-benali", practitioner="dr-karim-benali", site="mmg-saint-gely"
        )
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        fix = Location(lat=43.69262, lon=3.80581, accuracy_m=12, fix_ts=now_ms - 20_000, source="gnss")
        notifying = await asyncio.to_thread(bracelet.alert, fix)
        await asyncio.to_thread(bracelet.wait_downlink, "received", notifying)
        # Device health: one online, one offline (its Last Will), one with a low battery.
        await asyncio.to_thread(
            desk.send, UplinkKind.HEARTBEAT, battery_pct=76, firmware="1.2.0", uptime_s=60
        )
        await asyncio.to_thread(
            bracelet.send, UplinkKind.HEARTBEAT, battery_pct=8, firmware="1.2.0", uptime_s=60
        )
        await asyncio.to_thread(pocket.publish_status, "offline")
        # Labels as long as the demo's (sandbox/demo_setup.py): the health pane must hold them.
        admin = await _api(served, "admin")
        try:
            for device_id, text in LONG_LABELS.items():
                response = await admin.patch(f"/api/devices/{device_id}", json={"label": text})
                assert response.status_code == 200, response.text
        finally:
            await admin.aclose()
        yield Scene(resolved, acknowledged, notifying, false_alarm)
    finally:
        await op.aclose()
        await fabre.aclose()


async def open_alert(page: Page, alert_id: str) -> None:
    await page.click(f'li.alert[data-id="{alert_id}"]')
    await expect(page.locator("#d-sub")).to_contain_text(alert_id, timeout=5000)
    await expect(page.locator("#d-timeline tr").first).to_be_visible(timeout=5000)


async def test_every_label_is_french(browser: Browser, served: Served, scene: Scene) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await login(page, served, "op-herault")
    await expect(page.locator("#who")).to_have_text("Olivier Opérateur (opérateur)")
    await expect(page.locator("li.alert")).to_have_count(4, timeout=5000)
    await expect(page.locator("#health tr")).to_have_count(3, timeout=5000)
    await expect(page.locator("#health")).to_contain_text("en ligne", timeout=10_000)
    await expect(page.locator("#health")).to_contain_text("HORS LIGNE", timeout=30_000)  # lease + misses
    await expect(page.locator("#health")).to_contain_text("8 %", timeout=10_000)
    texts = {}
    for name, alert_id in [
        ("resolved", scene.resolved), ("acknowledged", scene.acknowledged), ("notifying", scene.notifying),
        ("false_alarm", scene.false_alarm),
    ]:  # fmt: skip
        await open_alert(page, alert_id)
        await expect(page.locator("#d-notifications tr").first).to_be_visible(timeout=10_000)
        await expect(page.locator("#esc-tiers > li").first).to_be_visible(timeout=5000)
        texts[name] = await page.inner_text("body")
        await page.screenshot(path=str(ARTIFACTS / f"console-french-{name}.png"), full_page=True)
    await page.click("#show-overview")
    await expect(page.locator(f'#ov-list li[data-id="{scene.notifying}"]')).to_be_visible(timeout=5000)
    texts["overview"] = await page.inner_text("body")
    await page.screenshot(path=str(ARTIFACTS / "console-french-overview.png"), full_page=True)

    # What the scene must show for the check to mean anything: each state, gesture, source, kind.
    assert "clôturée" in texts["resolved"] and "lieu d'exercice" in texts["resolved"]
    assert "Cabinet médical du Faubourg Boutonnet" in texts["resolved"]
    assert "bouton fixe" in texts["resolved"] and "geste : " in texts["resolved"]
    assert (
        "visite à domicile déclarée" in texts["acknowledged"] and "prise en charge" in texts["acknowledged"]
    )
    assert "bouton de poche" in texts["acknowledged"]
    assert "GPS de la balise" in texts["notifying"] and "en cours" in texts["notifying"]
    assert "fausse alerte" in texts["false_alarm"] and "Déclarée fausse alerte par" in texts["false_alarm"]
    # The escalation view: tiers, their state, deliveries, who took it and how, the countdown.
    assert re.search(r"palier 2 dans (1 min \d\d|\d+) s", texts["notifying"]), "countdown"
    assert "Palier 1" in texts["notifying"] and "en cours" in texts["notifying"]
    assert "à venir" in texts["notifying"] and "pas encore alerté" in texts["notifying"]
    assert (
        "Prise en charge par Olivier Opérateur" in texts["acknowledged"]
        and "(console)" in texts["acknowledged"]
    )
    assert (
        "non atteint" in texts["acknowledged"] and "Escalade arrêtée (clôturée)" not in texts["acknowledged"]
    )
    assert "Carte d'ensemble" in texts["overview"] and "position il y a" in texts["overview"]
    assert "Ouvrir dans une carte" in texts["overview"]
    for name, text in texts.items():
        assert english_words(text) == [], f"{name}: English domain values shown: {english_words(text)}"
        doubled = [m.group(0) for m in DOUBLED.finditer(text)]
        assert doubled == [], f"{name}: doubled words {doubled}"
    assert errors == []


def _paris(iso: str, fmt: str) -> str:
    return datetime.fromisoformat(iso).astimezone(PARIS).strftime(fmt)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
async def test_times_are_paris_times_whatever_the_browser_zone(
    browser: Browser, served: Served, scene: Scene, zone: str
) -> None:
    context: BrowserContext = await browser.new_context(
        viewport={"width": 1400, "height": 1000}, timezone_id=zone, locale="en-US"
    )
    try:
        page = await context.new_page()
        assert await page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == zone
        await login(page, served, "op-herault")
        op = await _api(served, "op-herault")
        try:
            detail = (await op.get(f"/api/alerts/{scene.acknowledged}")).json()
            events = (await op.get("/api/operator-events?limit=15")).json()
            visits = (await op.get("/api/open-visits?recent_h=6")).json()
        finally:
            await op.aclose()
        received = detail["received_at"]
        paris, local = (
            _paris(received, "%H:%M:%S"),
            datetime.fromisoformat(received).astimezone(ZoneInfo(zone)),
        )
        assert paris != local.strftime("%H:%M:%S"), "the zones must differ for the test to mean anything"

        item = page.locator(f'li.alert[data-id="{scene.acknowledged}"]')
        await expect(item).to_contain_text(_paris(received, "%d/%m/%Y %H:%M:%S"), timeout=5000)
        await open_alert(page, scene.acknowledged)
        await expect(page.locator("#d-sub")).to_contain_text(_paris(received, "%d/%m/%Y %H:%M:%S"))
        first = detail["timeline"][0]
        await expect(page.locator("#d-timeline tr").first).to_contain_text(_paris(first["at"], "%H:%M:%S"))
        body = await page.inner_text("body")
        assert local.strftime("%H:%M:%S") not in body, f"a time in the browser's zone ({zone}) is shown"
        if events:
            await expect(page.locator("#events li").first).to_contain_text(
                _paris(events[0]["at"], "%d/%m/%Y %H:%M:%S"), timeout=5000
            )
        for visit in visits:  # the expected end of an open visit, hours and minutes
            ends = _paris(visit["ends_at"], "%H:%M")
            await expect(page.locator(f'#open-visits li[data-id="{visit["id"]}"]')).to_contain_text(ends)
        # The new views: a countdown from the server's clock (not the browser's), ages likewise.
        await open_alert(page, scene.notifying)
        await expect(page.locator("#esc-next")).to_have_text(re.compile(r"palier 2 dans (1 min \d\d|\d+) s"))
        await page.click("#show-overview")
        alert_item = page.locator(f'#ov-list li[data-id="{scene.notifying}"]')
        await expect(alert_item).to_contain_text(re.compile(r"position il y a \d+ s"), timeout=5000)
        body = await page.inner_text("body")
        assert local.strftime("%H:%M:%S") not in body, f"a time in the browser's zone ({zone}) is shown"
        await page.screenshot(path=str(ARTIFACTS / f"console-times-{zone.replace('/', '-')}.png"))
    finally:
        await context.close()


async def test_the_label_table_covers_the_domain_and_never_shows_a_raw_value(
    browser: Browser, served: Served
) -> None:
    """static/labels.js, loaded by Chromium as the console loads it: every enum value of the domain
    has a French label, and a value it does not know reads as a generic French word."""
    from dispatcher.domain import AlertKind, AlertState, Channel, DeviceState, LocationSource, SiteKind
    from dispatcher.store.base import PROVIDER_PENDING_STATUSES
    from dispatcher.web.api.views import _STATUS
    from dispatcher.web.auth import Role

    page = await browser.new_page()
    await page.goto(served.url + "/console/")
    tables = await page.evaluate("async () => (await import('/console/static/labels.js')).LABELS")
    domain = {
        "state": [s.value for s in AlertState],
        "alertKind": [k.value for k in AlertKind],
        "delivery": [*_STATUS, *PROVIDER_PENDING_STATUSES],
        "channel": [c.value for c in Channel],
        "role": [r.value for r in Role],
        "source": [s.value for s in LocationSource],
        "gesture": ["hold", "multi_press", "keyboard"],  # protocol.messages.Gesture
        "deviceKind": [k.value for k in DeviceKind],
        "deviceState": [s.value for s in DeviceState],
        "deviceStatus": ["online", "offline"],
        "siteKind": [k.value for k in SiteKind],
    }
    for table, values in domain.items():
        missing = sorted(set(values) - set(tables[table]))
        assert missing == [], f"{table}: no French label for {missing}"
    shown = " | ".join(text for table in tables.values() for text in table.values())
    assert english_words(shown) == [], english_words(shown)
    unknown = await page.evaluate(
        """async () => {
          const { label, LABELS } = await import('/console/static/labels.js');
          return Object.keys(LABELS).map((t) => label(t, "brand_new_value"));
        }"""
    )
    assert all(text and "brand_new_value" not in text for text in unknown), unknown
    assert english_words(" | ".join(unknown)) == []
