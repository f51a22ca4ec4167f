"""A running system whose full app has small responder settings (grace, rate limits) for the tests.

The SMS links point at the system's own public URL; the tests open the same
path on this app (same store, engine and bus; only the settings differ).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from broker_config.runner import DevBroker
from dispatcher.settings import ResponderSettings
from tests.api.conftest import PASSWORD, add_users, serving
from tests.support.system import System, running_system

CHEF = "+33639980101"  # Chef de poste, Montpellier: SMS + voice at the first tier (herault.yaml)
REFERENT = "+33639980102"  # Référent SSJ, Montpellier: SMS at the second tier (office hours)
LINK = re.compile(r"https?://\S+/r/([A-Za-z0-9_-]+)")
# A closed alert's link opens this long after the close. Tests read a closed alert's page within
# it (after waiting for an SMS, on a loaded machine): 1.5 s was once over before that read.
GRACE_S = 5.0


@dataclass
class Responder:
    """The running system and the app under test, on its own port."""

    system: System
    url: str

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)

    async def link_sent_to(self, number: str, alert_id: str | None = None, within: float = 10.0) -> str:
        """The path (/r/<token>) of the first alert SMS to ``number`` that carries a link."""

        def links() -> list[str]:
            bodies = [
                r.params.get("Body", "")
                for r in self.system.sandbox.requests_to(number, "message")
                if alert_id is None or (r.ref or "").startswith(f"{alert_id}/")
            ]
            return [m.group(0) for b in bodies if (m := LINK.search(b))]

        await self.system.sandbox.wait_for(lambda: bool(links()), within)
        return urlsplit(links()[0]).path


def responder_settings() -> ResponderSettings:
    return ResponderSettings(link_grace_s=GRACE_S, poll_s=0.5, misses_burst=5, misses_refill_s=600)


@pytest.fixture
async def responder(broker: DevBroker, tmp_path: Path) -> AsyncIterator[Responder]:
    async with running_system(broker, tmp_path) as system:
        await add_users(system)
        async with serving(system, responder=responder_settings()) as url:
            yield Responder(system, url)


async def resolve_as_operator(r: Responder, alert_id: str, action: str = "resolve") -> None:
    """The Hérault operator closes the alert from the console's API (``resolve`` or ``false-alarm``)."""
    async with r.client() as http:
        login = {"username": "op-herault", "password": PASSWORD}
        assert (await http.post("/api/auth/login", json=login)).status_code == 200
        assert (await http.post(f"/api/alerts/{alert_id}/{action}")).status_code == 200
