"""The served full app around a real broker, outside pytest (for the docs screenshot scripts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from broker_config.runner import DevBroker
from tests.api.conftest import Served, served
from tests.support.broker import dispatcher_account
from tests.support.system import HERAULT


@asynccontextmanager
async def served_for_docs(workdir: Path, directory: Path = HERAULT) -> AsyncIterator[Served]:
    """A dev broker and the ``served`` fixture's system and app (no map tiles), stopped on exit."""
    broker = DevBroker(workdir / "broker")
    dispatcher_account(broker)
    broker.start()
    try:
        fixture = served.__wrapped__(broker, workdir, "", directory)  # type: ignore[attr-defined]
        s = await anext(fixture)
        try:
            yield s
        finally:
            await anext(fixture, None)
    finally:
        broker.stop()
