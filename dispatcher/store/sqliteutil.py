"""What the SQLite store's modules share: instants as ISO text, JSON documents as text, and
the base of SqliteStore's mixins."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class SqliteMixin:
    """Base of a concern's mixin: what it uses of SqliteStore's connection core (for mypy only)."""

    if TYPE_CHECKING:

        def _tx(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...
        async def _atomic(
            self, work: Callable[[sqlite3.Connection], T], *, power_safe: bool = True, urgent: bool = True
        ) -> T: ...
        async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None: ...
        async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]: ...
        async def _all_in_pages(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]: ...
