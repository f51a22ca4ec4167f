"""Rows turned into Python objects off the event loop when there are many.

Validating 100,000 device documents, or building 100,000 health rows, takes
about a second of Python: on the event loop it would hold every alert that
arrives meanwhile (the directory is reloaded on each edit and each home visit's
start and end; a new health leader reads every device). In a worker thread the
loop gets the GIL back within the interpreter's switch interval (5 ms).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: Above this many rows, the work is done in a worker thread (below, the hop would cost more).
OFF_LOOP_ROWS = 1_000


async def parse_rows(
    parse: Callable[[Any], T], rows: Sequence[Any], *, key: Callable[[T], Any] | None = None
) -> list[T]:
    """``parse`` applied to every row (then sorted by ``key``, if given), off the loop when many."""

    def run() -> list[T]:
        parsed = [parse(r) for r in rows]
        if key is not None:
            parsed.sort(key=key)
        return parsed

    return run() if len(rows) <= OFF_LOOP_ROWS else await asyncio.to_thread(run)
