"""Regenerate docs/admin-*.png (the admin screens in Chromium): ``python -m tests.admin.docs_screenshots``.

The scene of the layout test (devices, an alert, an extra operator), then each
screen at 1280 px, the revocation's confirmation, a directory edit refused by
the loader, and the devices screen on a 390 px phone.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect

from tests.admin.test_layout_french_browser import admin_scene
from tests.api.conftest import PASSWORD, Served
from tests.console.test_browser import ARGS, CHROMIUM
from tests.support.docs_served import served_for_docs

DOCS = Path(__file__).resolve().parents[2] / "docs"


async def main(workdir: Path) -> None:
    async with served_for_docs(workdir) as s:
        await admin_scene(s)
        await shoot(s)


async def _screen(page: Page, name: str) -> None:
    await page.goto(f"{page.url.split('#')[0]}#{name}")
    await expect(page.locator("body")).to_have_attribute("data-ready", name)


async def shoot(s: Served) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*ARGS, "--lang=fr-FR"], headless=True
        )
        for width, height in ((1280, 800), (390, 844)):
            context = await browser.new_context(viewport={"width": width, "height": height}, locale="fr-FR")
            page = await context.new_page()
            await page.goto(s.url + "/console/")
            await page.fill("#username", "admin")
            await page.fill("#password", PASSWORD)
            await page.click("#login-button")
            await expect(page.locator("#app")).to_be_visible()
            await page.goto(s.url + "/admin/#balises")
            await expect(page.locator("body")).to_have_attribute("data-ready", "balises")
            if width < 500:
                await page.screenshot(path=str(DOCS / "admin-balises-390.png"), full_page=True)
                await context.close()
                continue
            await page.screenshot(path=str(DOCS / "admin-balises.png"))
            await page.locator('#devices tr[data-id="btn-boutonnet"] button.revoke').click()
            await page.screenshot(path=str(DOCS / "admin-revocation.png"))
            await page.click("#confirm-cancel")
            for name in ("utilisateurs", "journal", "statistiques"):
                await _screen(page, name)
                await page.screenshot(path=str(DOCS / f"admin-{name}.png"), full_page=name == "journal")
            await _screen(page, "annuaire")
            await page.locator('#dir-conventions tr[data-id="ssj-34"] button.edit').click()
            await expect(page.locator("#dir-yaml")).not_to_have_value("")
            text = await page.locator("#dir-yaml").input_value()
            await page.fill("#dir-yaml", text.replace("unit: competent", "unit: unite-inconnue", 1))
            await page.click("#dir-save")
            await expect(page.locator("#dir-error pre")).to_be_visible()
            await page.screenshot(path=str(DOCS / "admin-annuaire.png"))
            await context.close()
        await browser.close()
    print(f"wrote {DOCS}/admin-*.png")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
