"""Every admin screen, filled as in use, at a phone's and a wide screen's width: no overflow, French only."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from playwright.async_api import Browser, expect

from protocol.topics import UplinkKind
from tests.admin.conftest import open_admin
from tests.api.conftest import PASSWORD, Served
from tests.console.test_browser import ARTIFACTS
from tests.console.test_french_console import ENGLISH
from tests.security.web import raise_alert

pytestmark = pytest.mark.browser

SCREENS = ["balises", "utilisateurs", "journal", "statistiques", "annuaire"]
# The console's list (minus "site", French too, and "admin", the fixture's username), plus the admin words.
WORDS = [w for w in ENGLISH if w not in {"site", "admin"}] + [
    "enabled", "revoke", "user", "users", "role", "save", "cancel", "edit", "delete", "battery",
    "never", "disabled", "device", "devices", "login", "logout", "month", "create", "update",
    "display_name", "practitioner_id", "true", "false", "Error", "count", "alerts", "visits",
    "retention_days",
]  # fmt: skip
WORD = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in WORDS) + r")(?![\w-])", re.IGNORECASE)
OVERFLOW = """() => {
  const root = document.documentElement;
  const out = [...document.querySelectorAll("body *")].filter((e) => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && (r.right > root.clientWidth + 0.5 || r.left < -0.5);
  }).map((e) => `${e.tagName}#${e.id}.${e.className.baseVal ?? e.className}`);
  return { scroll: root.scrollWidth, client: root.clientWidth, outside: out.slice(0, 8) };
}"""


def test_the_word_list_catches_english() -> None:
    assert WORD.findall("Battery: online, last seen never; role = operator")
    assert not WORD.findall("Batterie : en ligne ; rôle : opérateur ; Sites ; Administration ; btn-boutonnet")


async def admin_scene(served: Served) -> None:
    """Two devices (one revoked, one low), an alert, an extra operator, a statistics export."""
    system = served.system
    for device_id, practitioner, site, battery in (
        ("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet", 76),
        ("bracelet-benali", "dr-karim-benali", "mmg-saint-gely", 8),
    ):
        device = await system.add_device(device_id, practitioner=practitioner, site=site)
        await asyncio.to_thread(
            device.send, UplinkKind.HEARTBEAT, battery_pct=battery, firmware="1.2", uptime_s=60
        )
    await raise_alert(system, "btn-boutonnet")
    async with httpx.AsyncClient(base_url=served.url, headers={"Origin": served.url}) as admin:
        await admin.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
        await admin.post("/api/devices/bracelet-benali/revoke")
        user = {"username": "op-nuit", "display_name": "Équipe de nuit", "password": PASSWORD,
                "role": "operator", "conventions": ["ssj-34", "ssj-30"]}  # fmt: skip
        assert (await admin.post("/api/users", json=user)).status_code == 201
        await admin.get("/api/stats", params={"format": "csv"})
    await system.dispatcher.health.flush()


@pytest.mark.parametrize("width", [390, 1920])
async def test_every_screen_fits_and_speaks_french(browser: Browser, served: Served, width: int) -> None:
    await admin_scene(served)
    phone = width < 500
    context = await browser.new_context(
        viewport={"width": width, "height": 844 if phone else 1000}, is_mobile=phone, has_touch=phone
    )
    page = await context.new_page()
    await open_admin(page, served, "balises")
    for screen in SCREENS:
        await page.click(f'#tabs a[data-tab="{screen}"]')
        await expect(page.locator("body")).to_have_attribute("data-ready", screen)
        await expect(page.locator(f"#{screen}")).to_be_visible()
        await page.screenshot(path=str(ARTIFACTS / f"admin-{screen}-{width}.png"), full_page=True)
        measure = await page.evaluate(OVERFLOW)
        assert measure["scroll"] <= measure["client"], f"{screen} at {width} px: too wide {measure}"
        assert measure["outside"] == [], f"{screen} at {width} px: {measure}"
        text = await page.locator("body").inner_text()
        assert WORD.findall(text) == [], f"{screen} at {width} px: English {sorted(set(WORD.findall(text)))}"
    await context.close()
