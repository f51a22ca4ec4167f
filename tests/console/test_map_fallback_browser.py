"""The alert's map when tiles cannot be shown, in real headless Chromium.

No tile URL configured, or a tile server that refuses connections: instead of a grey box the
detail writes the place out (address, coordinates) and offers "Ouvrir dans une carte"
(OpenStreetMap at the coordinates). With a tile server that answers, the map is shown instead.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.async_api import Browser, expect

from broker_config.runner import free_port
from protocol.messages import Location
from tests.api.conftest import Served
from tests.console.test_browser import ARTIFACTS, browser, chromium, login
from tests.console.test_french_console import open_alert

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium"]

# A 1×1 PNG: what a tile server answers, as far as the browser can tell.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


class _Tiles(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, *_args: object) -> None:
        pass


@contextmanager
def tile_server(kind: str) -> Iterator[str]:
    """A tile URL: none, one where nothing listens ("refused"), or a local server answering PNGs."""
    if kind == "none":
        yield ""
    elif kind == "refused":
        yield f"http://127.0.0.1:{free_port()}/{{z}}/{{x}}/{{y}}.png"  # nothing listens there
    else:
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Tiles)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}/{{z}}/{{x}}/{{y}}.png"
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture(params=["none", "refused", "served"])
def tile_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Overrides the console's tile URL (tests/api/conftest.py) for this module."""
    with tile_server(request.param) as url:
        yield url


async def test_map_or_its_written_fallback(
    browser: Browser, served: Served, tile_url: str, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["tile_url"]
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await login(page, served, "op-herault")
    bracelet = await served.system.add_device(
        "bracelet-benali", practitioner="dr-karim-benali", site="mmg-saint-gely"
    )
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    fix = Location(lat=43.69262, lon=3.80581, accuracy_m=12, fix_ts=now_ms - 20_000, source="gnss")
    alert_id = await asyncio.to_thread(bracelet.alert, fix)
    await open_alert(page, alert_id)

    link = page.locator("#map-link")
    await expect(link).to_be_visible(timeout=5000)
    await expect(link).to_have_text("Ouvrir dans une carte")
    href = await link.get_attribute("href")
    assert href == "https://www.openstreetmap.org/?mlat=43.69262&mlon=3.80581#map=17/43.69262/3.80581"
    fallback, tiles = page.locator("#map-fallback"), page.locator("#map .leaflet-tile-loaded")
    if kind == "served":
        await expect(tiles.first).to_be_attached(timeout=10_000)
        await expect(page.locator("#map")).to_be_visible()
        await expect(fallback).to_be_hidden()
    else:
        await expect(fallback).to_be_visible(timeout=10_000)
        await expect(page.locator("#map")).to_be_hidden()
        await expect(fallback).to_contain_text("Carte indisponible")
        await expect(fallback).to_contain_text("Saint-Gély-du-Fesc")
        await expect(fallback).to_contain_text("43.69262, 3.80581")
    await page.screenshot(path=str(ARTIFACTS / f"console-map-{kind}.png"))
    assert errors == []
