"""Dedicated thread pools for argon2, and a bound on concurrent password checks.

argon2 is slow on purpose (about 0.1 s of CPU per check). Run in the default
executor, a login flood queued hundreds of hashes in front of the duress PIN
check of a cancel (0.16 s → 3.8 s). Now login hashing has its own small pool
and PIN checks another, so one can never wait behind the other; and
:class:`InflightGate` refuses at once the password checks beyond a few per
username and per client address (300 concurrent guesses for one account were
all checked before), and beyond a global ceiling, instead of queueing them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class HashPool:
    """A named thread pool for one kind of slow hashing (threads are started on first use)."""

    def __init__(self, threads: int, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on this pool, awaited from the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Busy(Exception):
    """Too many password checks already running for this key (or in all)."""


class InflightGate:
    """Counts checks in flight per key; entering beyond ``per_key`` (or ``total``) raises :class:`Busy`.

    In-process: with N dispatcher instances the bound is N times larger,
    which still turns "300 checked" into a handful.
    """

    def __init__(self, per_key: int, total: int) -> None:
        self._per_key = per_key
        self._total = total
        self._inflight: Counter[str] = Counter()
        self._all = 0

    @contextmanager
    def enter(self, *keys: str) -> Iterator[None]:
        """Hold one slot of each key (and one of the total) for the duration of the block."""
        if self._all >= self._total or any(self._inflight[k] >= self._per_key for k in keys):
            raise Busy
        self._all += 1
        self._inflight.update(keys)
        try:
            yield
        finally:
            self._all -= 1
            self._inflight.subtract(keys)
            for k in keys:
                if self._inflight[k] <= 0:
                    del self._inflight[k]
