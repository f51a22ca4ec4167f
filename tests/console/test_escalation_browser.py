"""The escalation view in real headless Chromium: a real alert whose first tier times out.

Hérault's three-tier chain, its first tier shortened to 8 s: the view counts "palier 2 dans N s"
down from the server's due time, then, when the timer fires on the server and the WebSocket push
arrives, shows tier 2 as current (tier 1 alerted) and counts down to tier 3; acknowledged from the
console, the countdown stops and the view says who took the alert and how. The browser's clock is
wrong by more than an hour (and in New York): the countdown runs from the server's clock.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.api.conftest import Served
from tests.console.test_browser import ARTIFACTS, browser, chromium, login
from tests.console.test_french_console import open_alert
from tests.support.system import HERAULT

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium"]

FIRST_TIER_S = 8
COUNTDOWN = re.compile(r"palier 2 dans (\d+) s")


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """Hérault's chain with a short first tier (served by tests/api/conftest.py)."""
    fast = tmp_path / "herault-fast.yaml"
    text = HERAULT.read_text()
    assert text.count("ack_timeout_s: 120") == 3
    fast.write_text(text.replace("ack_timeout_s: 120", f"ack_timeout_s: {FIRST_TIER_S}", 1))
    return fast


async def test_escalation_counts_down_and_moves_to_tier_2(browser: Browser, served: Served) -> None:
    # The workstation's clock is 67 minutes fast and in New York: the countdown must not care.
    context = await browser.new_context(
        viewport={"width": 1400, "height": 1000}, timezone_id="America/New_York", locale="fr-FR"
    )
    await context.clock.install(time=datetime.now(UTC) + timedelta(minutes=67))
    page = await context.new_page()
    assert await page.evaluate("Date.now()") > (datetime.now(UTC) + timedelta(minutes=60)).timestamp() * 1000
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await login(page, served, "op-herault")
    desk = await served.system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(desk.alert)
    await open_alert(page, alert_id)

    countdown = page.locator("#esc-next")
    await expect(countdown).to_have_text(COUNTDOWN, timeout=5000)
    first = int(COUNTDOWN.search(await countdown.inner_text()).group(1))  # type: ignore[union-attr]
    assert 0 < first <= FIRST_TIER_S
    tiers = page.locator("#esc-tiers > li")
    await expect(tiers).to_have_count(3)
    await expect(tiers.nth(0)).to_have_attribute("data-status", "current")
    await expect(tiers.nth(0)).to_contain_text("Palier 1")
    await expect(tiers.nth(0)).to_contain_text("en cours")
    await expect(tiers.nth(0).locator(".deliveries").first).to_contain_text("SMS", timeout=5000)
    await expect(tiers.nth(1)).to_contain_text("pas encore alerté")
    await page.locator("#escalation").screenshot(path=str(ARTIFACTS / "console-escalation-tier1.png"))
    # It counts down (the page's own ticker), one second at least, before the tier fires.
    await page.wait_for_function(
        """(first) => {
          const m = /palier 2 dans (\\d+) s/.exec(document.getElementById("esc-next").textContent);
          return m && Number(m[1]) < first;
        }""",
        arg=first,
        timeout=5000,
    )
    # The timer fires on the server; the push moves the view to tier 2, counting down to tier 3.
    await expect(tiers.nth(1)).to_have_attribute(
        "data-status", "current", timeout=FIRST_TIER_S * 1000 + 10_000
    )
    await expect(tiers.nth(0)).to_have_attribute("data-status", "alerted")
    await expect(tiers.nth(0)).to_contain_text("alerté")
    await expect(countdown).to_have_text(re.compile(r"palier 3 dans (1 min \d\d|\d+) s"))
    await expect(page.locator("#esc-status")).to_contain_text("Palier 2 alerté")
    await expect(tiers.nth(1).locator(".deliveries").first).to_contain_text("SMS", timeout=5000)
    await page.locator("#escalation").screenshot(path=str(ARTIFACTS / "console-escalation-tier2.png"))

    await page.click("#act-acknowledge")  # taken: no countdown, who took it and how
    await expect(countdown).to_be_hidden(timeout=5000)
    await expect(page.locator("#esc-status")).to_contain_text("Prise en charge par Olivier Opérateur")
    await expect(page.locator("#esc-status")).to_contain_text("(console)")
    assert errors == []
    await context.close()
