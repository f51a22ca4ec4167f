"""Rows turned into Python objects off the event loop when there are many, and not twice.

Validating 100,000 device documents, or building 100,000 health rows, takes
about a second of Python: on the event loop it would hold every alert that
arrives meanwhile (the directory is reloaded on each edit and each home visit's
start and end; a new health leader reads every device). In a worker thread the
loop gets the GIL back within the interpreter's switch interval (5 ms). And a
directory edit changes a row or two: :class:`Reused` keeps what the last read
of a table parsed, so that only the rows that changed are parsed again.

Alert rows are the exception (:func:`parse_rows_in_turns`): a worker thread
parsing thousands of them stalled the alert path as long as the loop did.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
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

    return await off_the_loop_if_many(run, len(rows))


async def off_the_loop_if_many(work: Callable[[], T], rows: int) -> T:
    """``work()`` here for a few rows; in a worker thread for many (the hop costs more than a few)."""
    return work() if rows <= OFF_LOOP_ROWS else await asyncio.to_thread(work)


#: Alert rows parsed per turn of the event loop by :func:`parse_rows_in_turns`: each carries
#: its escalation and context documents (≈ 5 KB of JSON, 30 µs to decode on an idle core,
#: 100 µs on a busy one), so a turn holds the loop for 1 to 3 ms.
ROWS_PER_TURN = 25


async def in_turns(rows: Sequence[Any]) -> AsyncIterator[Sequence[Any]]:
    """``rows`` a turn's worth (:data:`ROWS_PER_TURN`) at a time, the event loop running between turns."""
    for start in range(0, len(rows), ROWS_PER_TURN):
        if start:
            await asyncio.sleep(0)
        yield rows[start : start + ROWS_PER_TURN]


async def parse_rows_in_turns(parse: Callable[[Any], T], rows: Sequence[Any]) -> list[T]:
    """``parse`` applied to every row, letting the event loop run between every few rows.

    For rows that cost so much to parse that thousands of them (a console's
    snapshot in a surge: every open alert) would hold the alerts arriving
    meanwhile for most of a second. A worker thread does not help there: it
    holds the GIL for 5-ms slices whenever the loop waits for I/O, i.e. at
    every step of every alert (measured: docs/performance.md, "A console
    opening in a surge").
    """
    parsed: list[T] = []
    async for turn in in_turns(rows):
        parsed.extend(map(parse, turn))
    return parsed


class Reused:
    """What the last read of each table parsed, by each row's content, to be reused while unchanged.

    Only for immutable results (the directory's frozen models): the same
    object is handed to every later read whose row has the same content. Each
    read replaces the table's entries with its own rows, so a row deleted or
    changed is forgotten at the next read.
    """

    def __init__(self) -> None:
        self._tables: dict[str, dict[Hashable, Any]] = {}

    async def parse(
        self,
        table: str,
        parse: Callable[[Any], T],
        rows: Sequence[Any],
        *,
        content: Callable[[Any], Hashable],
    ) -> list[T]:
        """``parse`` applied to the rows whose ``content`` the last read of ``table`` did not have."""
        known = self._tables.get(table, {})

        def run() -> tuple[list[T], dict[Hashable, T]]:
            parsed: list[T] = []
            fresh: dict[Hashable, T] = {}
            for row in rows:
                key = content(row)
                obj = known.get(key)
                if obj is None:
                    obj = parse(row)
                fresh[key] = obj
                parsed.append(obj)
            return parsed, fresh

        parsed, fresh = await off_the_loop_if_many(run, len(rows))
        self._tables[table] = fresh
        return parsed
