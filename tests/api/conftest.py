"""The whole system for real (broker, provider sandbox, dispatcher), plus the full HTTP app.

``running_system`` serves only the webhooks app; here the REST API and console
app is built by the same factory around the same running dispatcher, and
reached in-process through ``httpx.ASGITransport`` (https base URL, so that the
Secure session cookie is sent back as a browser would).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from broker_config.runner import DevBroker
from dispatcher.alerting.engine import Engine
from dispatcher.directory.snapshot import DirectoryCache
from dispatcher.domain import Convention
from dispatcher.events import EventBus
from dispatcher.fleet.broker_control import BrokerControl
from dispatcher.settings import DispatcherSettings
from dispatcher.store.base import NewUser, Store
from dispatcher.visits.runner import VisitTimers
from dispatcher.web.app import create_app
from dispatcher.web.auth import hash_password
from sandbox.fleet import SimulatedDevice
from tests.support.system import HERAULT, System, http_server, running_system

PASSWORD = "correct horse battery staple"
BASE = "https://vigie.test"

# A second convention (Gard), so that territorial isolation can be shown.
GARD = Convention.model_validate(
    {
        "id": "ssj-30",
        "name": "Convention SSJ Gard",
        "departement": "30",
        "units": [
            {
                "id": "csp-nimes",
                "name": "Commissariat de Nîmes",
                "kind": "commissariat",
                "zone": "police",
                "communes": ["30189"],
                "contacts": [{"id": "csp-nimes-quart", "name": "Officier de quart", "phone": "+33639980199"}],
            }
        ],
        "tiers": [{"targets": [{"unit": "competent"}]}],
        "fallback_units": ["csp-nimes"],
    }
)

USERS = {
    "admin": NewUser("admin", "Alice Admin", "", "admin"),
    "op-herault": NewUser("op-herault", "Olivier Opérateur", "", "operator", conventions=("ssj-34",)),
    "op-gard": NewUser("op-gard", "Gaëlle Gard", "", "operator", conventions=("ssj-30",)),
    "dr-fabre": NewUser("dr-fabre", "Claire Fabre", "", "practitioner", practitioner_id="dr-claire-fabre"),
    "dr-benali": NewUser("dr-benali", "Karim Benali", "", "practitioner", practitioner_id="dr-karim-benali"),
}


@dataclass
class Api:
    """The running system, its full app, and a logged-in client per user."""

    system: System
    app: FastAPI
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def anonymous(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)
        self.clients.append(client)
        return client

    async def as_user(self, username: str) -> httpx.AsyncClient:
        client = self.anonymous()
        response = await client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return client

    async def alert_from(
        self, device_id: str, practitioner: str, site: str | None = None
    ) -> tuple[SimulatedDevice, str]:
        """A real signed alert over MQTT; returns once the dispatcher has persisted and routed it."""
        device = self.system.devices.get(device_id) or await self.system.add_device(
            device_id, practitioner=practitioner, site=site
        )
        alert_id = await asyncio.to_thread(device.alert)
        await asyncio.to_thread(device.wait_downlink, "received", alert_id)
        return device, alert_id


async def add_users(system: System) -> None:
    password_hash = hash_password(PASSWORD)
    await system.store.upsert_convention(GARD)
    for user in USERS.values():
        await system.store.add_user(
            NewUser(
                user.username,
                user.display_name,
                password_hash,
                user.role,
                user.practitioner_id,
                user.conventions,
            )
        )
    await system.dispatcher.cache.refresh()


def full_app(system: System) -> FastAPI:
    d = system.dispatcher
    return create_app(settings=d.settings, inbox=d.engine, metrics=d.metrics, ready=d.bridge, dispatcher=d)


@pytest.fixture
async def api(broker: DevBroker, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_system(broker, tmp_path) as system:
        await add_users(system)
        harness = Api(system, full_app(system))
        try:
            yield harness
        finally:
            for client in harness.clients:
                await client.aclose()


@dataclass
class _Parts:
    """The running dispatcher's parts with test-specific API settings (plain HTTP, no tiles)."""

    settings: DispatcherSettings
    store: Store
    cache: DirectoryCache
    bus: EventBus
    engine: Engine
    visits: VisitTimers
    control: BrokerControl


@dataclass
class Served:
    """The full app on its own uvicorn server (plain HTTP on loopback), around a running system."""

    system: System
    url: str


@pytest.fixture
def tile_url() -> str:
    """The console's map tiles: none by default (tests are offline); a module may override it."""
    return ""


@asynccontextmanager
async def serving(
    system: System,
    tile_url: str = "",
    trusted_proxies: Sequence[str] = (),
    api_updates: dict[str, Any] | None = None,
    **updates: Any,
) -> AsyncIterator[str]:
    """The full app around ``system`` with test settings (plain HTTP, ``tile_url``, ``updates``); its URL.

    ``trusted_proxies``: served as ``vigie serve`` does with ``VIGIE_API__TRUSTED_PROXIES``.
    ``api_updates``: further ``VIGIE_API__*`` settings.
    """
    d = system.dispatcher
    api_settings = {"cookie_secure": False, "tile_url": tile_url, **(api_updates or {})}
    api = d.settings.api.model_copy(update=api_settings)
    settings = d.settings.model_copy(update={"api": api, **updates})
    parts = _Parts(settings, d.store, d.cache, d.bus, d.engine, d.visits, d.control)
    app = create_app(settings=settings, inbox=d.engine, metrics=d.metrics, ready=d.bridge, dispatcher=parts)
    async with http_server(app, trusted_proxies=trusted_proxies) as url:
        yield url


@pytest.fixture
def directory() -> Path:
    """The directory file the served system loads; a module may override it (short timeouts, say)."""
    return HERAULT


@pytest.fixture
async def served(broker: DevBroker, tmp_path: Path, tile_url: str, directory: Path) -> AsyncIterator[Served]:
    async with running_system(broker, tmp_path, directory=directory) as system:
        await add_users(system)
        async with serving(system, tile_url) as url:
            yield Served(system, url)
