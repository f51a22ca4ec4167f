"""A large territory's devices in headless Chromium: the flagged ones first, and the page says so.

The console's health pane shows 200 devices at most and the administration's
table 1,000: beyond, each says how many it shows of how many, the devices
flagged offline or low on battery first, so that none of them hides at the
bottom of a national fleet.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from dispatcher.domain import Device, DeviceKind
from sandbox.fleet import new_device_secrets
from tests.admin.conftest import open_admin
from tests.api.conftest import Served
from tests.console.test_browser import ARTIFACTS, browser, chromium, login
from tests.support.system import flag_device

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium"]

DEVICES = 1_003  # one page of the administration's table, and three more


async def a_large_territory(served: Served) -> None:
    """Desk buttons of her cabinet (as many as a département's), the last by id flagged offline."""
    store = served.system.store
    for i in range(DEVICES):
        device = Device(
            id=f"btn-{i:04d}",
            kind=DeviceKind.BUTTON,
            practitioner_id="dr-claire-fabre",
            site_id="cabinet-boutonnet",
            label=f"Bouton {i:04d}",
        )
        await store.add_device(device, new_device_secrets()[0])
    last = f"btn-{DEVICES - 1:04d}"
    await flag_device(store, last, '["offline"]', "offline")
    await served.system.dispatcher.cache.refresh()


async def test_the_console_and_the_administration_show_a_page_flagged_devices_first(
    browser: Browser, served: Served
) -> None:
    await a_large_territory(served)
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = await context.new_page()
        await login(page, served, "op-herault")
        await expect(page.locator("#health tr")).to_have_count(200, timeout=10_000)
        await expect(page.locator("#health tr").first).to_contain_text("Bouton 1002")
        await expect(page.locator("#health tr").first).to_contain_text("HORS LIGNE")
        # whose it is (the operator knows whom to call about a device offline), where when hovered
        await expect(page.locator("#health tr").first).to_contain_text("Dr Claire Fabre")
        site = "Cabinet médical du Faubourg Boutonnet"
        await expect(page.locator("#health tr td").first).to_have_attribute("title", site)
        await expect(page.locator("#health-more")).to_have_text(
            re.compile(
                r"^200 balises affichées sur 1\s003,"
                r" celles hors ligne ou à batterie faible en premier\.$"
            )
        )
        await page.locator(".health-pane").screenshot(path=str(ARTIFACTS / "console-health-page-390.png"))

        await context.clear_cookies()  # the administrator, in another session
        page = await context.new_page()
        await open_admin(page, served, "balises")
        await expect(page.locator("#devices tbody tr")).to_have_count(1000)
        await expect(page.locator("#devices tbody tr").first).to_have_attribute("data-id", "btn-1002")
        await expect(page.locator("#devices tbody tr").first).to_contain_text("Dr Claire Fabre")
        more = page.locator("#devices-more")
        await expect(more).to_have_text(re.compile(r"^1\s000 balises affichées sur 1\s003"))
        await page.fill("#devices-q", "bouton 0042")  # one of 1,003, to revoke it say
        await expect(page.locator("#devices tbody tr")).to_have_count(1)
        await expect(page.locator("#devices tbody tr").first).to_have_attribute("data-id", "btn-0042")
        await expect(more).to_be_hidden()
        await page.fill("#devices-q", "aucune")
        await expect(page.locator("#devices-empty")).to_have_text("Aucune balise ne correspond à « aucune ».")
    finally:
        await context.close()
