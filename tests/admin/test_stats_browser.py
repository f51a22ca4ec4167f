"""Statistics in headless Chromium: charts per month and convention, CSV exports, small counts hidden."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from tests.admin.conftest import open_admin
from tests.api.conftest import Served
from tests.security.web import raise_alert

pytestmark = pytest.mark.browser


async def _download(page: Page, selector: str) -> list[dict[str, str]]:
    async with page.expect_download() as caught:
        await page.click(selector)
    download = await caught.value
    path = await download.path()
    text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


async def test_one_alert_is_drawn_and_exported_as_under_five(browser: Browser, served: Served) -> None:
    await raise_alert(served.system, "btn-boutonnet")  # one real alert in the Hérault
    month = datetime.now(UTC).astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m")
    page = await browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    await open_admin(page, served, "statistiques")

    bar = page.locator("#chart-month g.row")
    await expect(bar).to_have_count(1)
    await expect(bar).to_have_attribute("data-label", month)
    await expect(bar).to_have_attribute("data-value", "<5")
    await expect(bar.locator("rect.hidden-count")).to_have_count(1)
    by_convention = page.locator("#chart-convention g.row")
    herault = next(c.name for c in served.system.dispatcher.cache.current.conventions if c.id == "ssj-34")
    await expect(by_convention).to_have_attribute("data-label", herault)
    await expect(by_convention.locator("text.value")).to_have_text("<5")
    # Nothing on the page says "1".
    assert "1 alerte" not in await page.locator("#statistiques").inner_text()

    months = await _download(page, "#csv-month")
    assert [(r["label"], r["alerts"]) for r in months] == [(month, "<5")]
    conventions = await _download(page, "#csv-convention")
    assert [(r["label"], r["alerts"]) for r in conventions] == [(herault, "<5")]
    cells = await _download(page, "#csv-cells")
    assert [r["alerts"] for r in cells] == ["<5"] and cells[0]["median_ack_s"] == ""

    exports = await served.system.store.list_audit(action="stats.export")
    assert len(exports) == 5  # two charts, three CSV files
    assert {e.username for e in exports} == {"admin"}
    assert sorted(e.detail["format"] for e in exports) == ["csv", "csv", "csv", "json", "json"]


async def test_a_date_range_without_alerts_draws_no_bar(browser: Browser, served: Served) -> None:
    await raise_alert(served.system, "btn-boutonnet")
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await open_admin(page, served, "statistiques")
    await expect(page.locator("#chart-month g.row")).to_have_count(1)
    await page.fill("#s-since", "2020-01-01")
    await page.fill("#s-until", "2020-12-31")
    await page.click("#stats-filters button[type=submit]")
    await expect(page.locator("#chart-month")).to_have_text("Aucune alerte sur la période.")
    await expect(page.locator("#chart-convention")).to_have_text("Aucune alerte sur la période.")
