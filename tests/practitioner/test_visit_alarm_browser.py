"""In headless Chromium: a home visit whose alert could not be raised rings its territory's consoles.

She has no device, so no alert can be filed and the police were not told: the
operators of the visit's territory are the only humans who can act. The alarm
stays on each of their consoles (a reload too), beeping, until one of them
presses « Pris en charge »; it then leaves every console. Another territory's
console never shows it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect

from tests.console.test_browser import ARTIFACTS, browser, chromium, login
from tests.practitioner.conftest import FABRE_PHONE, Harness
from tests.practitioner.test_visit_timer_e2e import declare, wait_check_sms

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium"]
SHOWN_MS = 30_000  # a safety net for a loaded machine, not a goal


@pytest.fixture
async def pages(browser: Browser) -> AsyncIterator[list[Page]]:
    opened: list[Page] = []
    yield opened
    for page in opened:
        await page.close()


async def _console(browser: Browser, harness: Harness, username: str, width: int, pages: list[Page]) -> Page:
    page = await browser.new_page(viewport={"width": width, "height": 1080 if width > 400 else 844})
    page.on("pageerror", lambda exc: pytest.fail(f"page error: {exc}"))
    pages.append(page)
    await login(page, harness, username)  # type: ignore[arg-type]  # Harness serves .url as Served does
    return page


async def test_a_visit_alert_not_raised_stays_on_its_territory_consoles_until_one_operator_handles_it(
    browser: Browser, harness: Harness, pages: list[Page]
) -> None:
    desk = await _console(browser, harness, "op-herault", 1920, pages)
    phone = await _console(browser, harness, "op-herault", 390, pages)
    other = await _console(browser, harness, "op-gard", 1920, pages)
    dr = await harness.as_user("dr-fabre")
    await declare(dr, duration_s=1)  # she has no device at all
    await wait_check_sms(harness)

    alarm = desk.locator("#must-act")
    await expect(alarm).to_be_visible(timeout=SHOWN_MS)
    await expect(alarm).to_contain_text("ALERTE NON DÉCLENCHÉE")
    await expect(alarm).to_contain_text(f"appelez-la au {FABRE_PHONE} et appelez la police")
    await expect(desk.locator("#events li").first).to_contain_text("NON DÉCLENCHÉE")
    await expect(phone.locator("#must-act")).to_be_visible(timeout=SHOWN_MS)
    await desk.screenshot(path=str(ARTIFACTS / "console-visit-alarm.png"))
    await phone.screenshot(path=str(ARTIFACTS / "console-visit-alarm-390.png"))

    await desk.reload()  # a console opened meanwhile shows it from its first snapshot
    await expect(desk.locator("#conn")).to_have_text("en direct", timeout=5000)
    await expect(alarm).to_contain_text("ALERTE NON DÉCLENCHÉE")

    await phone.get_by_role("button", name="Pris en charge").click()
    await expect(phone.locator("#must-act")).to_be_hidden(timeout=5000)
    await expect(alarm).to_be_hidden(timeout=SHOWN_MS)  # the other console of her territory too

    # The other territory was never shown it, live or in its events.
    await expect(other.locator("#conn")).to_have_text("en direct")
    await expect(other.locator("#must-act")).to_be_hidden()
    assert "NON DÉCLENCHÉE" not in await other.locator("#events").inner_text()
