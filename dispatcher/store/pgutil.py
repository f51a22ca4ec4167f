"""What the PostgreSQL store's modules share: instants, command tags, the alert columns, and the
base of PostgresStore's mixins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
T = TypeVar("T")
_ALERT_COLUMNS = "id, device_id, kind, seq, received_at, gesture, fix, state, escalation, context, version"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    """The text form SqliteStore returns for instants (UTC, ``+00:00``)."""
    return None if value is None else value.astimezone(UTC).isoformat()


def _utc(value: datetime) -> datetime:
    """Naive datetimes are local time, as SqliteStore's ``astimezone`` reads them."""
    return value.astimezone(UTC)


def _status_count(status: str) -> int:
    """Rows affected, from a command tag such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresMixin:
    """Base of a concern's mixin: what it uses of PostgresStore's pool (for mypy only)."""

    if TYPE_CHECKING:

        async def _tx(self, work: Callable[[Conn], Awaitable[T]]) -> T: ...
        async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...
        async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None: ...
