"""SQLite side of the live positions of open alerts (mixed into SqliteStore).

Instants are integer microseconds since the epoch (UTC), so that a fix reads
back exactly as written and the index orders them; the latest is the one with
the greatest fix time, then the last inserted.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from dispatcher.store.base import NotFound, PositionFix

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_us(value: datetime) -> int:
    return (value.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _insert(tx: sqlite3.Connection, alert_id: str, fix: PositionFix) -> None:
    if tx.execute("SELECT 1 FROM alerts WHERE id=?", (alert_id,)).fetchone() is None:
        raise NotFound(f"alert {alert_id!r} does not exist")
    tx.execute(
        "INSERT INTO alert_positions(alert_id, lat, lon, accuracy_m, at_us, received_us)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (alert_id, fix.lat, fix.lon, fix.accuracy_m, _to_us(fix.at), _to_us(fix.received_at)),
    )


class SqlitePositions:
    """Positions over SqliteStore's connection."""

    if TYPE_CHECKING:

        async def _atomic(
            self, work: Callable[[sqlite3.Connection], T], *, power_safe: bool = True, urgent: bool = True
        ) -> T: ...
        async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None: ...
        async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]: ...

    async def record_alert_position(self, alert_id: str, fix: PositionFix) -> None:
        # Not power-safe and not urgent: the next fix follows within seconds, and
        # an alert's own transactions must not wait behind a stream of positions.
        await self._atomic(lambda tx: _insert(tx, alert_id, fix), power_safe=False, urgent=False)

    async def latest_alert_positions(self, alert_ids: Sequence[str]) -> dict[str, PositionFix]:
        if not alert_ids:
            return {}
        rows = await self._all(
            "SELECT alert_id, lat, lon, accuracy_m, at_us, received_us FROM (SELECT *, ROW_NUMBER() OVER"
            " (PARTITION BY alert_id ORDER BY at_us DESC, id DESC) AS latest FROM alert_positions"
            " WHERE alert_id IN (SELECT value FROM json_each(?))) WHERE latest = 1",
            (json.dumps(list(alert_ids)),),
        )
        return {
            r["alert_id"]: PositionFix(
                r["lat"], r["lon"], r["accuracy_m"], _from_us(r["at_us"]), _from_us(r["received_us"])
            )
            for r in rows
        }

    async def latest_alert_position(self, alert_id: str) -> PositionFix | None:
        row = await self._one(
            "SELECT lat, lon, accuracy_m, at_us, received_us FROM alert_positions"
            " WHERE alert_id=? ORDER BY at_us DESC, id DESC LIMIT 1",
            (alert_id,),
        )
        if row is None:
            return None
        at, received_at = _from_us(row["at_us"]), _from_us(row["received_us"])
        return PositionFix(row["lat"], row["lon"], row["accuracy_m"], at, received_at)
