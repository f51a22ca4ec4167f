"""Shared fixtures: real processes, started per test and cleaned up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from broker_config.runner import DevBroker
from tests.support import external_broker
from tests.support.broker import dispatcher_account


def pytest_configure(config: pytest.Config) -> None:
    """``VIGIE_TEST_BROKER`` runs the broker suite against an external broker (support/external_broker.py)."""
    external_broker.configure(config)
    # Properties are judged on what they decide, not on how fast a 2-core CI machine decides it:
    # a per-example deadline would fail a correct property whenever the machine is busy.
    settings.register_profile("vigie", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("vigie")


def pytest_runtest_setup(item: pytest.Item) -> None:
    external_broker.skip_if_needs_process(item)


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


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop SQLite worker threads a test left open, so that the run can end.

    aiosqlite runs each connection on a thread that is not a daemon: one store
    left open (a test that failed between open and close, its traceback still
    holding the store) kept the interpreter waiting forever after pytest's
    summary, and CI would only end at its time limit. They are named, then
    stopped the way aiosqlite's own ``Connection.stop`` does.
    """
    import threading

    from aiosqlite import core

    leaked = [
        t for t in threading.enumerate() if getattr(t, "_target", None) is core._connection_worker_thread
    ]
    for thread in leaked:
        queue = thread._args[0]  # type: ignore[attr-defined]
        queue.put_nowait((None, lambda: core._STOP_RUNNING_SENTINEL))
    if leaked:
        print(f"\n{len(leaked)} SQLite connection(s) left open by the tests: stopped at exit")
