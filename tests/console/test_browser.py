"""The console in headless Chromium: login, a live alert from a real device, acknowledgement.

Debian's chromium is driven by Playwright for Python (no downloaded browser).
Screenshots are saved under test-artifacts/ (gitignored).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, WebSocket, async_playwright, expect

from dispatcher.web.console.frames import messages_in
from tests.api.conftest import PASSWORD, Served

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# How long a live update may take before the test gives up: a safety net for a loaded
# machine, not a goal (the console's speed is the benchmark's business, bench/).
LIVE_MS = 30_000


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make system-deps)")
    ARTIFACTS.mkdir(exist_ok=True)
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def login(page: Page, served: Served, username: str) -> None:
    await page.goto(served.url + "/console/")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-button")
    await expect(page.locator("#app")).to_be_visible(timeout=5000)
    await expect(page.locator("#conn")).to_have_text("en direct", timeout=5000)


def _pushes(frame: str | bytes, alert_id: str) -> bool:
    """Whether a console feed frame is the live push of ``alert_id``."""
    return any(m["type"] == "alert" and m["alert"]["id"] == alert_id for m in messages_in(json.loads(frame)))


async def test_operator_sees_a_live_alert_and_acknowledges_it(browser: Browser, served: Served) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sockets: list[WebSocket] = []
    frames: list[str | bytes] = []

    def watch(ws: WebSocket) -> None:
        sockets.append(ws)
        ws.on("framereceived", lambda payload: frames.append(payload))

    page.on("websocket", watch)
    await login(page, served, "op-herault")
    await expect(page.locator("#no-alerts")).to_be_visible()
    device = await served.system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )

    alert_id = await asyncio.to_thread(device.alert)
    item = page.locator(f'li.alert.attention[data-id="{alert_id}"]')
    await expect(item).to_be_visible(timeout=LIVE_MS)
    # Shown because the open feed pushed it (no reload, no reconnection's snapshot).
    assert len(sockets) == 1 and any(_pushes(frame, alert_id) for frame in frames)
    await expect(page.locator("#banner")).to_be_visible()
    await expect(page.locator("#banner")).to_contain_text("Dr Claire Fabre")

    # The first new alert is opened by itself: practitioner, phone, place, timeline.
    await expect(page.locator("#d-title")).to_have_text("Dr Claire Fabre")
    await expect(page.locator("#d-person")).to_contain_text("+33639980150")
    await expect(page.locator("#d-location")).to_contain_text("45 Rue du Faubourg Boutonnet")
    await expect(page.locator("#d-location")).to_contain_text("43.62153, 3.87269")
    await expect(page.locator("#d-timeline")).to_contain_text("Alerte reçue")
    await expect(page.locator("#d-notifications")).to_contain_text("Chef de poste", timeout=5000)
    await expect(page.locator("#health")).to_contain_text("btn-boutonnet")
    await page.screenshot(path=str(ARTIFACTS / "console-new-alert.png"))

    await page.click("#act-acknowledge")
    await asyncio.to_thread(device.wait_downlink, "acknowledged", alert_id)
    await expect(page.locator("#d-state")).to_have_text("prise en charge", timeout=5000)
    await expect(page.locator("#banner")).to_be_hidden()
    await expect(page.locator("#d-timeline")).to_contain_text("Prise en charge par Olivier Opérateur")
    await expect(page.locator("#act-acknowledge")).to_be_disabled()
    await page.screenshot(path=str(ARTIFACTS / "console-acknowledged.png"))
    assert errors == []
    audit = await served.system.store.list_audit(action="alert.acknowledge", target_id=alert_id)
    assert [a.username for a in audit] == ["op-herault"]


async def test_console_on_a_phone_screen_and_wrong_password(browser: Browser, served: Served) -> None:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = await context.new_page()
    await page.goto(served.url + "/console/")
    await page.fill("#username", "op-herault")
    await page.fill("#password", "wrong")
    await page.click("#login-button")
    await expect(page.locator("#login-error")).to_have_text("identifiant ou mot de passe incorrect")
    await login(page, served, "op-herault")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "no horizontal scrolling on a phone"
    await page.screenshot(path=str(ARTIFACTS / "console-phone.png"), full_page=True)
    await context.close()


async def test_logout_returns_to_the_login_page(browser: Browser, served: Served) -> None:
    page = await browser.new_page()
    await login(page, served, "op-herault")
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible(timeout=5000)
    await page.goto(served.url + "/console/")
    await expect(page.locator("#login")).to_be_visible(timeout=5000)
