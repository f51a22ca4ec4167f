"""Fixtures of the attack suite; every test here carries the ``attacks`` marker.

MQTT attacks run against ``stack`` (dev and prod brokers); web attacks reuse the
API and console suites' fixtures: ``api`` (full app in-process), ``served``
(full app on its own uvicorn server), ``browser`` (Debian's chromium).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.conftest import api, directory, served, tile_url
from tests.console.test_browser import browser, chromium
from tests.security.mqtt_stack import PROFILES, QUARANTINE_S, Stack, stack_for
from tests.support import external_broker

__all__ = ["api", "browser", "chromium", "directory", "served", "tile_url"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.attacks)


@pytest.fixture(params=PROFILES)
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """A running Vigie on the dev broker (passwords) and on the prod broker (mutual TLS)."""
    external_broker.skip_own_broker_profile(request.param)
    async with stack_for(request.param, tmp_path) as s:
        yield s


@pytest.fixture
def short_quarantine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatcher's setting (VIGIE_INGEST__QUARANTINE_S), read when the stack starts it."""
    monkeypatch.setenv("VIGIE_INGEST__QUARANTINE_S", str(QUARANTINE_S))
