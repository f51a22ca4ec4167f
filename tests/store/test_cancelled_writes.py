"""A write cancelled at any moment stays cancelled, and the store stays usable.

Every pass of the dispatcher (device health, visit timers, leases) runs its
writes in a task that shutdown cancels. A cancellation that lands while a
``BEGIN`` or ``COMMIT`` is still running on aiosqlite's thread used to come
out as "cannot rollback - no transaction is active": an OperationalError,
caught by the pass's ``except Exception``, so the task went on and shutdown
waited for it forever (seen in CI as a test whose teardown hung). And one
that landed during a ``BEGIN`` left the writer inside a transaction, so the
next write was refused ("cannot start a transaction within a transaction").
Both stores are held to it.
"""

from __future__ import annotations

import asyncio
from typing import Any

TRIALS = 120
WRITE_TIMEOUT_S = 5.0


async def test_a_cancelled_write_raises_cancelled_and_the_next_write_goes_through(store: Any) -> None:
    outcomes: set[str] = set()
    for trial in range(TRIALS):
        write = asyncio.create_task(store.hold_lease("health", "i-1", now=1000.0 + trial, lease_s=30))
        # Cancel after a different number of loop turns each time, so that
        # the sweep lands in every statement, the COMMIT's fsync included.
        for _ in range(trial % 40):
            await asyncio.sleep(0)
        write.cancel()
        (outcome,) = await asyncio.wait_for(asyncio.gather(write, return_exceptions=True), WRITE_TIMEOUT_S)
        assert outcome is True or isinstance(outcome, asyncio.CancelledError), repr(outcome)
        outcomes.add(type(outcome).__name__)
        # No transaction left open on the writer: the next write is not refused.
        held = await asyncio.wait_for(
            store.hold_lease("other", "i-1", now=1000.0, lease_s=30), WRITE_TIMEOUT_S
        )
        assert held is True
    assert "CancelledError" in outcomes  # the sweep did cancel writes in flight
