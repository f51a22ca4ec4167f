"""The SQLite write lock: one writer at a time, the alert path's writers first."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher.store.writelock import PriorityWriteLock

# A safety net against a hang, not a timing goal: the lock is handed over within a few
# turns of the event loop, which a loaded machine slows but does not stop.
HANG_S = 30.0


async def _writer(lock: PriorityWriteLock, name: str, urgent: bool, order: list[str]) -> None:
    async with lock.hold(urgent=urgent):
        order.append(name)
        await asyncio.sleep(0)  # hold it across a yield, like a transaction on another thread


async def _queue(
    lock: PriorityWriteLock, order: list[str], *writers: tuple[str, bool]
) -> list[asyncio.Task[None]]:
    tasks = []
    for name, urgent in writers:
        tasks.append(asyncio.create_task(_writer(lock, name, urgent, order)))
        await asyncio.sleep(0)  # queued in this order
    return tasks


async def test_urgent_writers_overtake_routine_ones_waiting_before_them() -> None:
    lock, order = PriorityWriteLock(), list[str]()
    async with lock.hold(urgent=False):
        tasks = await _queue(
            lock, order, ("outcomes-1", False), ("alert-1", True), ("outcomes-2", False), ("alert-2", True)
        )
        assert order == []  # nobody enters while it is held
    await asyncio.gather(*tasks)
    assert order == ["alert-1", "alert-2", "outcomes-1", "outcomes-2"]
    assert not lock.locked


async def test_one_writer_at_a_time() -> None:
    lock = PriorityWriteLock()
    inside, most = 0, 0

    async def write(urgent: bool) -> None:
        nonlocal inside, most
        async with lock.hold(urgent=urgent):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(write(i % 3 == 0) for i in range(30)))
    assert most == 1
    assert not lock.locked


async def test_a_cancelled_waiter_does_not_keep_the_lock_from_the_others() -> None:
    lock, order = PriorityWriteLock(), list[str]()
    async with lock.hold(urgent=True):
        cancelled, later = await _queue(lock, order, ("cancelled", True), ("later", False))
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    await asyncio.wait_for(later, HANG_S)
    assert order == ["later"]
    assert not lock.locked


async def test_a_waiter_cancelled_as_it_is_handed_the_lock_passes_it_on() -> None:
    lock, order = PriorityWriteLock(), list[str]()
    holder = lock.hold(urgent=True)
    await holder.__aenter__()
    handed, next_one = await _queue(lock, order, ("handed", True), ("next", True))
    await holder.__aexit__(None, None, None)  # hands the lock to "handed"...
    handed.cancel()  # ...which is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await handed
    await asyncio.wait_for(next_one, HANG_S)
    assert order == ["next"]
    assert not lock.locked


async def test_an_error_inside_releases_the_lock() -> None:
    lock = PriorityWriteLock()
    with pytest.raises(RuntimeError):
        async with lock.hold(urgent=True):
            raise RuntimeError("transaction failed")
    assert not lock.locked
    async with asyncio.timeout(HANG_S), lock.hold(urgent=False):
        assert lock.locked
