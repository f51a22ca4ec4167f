"""The responder page in real headless Chromium on a phone-sized window (390×844), from a real alert SMS.

Screenshots go to test-artifacts/ (copied to docs/responder/ by
``python -m tests.responder.docs_screenshots``).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from protocol.messages import Location
from protocol.topics import UplinkKind
from tests.console.test_browser import ARTIFACTS, browser, chromium, login
from tests.responder.conftest import GRACE_S, Responder, resolve_as_operator
from tests.responder.test_responder_link import OTHER_NUMBERS, alert

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium"]
PHONE = {"width": 390, "height": 844}


async def overflow(page: Page) -> int:
    """How many pixels the page is wider than the window (0: no horizontal scrolling)."""
    width: int = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return width


async def opened(browser: Browser, r: Responder) -> tuple[Any, str, Page, list[str]]:
    """A real alert, and its SMS link opened on a phone: the device, the alert id, the page, its JS errors."""
    device, alert_id, path = await alert(r)
    page = await browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(r.url + path)
    return device, alert_id, page, errors


async def test_the_sms_link_shows_her_and_her_place_and_takes_the_alert(
    browser: Browser, responder: Responder
) -> None:
    device, alert_id, page, errors = await opened(browser, responder)
    await expect(page.locator("#who-name")).to_have_text("Dr Claire Fabre")
    await expect(page.locator("#who-phone")).to_contain_text("+33639980150")
    await expect(page.locator("#address")).to_contain_text("45 Rue du Faubourg Boutonnet")
    await expect(page.locator("#pos-source")).to_contain_text("Lieu d'exercice")
    # No tiles configured: the place is written out, with a link to open it in a map.
    await expect(page.locator("#map-fallback")).to_be_visible()
    await expect(page.locator("#fallback-coords")).to_contain_text("43.62153, 3.87269")
    await expect(page.locator("#map-link")).to_have_attribute(
        "href", "https://www.openstreetmap.org/?mlat=43.62153&mlon=3.87269#map=17/43.62153/3.87269"
    )
    await expect(page.locator("#state-text")).to_have_text("Personne n'a encore pris l'alerte en charge")
    await expect(page.locator("#state-pill")).to_have_text("EN COURS")
    assert await overflow(page) == 0
    body = await page.locator("body").inner_text()
    assert not any(number in body for number in OTHER_NUMBERS)
    await page.screenshot(path=str(ARTIFACTS / "responder-open.png"), full_page=True)

    await page.click("#ack")
    await expect(page.locator("#state-text")).to_have_text("Prise en charge par vous")
    await expect(page.locator("#state-pill")).to_have_text("PRISE EN CHARGE")
    await expect(page.locator("#ack")).to_be_disabled()
    assert (await responder.system.store.get_alert(alert_id)).state == "acknowledged"
    await asyncio.to_thread(device.wait_downlink, "acknowledged", alert_id)

    await page.click("#onsite")
    await expect(page.locator("#on-site")).to_contain_text("Sur place : Chef de poste")
    await expect(page.locator("#onsite")).to_be_disabled()
    assert await overflow(page) == 0
    await page.screenshot(path=str(ARTIFACTS / "responder-acknowledged.png"), full_page=True)

    await page.set_viewport_size({"width": 1920, "height": 1080})
    await expect(page.locator("#who-name")).to_be_visible()
    assert await overflow(page) == 0
    assert errors == []

    # The operator console shows both, in the alert's timeline.
    console = await browser.new_page(viewport={"width": 1400, "height": 900})
    await login(console, responder, "op-herault")  # type: ignore[arg-type]
    await console.click(f'li.alert[data-id="{alert_id}"]')
    await expect(console.locator("#d-timeline")).to_contain_text("Sur place : Chef de poste")
    await expect(console.locator("#d-timeline")).to_contain_text("lien de suivi")


async def test_an_open_page_says_when_its_link_stopped_working(
    browser: Browser, responder: Responder
) -> None:
    _, alert_id, page, errors = await opened(browser, responder)
    await expect(page.locator("#state-pill")).to_have_text("EN COURS")
    await resolve_as_operator(responder, alert_id)
    await expect(page.locator("#state-pill")).to_have_text("CLOSE")
    await expect(page.locator("#state-text")).to_contain_text("Incident clos par")
    await expect(page.locator("#ack")).to_be_disabled()
    await expect(page.locator("#gone")).to_be_visible(timeout=(GRACE_S + 10) * 1000)
    await expect(page.locator("#state-pill")).to_have_text("LIEN EXPIRÉ")
    await page.reload()
    await expect(page.locator("body")).to_have_text("Ce lien n'est pas valide.")
    assert errors == []


async def test_the_page_follows_the_live_positions_the_device_sends(
    browser: Browser, responder: Responder
) -> None:
    device, alert_id, page, errors = await opened(browser, responder)
    await expect(page.locator("#pos-source")).to_contain_text("Lieu d'exercice")
    await expect(page.locator("#code-row")).to_be_hidden()  # the cabinet has no door code
    await expect(page.locator("#floor")).to_have_text("rez-de-chaussée")

    # She leaves the cabinet: 110 m north of it, then 330 m. The page follows each fix within a poll.
    for lat, metres in ((43.6225, "110 m"), (43.6245, "330 m")):
        fix = Location(
            lat=lat, lon=3.87269, accuracy_m=8.0, fix_ts=int(time.time() * 1000) - 1500, source="gnss"
        )
        await asyncio.to_thread(device.send, UplinkKind.POSITION, location=fix, alert_id=alert_id)
        await expect(page.locator("#fallback-coords")).to_have_text(f"{lat:.5f}, 3.87269 (± 8 m)")
        await expect(page.locator("#pos-source")).to_contain_text("Position en direct (balise) · il y a")
        await expect(page.locator("#address")).to_contain_text(
            f"{metres} au nord de 45 Rue du Faubourg Boutonnet"
        )
        await expect(page.locator("#floor-row")).to_be_hidden()  # not in the building any more
        await expect(page.locator("#map-link")).to_have_attribute("href", re.compile(f"mlat={lat:.5f}"))
    assert await overflow(page) == 0
    await page.screenshot(path=str(ARTIFACTS / "responder-live.png"), full_page=True)
    assert errors == []
