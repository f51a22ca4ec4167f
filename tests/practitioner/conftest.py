"""The whole system for real, with her page: broker, Twilio and BAN sandboxes, dispatcher, full app.

Short visit timings come from the environment (``VIGIE_VISITS__*``), as in a
deployment: a 1 s minimum duration and a 2 s grace period keep the tests fast.
The full app is served by uvicorn on a free loopback port (browser tests) and
reached in-process over httpx (API tests); her SMS replies go through the
Twilio sandbox to the dispatcher's signed webhook, as in production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from broker_config.runner import DevBroker
from dispatcher.directory.geocoding import AddressGeocoder
from dispatcher.settings import ApiSettings, GeocoderSettings
from dispatcher.web.app import create_app
from sandbox.ban_server import BanSandbox
from tests.api.conftest import PASSWORD, _Parts, add_users, tile_url
from tests.support.system import System, http_server, running_system

__all__ = ["tile_url"]  # the console's map tiles: none unless a module overrides the fixture
FABRE_PHONE = "+33639980150"
GRACE_S = 2


@dataclass
class Harness:
    """The running system, the served full app, and logged-in clients."""

    system: System
    url: str
    ban: BanSandbox
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    async def as_user(self, username: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=self.url, headers={"Origin": self.url})
        self.clients.append(client)
        response = await client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return client

    def sms_to(self, number: str) -> list[str]:
        return self.system.sent_to(number, "message")


@pytest.fixture
def grace_s() -> int:
    """The check's grace period; a module overrides it when a page must see the check."""
    return GRACE_S


@pytest.fixture
async def harness(
    broker: DevBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grace_s: int, tile_url: str
) -> AsyncIterator[Harness]:
    monkeypatch.setenv("VIGIE_VISITS__GRACE_S", str(grace_s))
    monkeypatch.setenv("VIGIE_VISITS__MIN_DURATION_S", "1")
    monkeypatch.setenv("VIGIE_VISITS__POLL_S", "0.2")
    ban = BanSandbox()
    await ban.start()
    geocoder = AddressGeocoder(GeocoderSettings(domain=ban.base_domain, scheme="http"), backoff_s=0.001)
    try:
        async with running_system(broker, tmp_path) as system:
            await add_users(system)
            d = system.dispatcher
            settings = d.settings.model_copy(
                update={"api": ApiSettings(cookie_secure=False, tile_url=tile_url)}
            )
            parts = _Parts(settings, d.store, d.cache, d.bus, d.engine, d.visits, d.control)
            app = create_app(
                settings=settings,
                inbox=d.engine,
                metrics=d.metrics,
                ready=d.bridge,
                dispatcher=parts,
                geocoder=geocoder,
            )
            async with http_server(app) as url:
                h = Harness(system, url, ban)
                try:
                    yield h
                finally:
                    for client in h.clients:
                        await client.aclose()
    finally:
        await geocoder.aclose()
        await ban.stop()
