"""One writer at a time on the SQLite connection, alerts first.

SQLite has a single writer. At 100 alerts/s the dispatcher queues about 300
write transactions a second: alert inserts and claims (on the path to the
first SMS), and the grouped outcomes of provider requests and callbacks
(bookkeeping). In arrival order an alert waited behind ~4 ms of bookkeeping;
with this lock it waits at most for the transaction already running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class PriorityWriteLock:
    """A mutex whose urgent waiters are served before routine ones (FIFO within each).

    Routine writers only wait while urgent ones keep coming; the alert path
    uses a fraction of the store's time, so they are delayed, not starved.
    """

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._routine: deque[asyncio.Future[None]] = deque()

    @property
    def locked(self) -> bool:
        """Whether a writer holds the lock."""
        return self._held

    @contextlib.asynccontextmanager
    async def hold(self, *, urgent: bool) -> AsyncIterator[None]:
        """Wait for the lock (ahead of routine waiters when ``urgent``), hold it inside the block."""
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._hand_over()

    async def _acquire(self, urgent: bool) -> None:
        if not self._held and not self._urgent and not self._routine:
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._routine).append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._hand_over()  # handed the lock just as we were cancelled: pass it on
            raise

    def _hand_over(self) -> None:
        """Give the lock to the next live waiter, urgent first; free it if nobody waits."""
        for waiters in (self._urgent, self._routine):
            while waiters:
                turn = waiters.popleft()
                if not turn.done():  # a cancelled waiter's future is done
                    turn.set_result(None)
                    return
        self._held = False
