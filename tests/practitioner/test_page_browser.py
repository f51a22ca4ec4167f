"""Her page in real headless Chromium at 390×844, against the whole running system.

Screenshots go to test-artifacts/ (the docs' copies are made by
``python -m tests.practitioner.docs_screenshots``).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from pypdf import PdfReader

from protocol.topics import UplinkKind
from tests.api.conftest import PASSWORD
from tests.console.test_browser import ARTIFACTS, browser, chromium
from tests.practitioner.conftest import FABRE_PHONE, Harness
from tests.support.system import FROM_NUMBER

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium"]
PHONE = {"width": 390, "height": 844}
LAVIT = "8 Rue de la Croix de Lavit 34090 Montpellier"  # as the BAN labels it
# How long a page may take to show what the server did (it polls every 5 s; the device
# test every 0.5 s) before the test gives up: a safety net for a loaded machine, not a goal.
SHOWN_MS = 30_000


@pytest.fixture
def grace_s() -> int:
    """Long enough for her page to show the check before the alert, on a loaded machine too."""
    return 60


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="fr-FR")
    try:
        yield context
    finally:
        await context.close()


async def login(page: Page, h: Harness, username: str = "dr-fabre", path: str = "/console/") -> None:
    await page.goto(h.url + path)
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-button")


async def shot(page: Page, name: str, *, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


async def eventually(check: Callable[[], Awaitable[bool]], within: float) -> None:
    """Re-check a store condition every 100 ms until it holds (TimeoutError after ``within``)."""

    async def poll() -> None:
        while not await check():  # noqa: ASYNC110 - the health flush publishes no event
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), within)


async def no_horizontal_scroll(page: Page) -> None:
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


async def test_she_lands_on_her_page_and_declares_a_visit(phone: BrowserContext, harness: Harness) -> None:
    page = await phone.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await login(page, harness)  # through the operator console's URL: she is sent to her own page
    await expect(page.locator("#visit-form")).to_be_visible(timeout=5000)
    assert page.url.endswith("/moi/")
    await expect(page.locator("#no-visits")).to_be_visible()  # her first time: said, not a blank card
    await expect(page.locator("#no-visits")).to_have_text("Aucune visite déclarée pour l'instant.")

    await page.fill("#v-label", "8 rue croix lavit")
    suggestion = page.locator("#suggestions li").first
    await expect(suggestion).to_contain_text("8 Rue de la Croix de Lavit", timeout=5000)
    await shot(page, "practitioner-declare")
    await suggestion.click()
    await page.fill("#v-floor", "3e étage gauche")
    await page.fill("#v-code", "4712B")
    await page.fill("#v-notes", "Bâtiment B")
    await page.check("#v-dangerous")
    await page.click(".durations button[data-min='15']")
    await page.click("#v-submit")
    await expect(page.locator("#timer")).to_be_visible(timeout=5000)
    await expect(page.locator("#t-address")).to_have_text(LAVIT)
    await expect(page.locator("#t-access")).to_contain_text("code 4712B")
    await expect(page.locator("#t-countdown")).to_contain_text(":")
    await no_horizontal_scroll(page)
    await shot(page, "practitioner-timer")

    before = await page.locator("#t-until").text_content()
    await page.click("button.extend[data-min='30']")
    await expect(page.locator("#t-until")).not_to_have_text(before or "", timeout=5000)
    await page.click("#t-checkout")
    await expect(page.locator("#visit-form")).to_be_visible(timeout=5000)
    await expect(page.locator("#visits li").first).to_contain_text("clôturée")
    await expect(page.locator("#no-visits")).to_be_hidden()
    await expect(page.locator("#recent button").first).to_have_text(LAVIT)
    (record,) = await harness.system.store.list_visit_timers(practitioner_id="dr-claire-fabre")
    assert record.phase == "closed"
    actions = {a.action for a in await harness.system.store.list_audit(target_id=record.visit_id)}
    assert {"visit.open", "visit.extend", "visit.checkout"} <= actions
    assert errors == []


async def test_unplaceable_address_offers_the_commune_route(phone: BrowserContext, harness: Harness) -> None:
    page = await phone.new_page()
    await login(page, harness, path="/moi/")
    await page.fill("#v-label", "Mas des Oliviers, lieu-dit")
    await page.click("#v-submit")
    await expect(page.locator("#v-error")).to_contain_text("indiquez le code postal et la commune")
    await expect(page.locator("#v-commune")).to_be_visible()
    await shot(page, "practitioner-commune")
    await page.fill("#v-postcode", "34000")
    await page.fill("#v-city", "Montpellier")
    await page.click("#v-submit")
    await expect(page.locator("#timer")).to_be_visible(timeout=5000)


async def test_without_any_device_her_page_warns_that_only_operators_would_be_alerted(
    phone: BrowserContext, harness: Harness
) -> None:
    page = await phone.new_page()
    await login(page, harness, path="/moi/")
    await page.fill("#v-label", "8 Rue de la Croix de Lavit, 34090 Montpellier")
    await page.click("#v-submit")
    await expect(page.locator("#timer")).to_be_visible(timeout=5000)
    await expect(page.locator("#t-warning")).to_contain_text("seuls les opérateurs de Vigie seront alertés")
    await no_horizontal_scroll(page)
    await shot(page, "practitioner-no-device-warning")
    await page.click("#t-checkout")
    await expect(page.locator("#visit-form")).to_be_visible(timeout=5000)
    await expect(page.locator("#t-warning")).to_have_text("")


async def test_the_check_on_her_page_and_a_duress_answer_that_looks_like_ok(
    phone: BrowserContext, harness: Harness
) -> None:
    await harness.system.add_device("bracelet-fabre", practitioner="dr-claire-fabre")
    page = await phone.new_page()
    await login(page, harness, path="/moi/")
    await expect(page.locator("#visit-form")).to_be_visible(timeout=5000)
    api = await harness.as_user("dr-fabre")
    body = {"label": "12 Rue de la Loge, 34000 Montpellier", "access_code": "1234", "duration_s": 1}
    visit = (await api.post("/api/me/visits", json=body)).json()

    await expect(page.locator("#t-check")).to_be_visible(timeout=SHOWN_MS)
    await expect(page.locator("#timer")).to_have_class("card timer red")
    await expect(page.locator("#t-checkout")).to_have_text("Tout va bien, je suis sortie")
    await shot(page, "practitioner-check")

    await harness.system.sandbox.reply(FABRE_PHONE, "ok 1357", to=FROM_NUMBER)  # her duress PIN
    await expect(page.locator("#visit-form")).to_be_visible(timeout=SHOWN_MS)
    await expect(page.locator("#visits li").first).to_contain_text("clôturée")
    record = await harness.system.store.get_alert(f"{visit['id']}-alerte")
    assert record.state == "duress", "the escalation goes on while her page shows the visit closed"
    await page.click(".tabs button[data-tab='alerts']")
    await expect(page.locator("#no-alerts")).to_be_visible()


async def test_her_devices_and_tester_ma_balise(phone: BrowserContext, harness: Harness) -> None:
    device = await harness.system.add_device("bracelet-fabre", practitioner="dr-claire-fabre")
    await asyncio.to_thread(device.publish_status, "online")
    await asyncio.to_thread(device.send, UplinkKind.HEARTBEAT, battery_pct=76, firmware="1.2.0", uptime_s=60)

    async def battery_known() -> bool:
        return any(r.get("battery_pct") == 76 for r in await harness.system.store.device_health())

    await eventually(battery_known, within=30)  # merged into the store by the health pass (1 s)
    page = await phone.new_page()
    await login(page, harness, path="/moi/")
    await page.click(".tabs button[data-tab='devices']")
    item = page.locator("#devices li[data-id='bracelet-fabre']")
    await expect(item).to_contain_text("Batterie 76 %")
    await expect(item).to_contain_text("en ligne")

    await item.locator("button").click()
    await expect(item.locator(".steps")).to_contain_text("reçu sur votre téléphone", timeout=SHOWN_MS)
    await expect(item.locator(".steps")).to_contain_text("Vibration envoyée à la balise (en ligne)")
    alert_id = await item.locator(".steps li").first.get_attribute("data-alert")
    assert alert_id
    await asyncio.to_thread(device.wait_downlink, "acknowledged", alert_id)  # the device really vibrated
    assert any("TEST" in body for body in harness.sms_to(FABRE_PHONE))
    await no_horizontal_scroll(page)
    await shot(page, "practitioner-devices")
    audit = await harness.system.store.list_audit(action="device.test", target_id="bracelet-fabre")
    assert [a.username for a in audit] == ["dr-fabre"]


async def test_her_alerts_and_the_fiche_saved_reloaded_and_downloaded(
    phone: BrowserContext, harness: Harness
) -> None:
    device = await harness.system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id)
    op = await harness.as_user("op-herault")
    assert (await op.post(f"/api/alerts/{alert_id}/acknowledge")).status_code == 200
    assert (await op.post(f"/api/alerts/{alert_id}/resolve")).status_code == 200

    page = await phone.new_page()
    await login(page, harness, path="/moi/")
    await page.click(".tabs button[data-tab='alerts']")
    item = page.locator(f"#alerts li[data-id='{alert_id}']")
    await expect(item).to_contain_text("clôturée")
    await expect(item).to_contain_text("Prise en charge par Olivier Opérateur")
    await shot(page, "practitioner-alerts")
    await item.locator("button.report-open").click()
    await page.fill("#r-facts", "Patient agressif, menaces de mort dans le cabinet.")
    await page.check("input[name=violence][value=menaces]")
    await page.fill("#r-consequences", "Choc psychologique.")
    await page.check("#r-complaint")
    await page.fill("#r-complaint-place", "Commissariat de Montpellier")
    await page.click("#r-save")
    await expect(page.locator("#r-status")).to_contain_text("Enregistrée le")
    await shot(page, "practitioner-report", full_page=True)

    await page.reload()
    await page.click(".tabs button[data-tab='alerts']")
    await item.locator("button.report-open").click()
    await expect(page.locator("#r-facts")).to_have_value("Patient agressif, menaces de mort dans le cabinet.")
    await expect(page.locator("input[name=violence][value=menaces]")).to_be_checked()
    async with page.expect_download() as download_info:
        await page.click("#r-pdf")
    download = await download_info.value
    path = await download.path()
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(path.read_bytes())).pages)
    assert "Fiche de signalement" in text and "menaces de mort" in text
    assert "Délai de prise en charge" in text and "Olivier Opérateur" in text
    numbers = {n.phone for n in await harness.system.store.notifications_for(alert_id)}
    assert numbers and not any(n in text or n[3:] in text for n in numbers), "no contact's number"
    assert "+33" not in text and "appel" not in text.lower()
    actions = [a.action for a in await harness.system.store.list_audit(target_id=alert_id)]
    assert "alert.report.save" in actions and "alert.report" in actions


async def test_operators_see_open_visits_of_their_territory_overdue_highlighted(
    browser: Browser, harness: Harness
) -> None:
    fabre, dr = await harness.as_user("dr-fabre"), await harness.as_user("dr-benali")
    body = {"label": "8 Rue de la Croix de Lavit, 34090 Montpellier", "floor": "3e", "duration_s": 1}
    overdue = (await fabre.post("/api/me/visits", json=body)).json()
    body = {"label": "120 Avenue de Lodève, 34070 Montpellier", "dangerous": True, "duration_s": 3600}
    later = (await dr.post("/api/me/visits", json=body)).json()
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await login(page, harness, username="op-herault")
    await expect(page.locator(f"#open-visits li[data-id='{overdue['id']}']")).to_have_class(
        "flag overdue", timeout=SHOWN_MS
    )
    later_item = page.locator(f"#open-visits li[data-id='{later['id']}']")
    await expect(later_item).to_contain_text("Dr Karim Benali")
    await expect(later_item).to_contain_text("lieu signalé dangereux")
    await dr.post(f"/api/me/visits/{later['id']}/extend", json={"by_s": 900})
    await expect(later_item).to_contain_text("prolongée ×1", timeout=5000)  # live, over the WebSocket
    await dr.post(f"/api/me/visits/{later['id']}/checkout")
    await expect(later_item).to_contain_text("(sortie déclarée)", timeout=5000)
    await expect(page.locator(f"#open-visits li[data-id='{overdue['id']}']")).to_contain_text("dépassée")
    await shot(page, "console-open-visits")
