"""Shared fixtures: real processes, started per test and cleaned up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_config.runner import DevBroker
from tests.support.broker import dispatcher_account


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[DevBroker]:
    """A real Mosquitto with the project's dev config on a free loopback port.

    The dispatcher account exists; add device accounts with ``add_account``
    then ``reload()`` (or create them before the broker starts).
    """
    b = DevBroker(tmp_path / "broker")
    dispatcher_account(b)
    b.start()
    try:
        yield b
    finally:
        b.stop()
