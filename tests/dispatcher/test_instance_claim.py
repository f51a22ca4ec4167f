"""One running process per instance id, over a real PostgreSQL store.

Each :class:`InstanceClaim` stands for one run of ``vigie serve``; a run that
crashed is one that stops renewing. Lease times are short (the waits are the
lease's own), and nothing here sleeps on its own account.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from dispatcher.fleet.instance_claim import PREFIX, InstanceClaim, InstanceIdInUse
from dispatcher.store import open_store
from dispatcher.store.base import Store
from tests.support import postgres as _pg

postgres_cluster = _pg.postgres_cluster
postgres_url = _pg.postgres_url

LEASE_S = 1.5  # renewed every 0.5 s: a loaded machine stalls a run for less than the 1-s margin


@asynccontextmanager
async def store_at(url: str) -> AsyncIterator[Store]:
    store = await open_store(url)
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def renewing(claim: InstanceClaim) -> AsyncIterator[asyncio.Task[None]]:
    """``claim`` kept while the block runs, as a running process keeps its own."""
    task = asyncio.create_task(claim.keep())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def holders(store: Store) -> list[str]:
    """The runs whose claim runs now."""
    return await store.lease_holders(PREFIX, now=time.time())


async def test_a_second_run_with_the_same_id_is_refused_while_the_first_one_renews(postgres_url: str) -> None:
    async with store_at(postgres_url) as store:
        first = InstanceClaim(store, "dispatcher-1", lease_s=LEASE_S)
        await first.take()
        async with renewing(first) as kept:
            second = InstanceClaim(store, "dispatcher-1", lease_s=LEASE_S)
            with pytest.raises(InstanceIdInUse) as refused:
                await second.take()
            assert "VIGIE_INSTANCE_ID=dispatcher-1" in str(refused.value)
            assert "sans rien reprendre" in str(refused.value)
            assert not kept.done()  # the first run goes on, its claim untouched
            assert await holders(store) == [first.run_id]


async def test_another_instance_id_is_not_held_up(postgres_url: str) -> None:
    async with store_at(postgres_url) as store:
        first = InstanceClaim(store, "dispatcher-1", lease_s=LEASE_S)
        other = InstanceClaim(store, "dispatcher-2", lease_s=LEASE_S)
        await first.take()
        async with renewing(first):
            await other.take()
            assert sorted(await holders(store)) == sorted([first.run_id, other.run_id])


async def test_a_restart_after_a_crash_takes_the_id_once_the_dead_runs_claim_ran_out(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with store_at(postgres_url) as store:
        crashed = InstanceClaim(store, "dispatcher-1", lease_s=LEASE_S)
        await crashed.take()  # and never renewed: killed
        restarted = InstanceClaim(store, "dispatcher-1", lease_s=LEASE_S)
        with caplog.at_level(logging.WARNING, logger="dispatcher.fleet.instance_claim"):
            await restarted.take()
        assert "attente" in caplog.text  # it waited for the dead run's claim, not more
        assert await holders(store) == [restarted.run_id]


async def test_a_clean_stop_hands_the_id_to_the_next_run_at_once(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with store_at(postgres_url) as store:
        stopped = InstanceClaim(store, "dispatcher-1", lease_s=60.0)
        await stopped.take()
        await stopped.release()
        following = InstanceClaim(store, "dispatcher-1", lease_s=60.0)
        with caplog.at_level(logging.WARNING, logger="dispatcher.fleet.instance_claim"):
            await asyncio.wait_for(following.take(), 10)  # a minute-long lease, not waited for
        assert "attente" not in caplog.text
        assert await holders(store) == [following.run_id]


async def test_a_run_whose_claim_was_taken_while_it_could_not_renew_stops(postgres_url: str) -> None:
    async with store_at(postgres_url) as store:
        stalled = InstanceClaim(store, "dispatcher-1", lease_s=LEASE_S)
        await stalled.take()
        # It cannot renew (frozen, cut from the database) and another run takes the id meanwhile.
        newer = InstanceClaim(store, "dispatcher-1", lease_s=LEASE_S)
        await newer.take()
        async with renewing(newer):
            with pytest.raises(InstanceIdInUse) as lost:
                await asyncio.wait_for(stalled.keep(), 10)  # back: its first renewal finds out
            assert "VIGIE_INSTANCE_ID=dispatcher-1" in str(lost.value)
            await stalled.release()  # its clean stop gives back nothing it does not hold
            assert await holders(store) == [newer.run_id]
