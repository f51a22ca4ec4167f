"""The overview map in real headless Chromium: open alerts and open declared visits of the territory.

An alert with a GPS fix 45 s old and a visit declared from her page: each listed with the age of
its position and an "Ouvrir dans une carte" link; drawn on the map when tiles load, and the map
replaced by "Carte indisponible" when they cannot (the list stays). The view is in the URL.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, expect

from protocol.messages import Location
from protocol.topics import UplinkKind
from tests.api.test_console_views import bracelet_of, visit_and_alert
from tests.console.test_browser import ARTIFACTS, browser, chromium, login
from tests.console.test_map_fallback_browser import tile_server
from tests.practitioner.conftest import Harness, grace_s, harness

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium", "grace_s", "harness"]


@pytest.fixture(params=["served", "refused"])
def tile_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Tiles for the overview tests: a local tile server, or one that refuses connections."""
    with tile_server(request.param) as url:
        yield url


async def test_overview_map_shows_the_open_alert_and_the_open_visit(
    browser: Browser, harness: Harness, request: pytest.FixtureRequest
) -> None:
    tiles = request.node.callspec.params["tile_url"]
    visit, alert_id = await visit_and_alert(harness, 45)

    page = await browser.new_page(viewport={"width": 1400, "height": 1000}, locale="fr-FR")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await login(page, harness, "op-herault")  # type: ignore[arg-type]
    await expect(page.locator(f'li.alert[data-id="{alert_id}"]')).to_be_visible(timeout=5000)
    await page.click("#show-overview")
    alert_item = page.locator(f'#ov-list li[data-kind="alert"][data-id="{alert_id}"]')
    visit_item = page.locator(f'#ov-list li[data-kind="visit"][data-id="{visit["id"]}"]')
    await expect(alert_item).to_contain_text("Dr Karim Benali", timeout=5000)
    # The fix's age (45 s when pressed), not the alert's.
    await expect(alert_item).to_contain_text(re.compile(r"GPS de la balise .* position il y a ([4-9]\d) s"))
    await expect(visit_item).to_contain_text("Dr Claire Fabre")
    await expect(visit_item).to_contain_text("120 Avenue de Lodève")
    await expect(visit_item).to_contain_text(re.compile(r"position il y a \d+ s"))
    link = alert_item.get_by_role("link", name="Ouvrir dans une carte")
    assert await link.get_attribute("href") == (
        "https://www.openstreetmap.org/?mlat=43.69262&mlon=3.80581#map=17/43.69262/3.80581"
    )
    await expect(visit_item.get_by_role("link", name="Ouvrir dans une carte")).to_be_visible()
    if tiles == "served":
        await expect(page.locator("#ov-map")).to_be_visible()
        await expect(page.locator("#ov-map path.leaflet-interactive")).to_have_count(2, timeout=5000)
        await expect(page.locator("#ov-fallback")).to_be_hidden()
    else:
        await expect(page.locator("#ov-fallback")).to_be_visible(timeout=10_000)
        await expect(page.locator("#ov-fallback")).to_contain_text("Carte indisponible")
        await expect(page.locator("#ov-map")).to_be_hidden()
    await page.screenshot(path=str(ARTIFACTS / f"console-overview-{tiles}.png"))
    # She moves: the device's live position replaces the alert's, pushed to the open page.
    moved = Location(
        lat=43.6951, lon=3.8102, accuracy_m=8, fix_ts=int(time.time() * 1000) - 1000, source="gnss"
    )
    await asyncio.to_thread(bracelet_of(harness).send, UplinkKind.POSITION, location=moved, alert_id=alert_id)
    await expect(alert_item).to_contain_text("position en direct de la balise", timeout=10_000)
    await expect(alert_item.get_by_role("link", name="Ouvrir dans une carte")).to_have_attribute(
        "href", re.compile(r"mlat=43\.69510&mlon=3\.81020")
    )
    assert "view=carte" in page.url
    await page.reload()  # the overview is part of the URL too
    await expect(alert_item).to_be_visible(timeout=10_000)
    await alert_item.locator(".ov-text").click()  # a click on an alert opens its detail
    await expect(page.locator("#d-sub")).to_contain_text(alert_id, timeout=5000)
    await expect(page.locator("#overview")).to_be_hidden()
    assert errors == []
