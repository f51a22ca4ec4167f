"""The console's layout in real headless Chromium: no horizontal overflow from a phone to a wide screen.

The page as an operator uses it: three alerts, one open in the detail pane (escalation view,
timeline and notifications tables), the device-health pane; then the list filtered and the
overview map. At 390 px (phone), 1280 and 1920 px the page
is no wider than the window, and the health pane is fully inside it.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from tests.api.conftest import Served
from tests.console.test_browser import ARTIFACTS, browser, chromium, login
from tests.console.test_french_console import Scene, open_alert, scene

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium", "scene"]

# The page's width, and the elements sticking out of the window (a map's clipped tiles aside).
OVERFLOW = """() => {
  const root = document.documentElement;
  const out = [...document.querySelectorAll("#app *")].filter((e) => {
    const r = e.getBoundingClientRect();
    const outside = r.right > root.clientWidth + 0.5 || r.left < -0.5;
    return r.width > 0 && outside && !e.closest(".leaflet-container");
  });
  const named = out.map((e) => `${e.tagName}#${e.id}.${e.className} ${e.getBoundingClientRect().right}`);
  return { scroll: root.scrollWidth, client: root.clientWidth, outside: named.slice(0, 8) };
}"""


async def fits(page: Page, width: int, view: str) -> None:
    measure = await page.evaluate(OVERFLOW)
    assert measure["scroll"] <= measure["client"], f"{width} px, {view}: page too wide {measure}"
    assert measure["outside"] == [], f"{width} px, {view}: elements outside the window {measure}"


@pytest.mark.parametrize("width", [390, 1280, 1920])
async def test_no_horizontal_overflow(browser: Browser, served: Served, scene: Scene, width: int) -> None:
    phone = width < 500
    context = await browser.new_context(
        viewport={"width": width, "height": 844 if phone else 1000}, is_mobile=phone, has_touch=phone
    )
    try:
        page = await context.new_page()
        await login(page, served, "op-herault")
        await expect(page.locator("#health tr")).to_have_count(3, timeout=5000)
        # Flagged after its missed heartbeats, once the health lease is taken: 10 s was short under load.
        await expect(page.locator("#health")).to_contain_text("HORS LIGNE", timeout=30_000)
        await open_alert(page, scene.notifying)
        await expect(page.locator("#d-notifications tr").first).to_be_visible(timeout=10_000)
        await expect(page.locator("#esc-tiers > li").first).to_be_visible(timeout=5000)
        await page.screenshot(path=str(ARTIFACTS / f"console-{width}.png"), full_page=True)
        await fits(page, width, "detail")
        health = await page.locator(".health-pane").bounding_box()
        assert health is not None and health["x"] >= 0 and health["x"] + health["width"] <= width
        await page.fill("#f-practitioner", "benali")  # the filters, in use
        await expect(page.locator("#alerts li.alert")).to_have_count(1, timeout=5000)
        await page.click("#show-overview")
        await expect(page.locator(f'#ov-list li[data-id="{scene.notifying}"]')).to_be_visible(timeout=5000)
        await page.screenshot(path=str(ARTIFACTS / f"console-overview-{width}.png"), full_page=True)
        await fits(page, width, "overview")
    finally:
        await context.close()
