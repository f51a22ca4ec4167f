"""Several dispatcher instances on one PostgreSQL database: claims, leases, windows, versions.

Each "instance" is its own PostgresStore (its own connection pool), as two
``vigie serve`` processes would have; the calls really run concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from dispatcher.alerting import escalation as esc
from dispatcher.alerting.engine import Engine
from dispatcher.directory.fallback import deployment_recipient
from dispatcher.directory.loader import load_directory
from dispatcher.directory.location import LocationPolicy
from dispatcher.directory.snapshot import DirectoryCache
from dispatcher.domain import Device, DeviceKind
from dispatcher.events import EventBus
from dispatcher.metrics import Metrics
from dispatcher.store.base import Conflict, TimerSpec, Transition
from dispatcher.store.postgres import PostgresStore
from dispatcher.store.postgres_schema import MIGRATIONS
from protocol.replay import WINDOW, SequenceWindow, merge_windows
from tests.store.test_conformance import first, new_alert, seed, spec, window
from tests.support.system import HERAULT

Pair = tuple[PostgresStore, PostgresStore]


@pytest.fixture
async def instances(postgres_url: str) -> AsyncIterator[Pair]:
    """Two stores on one fresh database, migrated concurrently (the advisory lock at work)."""
    a, b = await asyncio.gather(PostgresStore.open(postgres_url), PostgresStore.open(postgres_url))
    try:
        assert await a.schema_version() == await b.schema_version() == len(MIGRATIONS)
        yield a, b
    finally:
        await asyncio.gather(a.close(), b.close())


def test_merge_windows_is_a_union() -> None:
    a, b = window(1, 3, 10), window(2, 3, 9)
    merged = merge_windows(a, b)
    assert merged == window(1, 2, 3, 9, 10) == merge_windows(b, a)
    assert merge_windows(a, SequenceWindow()) == a
    far = window(10 + WINDOW + 5)
    assert merge_windows(a, far) == far  # a's seqs fell out of the window


async def test_two_instances_claim_disjoint_notifications(
    instances: Pair,
) -> None:
    a, b = instances
    await seed(a)
    contacts = [spec(f"c{i}", tier=0) for i in range(40)]
    await a.insert_alerts([(new_alert("a-1"), window(1), first("a-1", *contacts))])
    rounds = await asyncio.gather(
        *(
            store.claim_notifications(name, now=1000.0)
            for _ in range(5)
            for store, name in ((a, "A"), (b, "B"))
        )
    )
    claimed = [n.id for batch in rounds for n in batch]
    assert sorted(claimed) == sorted(n.id for n in await a.notifications_for("a-1"))  # all, once each


async def test_timers_claimed_once_and_taken_over_only_after_the_lease(
    instances: Pair,
) -> None:
    a, b = instances
    await seed(a)
    timers = tuple(TimerSpec("ack_timeout", 1000.0 + i / 100, {"tier": 0, "round": i}) for i in range(50))
    await a.insert_alerts([(new_alert("a-1"), window(1), first("a-1", timers=timers))])
    got_a, got_b = await asyncio.gather(
        a.claim_due_timers("A", now=1001.0, lease_s=30), b.claim_due_timers("B", now=1001.0, lease_s=30)
    )
    ids_a, ids_b = {t.id for t in got_a}, {t.id for t in got_b}
    assert not ids_a & ids_b and len(ids_a | ids_b) == 50
    # "A" dies without deleting its timers: B must wait for A's lease, then take them.
    assert await b.claim_due_timers("B", now=1030.0) == []
    taken = await b.claim_due_timers("B", now=1031.6)
    assert {t.id for t in taken} == ids_a | ids_b  # B's own lease (until 1031) ran out too


async def test_same_device_on_two_instances_keeps_every_seq_and_one_alert(
    instances: Pair,
) -> None:
    a, b = instances
    await seed(a)
    # Instance A saw seqs 1 and 3, instance B saw 2 and 4; both got the re-sent alert "dup".
    results = await asyncio.gather(
        a.insert_alerts(
            [(new_alert("a-1", seq=1), window(1), None), (new_alert("dup", seq=3), window(1, 3), None)]
        ),
        b.insert_alerts(
            [(new_alert("b-2", seq=2), window(2), None), (new_alert("dup", seq=3), window(2, 3), None)]
        ),
        b.save_replay_windows({"btn-1": window(2, 3, 4)}),
    )
    created = [o.created for outcome in results[:2] for o in outcome]
    assert created.count(False) == 1 and created.count(True) == 3  # "dup" stored once
    stored = (await a.replay_windows())["btn-1"]
    assert stored == window(1, 2, 3, 4)  # nothing one instance admitted is forgotten
    await a.save_replay_windows({"btn-1": window(1)})  # a stale flush adds, never removes
    assert (await b.replay_windows())["btn-1"] == window(1, 2, 3, 4)


async def test_concurrent_transitions_on_one_alert_one_wins(
    instances: Pair,
) -> None:
    a, b = instances
    await seed(a)
    await a.insert_alerts([(new_alert("a-1"), window(1), first("a-1"))])
    t = Transition(alert_id="a-1", expected_version=1, state="acknowledged", escalation={"by": "?"})
    outcomes = await asyncio.gather(
        a.apply_transition(t), b.apply_transition(t), a.apply_transition(t), return_exceptions=True
    )
    assert sum(isinstance(o, Conflict) for o in outcomes) == 2
    assert (await b.get_alert("a-1")).version == 2


class _InterleavingStore:
    """Instance B's store: right before B's first write, instance A changes the alert."""

    def __init__(self, inner: PostgresStore, meanwhile: Any) -> None:
        self._inner = inner
        self._meanwhile = meanwhile
        self.conflicts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def apply_transition(self, t: Transition) -> list[int]:
        if self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            await meanwhile()
        try:
            return await self._inner.apply_transition(t)
        except Conflict:
            self.conflicts += 1
            raise


class _NoDownlinks:
    def send_downlink(self, device_id: str, kind: str, ref: str) -> None:
        """Devices are not part of this test."""


async def _engine(store: Any, instance_id: str) -> Engine:
    cache = DirectoryCache(store)
    await cache.refresh()
    return Engine(
        store=store,
        cache=cache,
        downlinks=_NoDownlinks(),
        bus=EventBus(),
        metrics=Metrics(),
        location_policy=LocationPolicy(),
        instance_id=instance_id,
        fallback_contact=deployment_recipient("Permanence Vigie", "+33465710190", ["sms", "voice"]),
    )


async def test_engine_rereads_and_reapplies_after_a_conflict_with_another_instance(
    instances: Pair,
) -> None:
    """A's tier-1 timeout lands between B's read and B's write: B re-reads and applies the ack on top."""
    a, b = instances
    await load_directory(HERAULT, a, None)
    await a.add_device(
        Device(
            id="btn-1", kind=DeviceKind.BUTTON, practitioner_id="dr-claire-fabre", site_id="cabinet-boutonnet"
        ),
        b"k" * 32,
    )
    engine_a = await _engine(a, "A")
    planned = engine_a.plan(new_alert("a-1"))
    await a.insert_alerts([(new_alert("a-1"), window(1), planned.transition)])
    tier0 = {n.contact_id for n in planned.transition.notifications}

    store_b = _InterleavingStore(b, lambda: engine_a.handle("a-1", esc.AckTimeout(tier=0, round=0)))
    engine_b = await _engine(store_b, "B")
    assert await engine_b.handle("a-1", esc.Acknowledged(by=sorted(tier0)[0], via="sms"))

    assert store_b.conflicts == 1
    record = await a.get_alert("a-1")
    assert record.state == "acknowledged" and record.version == 3  # insert, A's timeout, B's ack
    tiers = {n.tier for n in await a.notifications_for("a-1") if n.purpose == "alert"}
    assert tiers == {0, 1}  # A's escalation to tier 2 (index 1) was kept, not overwritten
    kinds = [e["kind"] for e in await a.alert_events("a-1")]
    assert kinds.index("AckTimeout") < kinds.index("Acknowledged")


