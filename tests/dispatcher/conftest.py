"""Fixtures shared by the dispatcher tests: a real BAN-compatible server and geopy over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dispatcher.directory.geocoding import AddressGeocoder
from dispatcher.settings import GeocoderSettings
from sandbox.ban_server import BanSandbox


@pytest.fixture
async def ban() -> AsyncIterator[BanSandbox]:
    sandbox = BanSandbox()
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


@pytest.fixture
async def geocoder(ban: BanSandbox) -> AsyncIterator[AddressGeocoder]:
    settings = GeocoderSettings(domain=ban.base_domain, scheme="http", timeout_s=5)
    async with AddressGeocoder(settings, backoff_s=0.001) as g:
        yield g
