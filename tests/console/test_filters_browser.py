"""Filters and search of the alert list in real headless Chromium.

The French-labels scene (four alerts: Dr Fabre's resolved, false alarm and acknowledged ones,
Dr Benali's open one): the state, practitioner (name, accents ignored), convention and date filters
narrow the list (the server filters: GET /api/alerts), live in the URL, survive a reload and are
cleared by "Effacer les filtres". A new alert the filters hide still rings the banner.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from tests.api.conftest import Served
from tests.console.test_browser import ARTIFACTS, browser, chromium, login
from tests.console.test_french_console import Scene, scene

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium", "scene"]


def query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


async def listed(page: Page, *ids: str) -> None:
    items = page.locator("#alerts li.alert")
    await expect(items).to_have_count(len(ids), timeout=5000)
    for alert_id in ids:
        await expect(page.locator(f'#alerts li.alert[data-id="{alert_id}"]')).to_be_visible()


async def test_filters_narrow_the_list_live_in_the_url_and_survive_a_reload(
    browser: Browser, served: Served, scene: Scene
) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000}, locale="fr-FR")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await login(page, served, "op-herault")
    everyone = (scene.resolved, scene.false_alarm, scene.acknowledged, scene.notifying)
    await listed(page, *everyone)

    await page.fill("#f-practitioner", "bénali")  # accents and case ignored
    await listed(page, scene.notifying)
    assert query(page)["practitioner"] == ["bénali"]
    await page.fill("#f-practitioner", "fabre")
    await page.select_option("#f-state", "open")
    await listed(page, scene.acknowledged)
    await page.select_option("#f-state", "resolved")
    await listed(page, scene.resolved)
    await page.select_option("#f-convention", "ssj-34")
    await listed(page, scene.resolved)
    assert {k: v[0] for k, v in query(page).items()} == {
        "practitioner": "fabre", "state": "resolved", "convention_id": "ssj-34"
    }  # fmt: skip
    await page.screenshot(path=str(ARTIFACTS / "console-filters.png"))

    await page.reload()  # a shared or reloaded URL shows the same list
    await expect(page.locator("#conn")).to_have_text("en direct", timeout=5000)
    await listed(page, scene.resolved)
    await expect(page.locator("#f-practitioner")).to_have_value("fabre")
    await expect(page.locator("#f-state")).to_have_value("resolved")
    await expect(page.locator("#f-convention")).to_have_value("ssj-34")

    # Days are Paris days: yesterday's range holds none of today's alerts; today's holds them.
    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    await page.fill("#f-to", (today - timedelta(days=1)).isoformat())
    await expect(page.locator("#no-alerts")).to_have_text("Aucune alerte pour ces filtres.", timeout=5000)
    await expect(page.locator("#alerts li.alert")).to_have_count(0)
    await page.fill("#f-from", today.isoformat())  # after the end: refused in French, list unchanged
    await expect(page.locator("#filter-error")).to_have_text("La date de fin précède la date de début.")
    await page.fill("#f-to", today.isoformat())
    await listed(page, scene.resolved)
    await expect(page.locator("#filter-error")).to_have_text("")

    # Alerts the filters hide still ring the banner: Dr Benali's open one, then a new one.
    banner = page.locator("#banner")
    await expect(banner).to_contain_text("ALERTE EN COURS — Dr Karim Benali", timeout=5000)
    fresh = await asyncio.to_thread(served.system.devices["bracelet-benali"].alert)
    await expect(banner).to_contain_text("2 ALERTES EN COURS", timeout=5000)
    await listed(page, scene.resolved)

    await page.click("#filters button[type=reset]")
    await listed(page, *everyone, fresh)
    assert query(page) == {}
    assert errors == []
