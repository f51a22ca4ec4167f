"""PostgreSQL side of the responder links (mixed into PostgresStore); see sqlite_responders.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

from dispatcher.store.base import LinkSpec, NotFound, ResponderLink
from dispatcher.store.sqlite_responders import SELECT_LINK

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
T = TypeVar("T")


async def insert_links(conn: Conn, alert_id: str, links: Iterable[LinkSpec], now: datetime) -> None:
    """Inside a transaction: the links of ``alert_id`` (a hash already stored is kept)."""
    rows = list(links)
    if not rows:
        return
    await conn.execute(
        "INSERT INTO responder_links(token_hash, alert_id, contact_id, created_at)"
        " SELECT h, $1, c, $2 FROM unnest($3::text[], $4::text[]) AS u(h, c)"
        " ON CONFLICT (token_hash) DO NOTHING",
        alert_id,
        now,
        [link.token_hash for link in rows],
        [link.contact_id for link in rows],
    )


class PostgresResponders:
    """``add_responder_link`` and ``responder_link`` for PostgresStore."""

    if TYPE_CHECKING:

        async def _tx(self, work: Callable[[Conn], Awaitable[T]]) -> T: ...
        async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None: ...

    async def add_responder_link(self, alert_id: str, link: LinkSpec) -> None:
        async def run(conn: Conn) -> None:
            if await conn.fetchval("SELECT 1 FROM alerts WHERE id=$1", alert_id) is None:
                raise NotFound(f"alert {alert_id!r} does not exist")
            await insert_links(conn, alert_id, [link], datetime.now(UTC))

        await self._tx(run)

    async def responder_link(self, token_hash: str) -> ResponderLink | None:
        row = await self._fetchrow(SELECT_LINK + "$1", token_hash)
        return None if row is None else ResponderLink(**dict(row))
