"""The console's layout in real headless Chromium: no horizontal overflow from a phone to a wide screen.

The page as an operator uses it: three alerts, one open in the detail pane (timeline and
notifications tables), the device-health pane. At 390 px (phone), 1280 and 1920 px the page
is no wider than the window, and the health pane is fully inside it.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

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
        await expect(page.locator("#health")).to_contain_text("HORS LIGNE", timeout=10_000)
        await open_alert(page, scene.notifying)
        await expect(page.locator("#d-notifications tr").first).to_be_visible(timeout=10_000)
        await page.screenshot(path=str(ARTIFACTS / f"console-{width}.png"), full_page=True)
        measure = await page.evaluate(OVERFLOW)
        assert measure["scroll"] <= measure["client"], f"{width} px: page too wide {measure}"
        assert measure["outside"] == [], f"{width} px: elements outside the window {measure}"
        health = await page.locator(".health-pane").bounding_box()
        assert health is not None and health["x"] >= 0 and health["x"] + health["width"] <= width
    finally:
        await context.close()
