"""Wait for a condition on recorded state, woken by whoever records (no polling)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Waiters:
    """Coroutines waiting for predicates; :meth:`notify` after every change."""

    def __init__(self) -> None:
        self._waiting: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Return once ``predicate()`` holds; TimeoutError after ``within`` seconds."""
        if predicate():
            return
        entry = (predicate, asyncio.get_running_loop().create_future())
        self._waiting.append(entry)
        try:
            await asyncio.wait_for(entry[1], within)
        finally:
            self._waiting.remove(entry)

    def notify(self) -> None:
        """Re-check every waiting predicate (call after each recorded event)."""
        for predicate, future in self._waiting:
            if not future.done() and predicate():
                future.set_result(None)
