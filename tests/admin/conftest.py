"""Admin-screen tests reuse the served full app and Debian's chromium of the console suite."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.api.conftest import Served, directory, served, tile_url
from tests.console.test_browser import browser, chromium, login

__all__ = ["browser", "chromium", "directory", "served", "tile_url"]


async def open_admin(page: Page, served: Served, screen: str, username: str = "admin") -> None:
    """Log in through the console's form, then open one admin screen and wait for its data."""
    await login(page, served, username)
    await page.goto(f"{served.url}/admin/#{screen}")
    await expect(page.locator("body")).to_have_attribute("data-ready", screen, timeout=10000)
