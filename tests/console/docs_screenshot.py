"""Regenerate the console's screenshots: ``python -m tests.console.docs_screenshot``.

docs/console.png, from the demo directory: two alerts, one already acknowledged
from a desk button, one new from a bracelet with a GPS fix, open in the detail
pane with its escalation counting down to tier 2. Then the browser tests of the
escalation view, the overview map and the filters run (real system, real
Chromium) and their screenshots are copied to docs/console/.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
from playwright.async_api import async_playwright, expect

from protocol.messages import Location
from protocol.topics import UplinkKind
from tests.api.conftest import PASSWORD
from tests.console.test_browser import ARGS, CHROMIUM
from tests.practitioner.docs_screenshots import regenerate
from tests.support.docs_served import served_for_docs

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "console.png"
#: Screenshots the console's browser tests take, copied to docs/console/.
SCREENS = {
    "test_escalation_browser.py": ("console-escalation-tier1", "console-escalation-tier2"),
    "test_overview_browser.py": ("console-overview-served", "console-overview-refused"),
    "test_filters_browser.py": ("console-filters",),
}


async def main(workdir: Path) -> None:
    async with served_for_docs(workdir) as s:
        await scenario(s.system, s.url)


async def scenario(system: object, url: str) -> None:
    from tests.support.system import System

    assert isinstance(system, System)
    desk = await system.add_device("btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet")
    first = await asyncio.to_thread(desk.alert)
    await asyncio.to_thread(desk.wait_downlink, "received", first)
    async with httpx.AsyncClient(base_url=url) as client:
        await client.post("/api/auth/login", json={"username": "op-herault", "password": PASSWORD})
        await client.post(f"/api/alerts/{first}/acknowledge")
    bracelet = await system.add_device(
        "bracelet-benali", practitioner="dr-karim-benali", site="mmg-saint-gely"
    )
    for device, battery in ((desk, 76), (bracelet, 18)):  # the health pane as in a real shift
        await asyncio.to_thread(
            device.send, UplinkKind.HEARTBEAT, battery_pct=battery, firmware="1.2.0", uptime_s=3600
        )
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    fix = Location(lat=43.69262, lon=3.80581, accuracy_m=12, fix_ts=now_ms - 20_000, source="gnss")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = await browser.new_page(viewport={"width": 1400, "height": 1000}, locale="fr-FR")
        await page.goto(url + "/console/")
        await page.fill("#username", "op-herault")
        await page.fill("#password", PASSWORD)
        await page.click("#login-button")
        await expect(page.locator("#conn")).to_have_text("en direct")
        second = await asyncio.to_thread(bracelet.alert, fix)
        await expect(page.locator(f'li.alert[data-id="{second}"]')).to_be_visible()
        await expect(page.locator("#d-notifications")).to_contain_text("SMS", timeout=10000)
        await expect(page.locator("#health")).to_contain_text("en ligne", timeout=10000)
        await expect(page.locator("#esc-next")).to_contain_text("palier 2 dans", timeout=10000)
        await page.screenshot(path=str(OUT), full_page=True)
        await browser.close()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
    for test, screens in SCREENS.items():
        regenerate(ROOT / "tests" / "console" / test, ROOT / "docs" / "console", screens)
