"""The console's alert detail follows her live position (issue 15), in real headless Chromium."""

from __future__ import annotations

import asyncio
import time

import pytest
from playwright.async_api import Browser, expect

from protocol.messages import Location
from protocol.topics import UplinkKind
from tests.api.conftest import Served
from tests.console.test_browser import ARTIFACTS, browser, chromium, login
from tests.console.test_french_console import open_alert

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium"]


def here(lat: float) -> Location:
    taken_ms = int(time.time() * 1000) - 2_000
    return Location(lat=lat, lon=3.80581, accuracy_m=9.0, fix_ts=taken_ms, source="gnss")


async def test_the_detail_shows_where_she_is_now_and_follows_her(browser: Browser, served: Served) -> None:
    system = served.system
    bracelet = await system.add_device("bra-benali", practitioner="dr-karim-benali", site="mmg-saint-gely")
    alert_id = await asyncio.to_thread(bracelet.alert)
    await asyncio.to_thread(bracelet.wait_downlink, "received", alert_id)
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await login(page, served, "op-herault")
    await open_alert(page, alert_id)
    live = page.locator("#d-live")
    await expect(live).to_be_empty()

    await asyncio.to_thread(bracelet.send, UplinkKind.POSITION, location=here(43.69262), alert_id=alert_id)
    await expect(live).to_contain_text("Position en direct43.69262, 3.80581", timeout=10_000)
    await expect(live).to_contain_text("± 9 m")
    await expect(live).to_contain_text("Relevéeil y a")

    await asyncio.to_thread(bracelet.send, UplinkKind.POSITION, location=here(43.69301), alert_id=alert_id)
    await expect(live).to_contain_text("43.69301, 3.80581", timeout=10_000)  # moved: no reload needed
    await page.screenshot(path=str(ARTIFACTS / "console-live-position.png"))
    assert errors == []
