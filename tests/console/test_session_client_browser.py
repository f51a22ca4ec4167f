"""The three signed-in pages share one REST client: each still says an ended session and a refusal its way.

A session ended elsewhere (signed out in another tab) sends the console and her page back to
their login form with "Session expirée", and the admin screens to the console's login; a wrong
password is a refusal, not an expired session (the console's is in ``test_browser.py``). A
refusal naming a field is tested with her address form (``tests/practitioner/test_page_browser.py``).
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.api.conftest import PASSWORD, Served
from tests.console.test_browser import browser, chromium, login

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium"]
EXPIRED = "Session expirée : reconnectez-vous."
PHONE = {"width": 390, "height": 844}
WRONG = "identifiant ou mot de passe incorrect"


async def sign_out_elsewhere(context: BrowserContext, served: Served) -> None:
    """End the session from another tab of the same browser, as a colleague's sign-out would."""
    answer = await context.request.post(f"{served.url}/api/auth/logout", headers={"Origin": served.url})
    assert answer.ok


async def sign_in(page: Page, served: Served, path: str, username: str, password: str = PASSWORD) -> None:
    await page.goto(served.url + path)
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-button")


async def test_the_console_back_to_its_login_when_the_session_ends(browser: Browser, served: Served) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    await login(page, served, "op-herault")
    await sign_out_elsewhere(context, served)  # its live feed is closed with 4401 at once
    await expect(page.locator("#login")).to_be_visible(timeout=5000)
    await expect(page.locator("#login-error")).to_have_text(EXPIRED)
    await context.close()


async def test_the_admin_screens_send_an_ended_session_to_the_console_login(
    browser: Browser, served: Served
) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    await login(page, served, "admin")
    await page.goto(f"{served.url}/admin/#balises")
    await expect(page.locator("body")).to_have_attribute("data-ready", "balises", timeout=10000)
    await sign_out_elsewhere(context, served)
    await page.click("a[data-tab=utilisateurs]")
    # its two reads are refused at once: two redirects, the first cut short by the second
    await expect(page).to_have_url(f"{served.url}/console/", timeout=5000)
    await expect(page.locator("#login-form")).to_be_visible()
    await context.close()


async def test_her_page_wrong_password_then_an_ended_session(browser: Browser, served: Served) -> None:
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = await context.new_page()
    await sign_in(page, served, "/moi/", "dr-fabre", "pas le bon")
    await expect(page.locator("#login-error")).to_have_text(WRONG)
    await expect(page.locator("#app")).to_be_hidden()

    await sign_in(page, served, "/moi/", "dr-fabre")
    await expect(page.locator("#app")).to_be_visible(timeout=5000)
    await sign_out_elsewhere(context, served)
    await page.click(".tabs button[data-tab=devices]")
    await expect(page.locator("#login")).to_be_visible(timeout=5000)
    await expect(page.locator("#login-error")).to_have_text(EXPIRED)
    await context.close()

