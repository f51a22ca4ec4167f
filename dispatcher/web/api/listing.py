"""The directory's lists at national scale: one page, searched and counted, the event loop free.

A national directory holds 100,000 practitioners and tens of thousands of sites: a
list read whole held the event loop close to a second, and sent megabytes to a
screen that shows a few dozen rows. A list is now one page in id order, ``limit``
rows at most, with ``q`` keeping those whose name, id (or address, RPPS) hold its
words; how many the user sees in all goes in ``X-Total-Count``. The rows are
scanned in slices, the loop running between them, so alerts go through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Query, Response

from dispatcher.directory import search
from dispatcher.directory.snapshot import DirectorySnapshot, Listed
from dispatcher.domain import Device, Practitioner, Site

T = TypeVar("T", Practitioner, Site, Device)

#: Rows a list sends at most, by default (its ``limit``).
PAGE = 1000
#: Rows scanned per turn of the event loop (a few ms of tests on an idle core).
_SLICE = 500

Limit = Annotated[int, Query(ge=1, le=10_000, description="Rows sent at most (by id)")]
Search = Annotated[
    str | None,
    Query(min_length=1, max_length=100, description="Words each row's name or id holds (any case, accent)"),
]


async def listed(snapshot: DirectorySnapshot, memo: str) -> Listed[Any]:
    """The snapshot's listing ``memo`` (``practitioners_listed``, ``sites_listed``); its first
    making (100,000 names folded) is done in a worker thread, not on the loop."""
    if memo not in vars(snapshot):
        await asyncio.to_thread(getattr, snapshot, memo)
    rows: Listed[Any] = getattr(snapshot, memo)
    return rows


async def matching(rows: Listed[T], visible: Callable[[T], bool], q: str | None) -> list[T]:
    """Every row the user sees and ``q`` finds, in the listing's order; scanned in slices."""
    wanted = search.words(q) if q else ()
    found: list[T] = []
    for start in range(0, len(rows.records), _SLICE):
        if start:
            await asyncio.sleep(0)  # alerts go through between slices
        end = start + _SLICE
        for text, row in zip(rows.texts[start:end], rows.records[start:end], strict=True):
            if search.holds(text, wanted) and visible(row):
                found.append(row)
    return found


async def page(
    rows: Listed[T],
    visible: Callable[[T], bool],
    *,
    q: str | None,
    limit: int,
    response: Response,
) -> list[T]:
    """The first ``limit`` rows the user sees and ``q`` finds, in the listing's order; how many
    there are in all in ``X-Total-Count``."""
    found = await matching(rows, visible, q)
    response.headers["X-Total-Count"] = str(len(found))
    return found[:limit]
