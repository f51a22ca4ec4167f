"""PostgreSQL side of the live positions of open alerts (mixed into PostgresStore).

Same semantics as :mod:`dispatcher.store.sqlite_positions`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from dispatcher.store.base import NotFound, PositionFix
from dispatcher.store.pgutil import Conn, _utc

T = TypeVar("T")


class PostgresPositions:
    """Positions over PostgresStore's pool."""

    if TYPE_CHECKING:

        async def _tx(self, work: Callable[[Conn], Awaitable[T]]) -> T: ...
        async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None: ...
        async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...

    async def record_alert_position(self, alert_id: str, fix: PositionFix) -> None:
        async def run(conn: Conn) -> None:
            if await conn.fetchrow("SELECT 1 FROM alerts WHERE id=$1", alert_id) is None:
                raise NotFound(f"alert {alert_id!r} does not exist")
            await conn.execute(
                "INSERT INTO alert_positions(alert_id, lat, lon, accuracy_m, at, received_at)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                alert_id, fix.lat, fix.lon, fix.accuracy_m, _utc(fix.at), _utc(fix.received_at),
            )  # fmt: skip

        await self._tx(run)

    async def latest_alert_positions(self, alert_ids: Sequence[str]) -> dict[str, PositionFix]:
        if not alert_ids:
            return {}
        rows = await self._fetch(
            "SELECT DISTINCT ON (alert_id) alert_id, lat, lon, accuracy_m, at, received_at"
            " FROM alert_positions WHERE alert_id = ANY($1::text[]) ORDER BY alert_id, at DESC, id DESC",
            list(alert_ids),
        )
        return {
            r["alert_id"]: PositionFix(
                r["lat"], r["lon"], r["accuracy_m"], _utc(r["at"]), _utc(r["received_at"])
            )
            for r in rows
        }

    async def latest_alert_position(self, alert_id: str) -> PositionFix | None:
        row = await self._fetchrow(
            "SELECT lat, lon, accuracy_m, at, received_at FROM alert_positions"
            " WHERE alert_id=$1 ORDER BY at DESC, id DESC LIMIT 1",
            alert_id,
        )
        if row is None:
            return None
        at, received_at = _utc(row["at"]), _utc(row["received_at"])
        return PositionFix(row["lat"], row["lon"], row["accuracy_m"], at, received_at)