async def test_a_change_committed_after_an_earlier_numbered_one_is_not_skipped(
    instances: Pair, postgres_url: str
) -> None:
    """Two instances edit the directory at once; a third polls between their commits.

    The second writer's rows must be numbered after the first writer's commit,
    not before it: the poller that saw the first commit's version reads the log
    only above that version from then on.
    """
    a, _ = instances
    await seed(a, "btn-1", "btn-2")
    cache = DirectoryCache(a)
    await cache.refresh()
    first_writer, second_writer = await asyncpg.connect(postgres_url), await asyncpg.connect(postgres_url)
    edit = "UPDATE devices SET doc = jsonb_set(doc, '{label}', '\"modifié\"') WHERE id = $1"
    try:
        await first_writer.execute("BEGIN")
        await first_writer.execute(edit, "btn-1")
        await second_writer.execute("BEGIN")
        second = asyncio.create_task(second_writer.execute(edit, "btn-2"))
        await _waiting_for_a_lock(first_writer, second_writer.get_server_pid())
        await first_writer.execute("COMMIT")
        await second  # its statement is done, its transaction not yet committed
        await cache.refresh_if_changed()
        assert cache.current.devices["btn-1"].label == "modifié"
        await second_writer.execute("COMMIT")
        await cache.refresh_if_changed()
        assert cache.current.devices["btn-2"].label == "modifié"
    finally:
        await asyncio.gather(first_writer.close(), second_writer.close())


async def _waiting_for_a_lock(conn: asyncpg.Connection, pid: int) -> None:
    """Until the server shows backend ``pid`` waiting for a lock (the server has no event to await)."""
    sql = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1"
    async with asyncio.timeout(10):
        while not await conn.fetchval(sql, pid):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
