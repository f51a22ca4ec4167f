"""Instances saying they take alerts, and the one alarm when none does, over real stores.

Two presences on one PostgreSQL database stand for two instances (one of role
all, one web-only); the passes are driven with explicit times, as the health
leader's are. A SQLite dispatcher, alone on its store, watches its own session
without writing a lease.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatcher.events import EventBus
from dispatcher.fleet.alert_takers import NO_TAKER, ClearNoTaker, RaiseNoTaker
from dispatcher.fleet.presence import PRESENCE_LEASE_S, TOPIC, AlertTakerPresence
from dispatcher.metrics import Metrics
from dispatcher.store import open_store
from dispatcher.store.base import Store
from tests.support import postgres as _pg

postgres_cluster = _pg.postgres_cluster
postgres_url = _pg.postgres_url

GRACE = 6.0


@dataclass
class Node:
    """One instance's presence, its store, and what its consoles were told."""

    presence: AlertTakerPresence
    store: Store
    metrics: Metrics
    bus: EventBus
    connected: bool = True  # its MQTT session (role all) is up
    told: list[dict[str, Any]] = field(default_factory=list)

    def gauge(self) -> float:
        return self.metrics.registry.get_sample_value("vigie_alert_taking_instances") or 0.0


@asynccontextmanager
async def node(url: str, name: str, *, web: bool = False, shared: bool = True) -> AsyncIterator[Node]:
    store = await open_store(url)
    bus, metrics = EventBus(), Metrics()
    holder: list[Node] = []
    presence = AlertTakerPresence(
        store=store,
        bus=bus,
        metrics=metrics,
        instance_id=name,
        takes_alerts=lambda: not web and holder[0].connected,
        grace_s=GRACE,
        shared=shared,
    )
    n = Node(presence, store, metrics, bus)
    holder.append(n)
    bus.relay_to(n.told.append)  # every event this instance published, as the relay would get it
    try:
        yield n
    finally:
        await store.close()


async def alarms(store: Store) -> list[str]:
    events = await store.operator_events()
    return [e["message"] for e in reversed(events) if e["kind"] in ("alarm", "alert_takers")]


async def test_one_alarm_when_the_only_instance_of_role_all_leaves_the_broker_and_one_end(
    postgres_url: str,
) -> None:
    async with node(postgres_url, "d1") as d1, node(postgres_url, "w1", web=True) as w1:
        said = []
        for t in range(0, 20, 2):  # both pass every 2 s; d1 connected
            said += await d1.presence.tick(1000.0 + t) + await w1.presence.tick(1000.5 + t)
        assert said == [] and d1.gauge() == w1.gauge() == 1
        d1.connected = False  # its session is lost: it gives its presence up at its next pass
        for t in range(20, 40, 2):
            said += await d1.presence.tick(1000.0 + t) + await w1.presence.tick(1000.5 + t)
        assert d1.gauge() == w1.gauge() == 0
        assert said == [RaiseNoTaker(GRACE)]  # once, by whichever watches, a grace after the loss
        d1.connected = True
        for t in range(40, 50, 2):
            said += await d1.presence.tick(1000.0 + t) + await w1.presence.tick(1000.5 + t)
        assert said[1:] == [ClearNoTaker(("d1",))]
        assert await alarms(d1.store) == [NO_TAKER, "alertes des balises de nouveau reçues (instance(s) d1)"]
        consoles = [e for e in d1.told + w1.told]
        assert [(e["kind"], e["topic"]) for e in consoles] == [
            ("operator_alarm", "alert_takers"),
            ("system", "alert_takers"),
        ]


async def test_a_dead_instance_is_missed_once_its_presence_ran_out(postgres_url: str) -> None:
    async with node(postgres_url, "d1") as d1, node(postgres_url, "w1", web=True) as w1:
        await d1.presence.tick(1000.0)
        said = []
        for t in range(1, 30):  # d1 never passes again (killed): only w1 does, every second
            said += await w1.presence.tick(1000.0 + t)
            if 1000.0 + t < 1000.0 + PRESENCE_LEASE_S + GRACE:
                assert said == [], t  # its presence still ran, or the grace did
        assert said == [RaiseNoTaker(GRACE)]
        assert await alarms(w1.store) == [NO_TAKER]


async def test_a_web_instance_alone_raises_after_its_grace(postgres_url: str) -> None:
    async with node(postgres_url, "w1", web=True) as w1:
        assert await w1.presence.tick(1000.0) == []
        assert await w1.presence.tick(1000.0 + GRACE - 0.5) == []  # instances starting together
        assert await w1.presence.tick(1000.0 + GRACE) == [RaiseNoTaker(GRACE)]


async def test_a_sqlite_dispatcher_watches_its_own_session_and_writes_no_lease(tmp_path: Path) -> None:
    db = tmp_path / "vigie.db"
    async with node(f"sqlite:///{db}", "d1", shared=False) as d1:
        assert await d1.presence.tick(1000.0) == []
        assert d1.gauge() == 1
        d1.connected = False  # the broker is unreachable
        assert await d1.presence.tick(1002.0) == []
        assert await d1.presence.tick(1000.0 + GRACE - 0.5) == []  # counted from the last pass connected
        assert await d1.presence.tick(1000.0 + GRACE) == [RaiseNoTaker(GRACE)]
        assert d1.gauge() == 0
        d1.connected = True
        assert await d1.presence.tick(1010.0) == [ClearNoTaker(("d1",))]
        assert await alarms(d1.store) == [NO_TAKER, "alertes des balises de nouveau reçues (instance(s) d1)"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM leases").fetchone() == (0,)


async def test_a_dispatcher_restarted_during_an_episode_shows_it_then_ends_it_once_connected(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'vigie.db'}"
    async with node(url, "d1", shared=False) as before:
        before.connected = False
        assert await before.presence.tick(1000.0) == []
        assert await before.presence.tick(1000.0 + GRACE) == [RaiseNoTaker(GRACE)]
    async with node(url, "d1", shared=False) as after:  # restarted, the broker still out of reach
        after.bus.remember_system_alarms(await after.store.open_system_alarms())  # as the service does
        assert after.bus.system_alarms == {TOPIC: NO_TAKER}, "its consoles show it from the start"
        after.connected = False
        assert await after.presence.tick(2000.0 + GRACE) == [], "the same episode: not raised again"
        after.connected = True
        assert await after.presence.tick(2010.0) == [ClearNoTaker(("d1",))]
        assert after.bus.system_alarms == {}
        assert await after.store.open_system_alarms() == {}


async def test_a_watcher_taking_over_an_open_alarm_does_not_raise_it_again(postgres_url: str) -> None:
    async with node(postgres_url, "w1", web=True) as w1, node(postgres_url, "w2", web=True) as w2:
        said = await w1.presence.tick(1000.0) + await w2.presence.tick(1000.5)  # w1 holds the watch
        said += await w1.presence.tick(1000.0 + GRACE)
        assert said == [RaiseNoTaker(GRACE)]
        for event in w1.told:  # what the relay hands the other instance's bus
            w2.bus.deliver(event)
        taken_over = 1000.0 + GRACE + PRESENCE_LEASE_S + 1  # w1 died: its watch lease ran out
        assert await w2.presence.tick(taken_over) == []
        assert await w2.presence.tick(taken_over + GRACE + 1) == []  # the same episode: not again
        assert await alarms(w2.store) == [NO_TAKER]
