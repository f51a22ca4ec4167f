"""SQLite side of the responder links (mixed into SqliteStore).

Only the SHA-256 of a link's token is stored (``responder_links.token_hash``):
a copy of the database opens no responder page.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from dispatcher.store.base import LinkSpec, NotFound, ResponderLink, Transition

T = TypeVar("T")
#: The link and its alert's state, by hash (both stores; the placeholder is appended).
SELECT_LINK = (
    "SELECT l.token_hash, l.alert_id, l.contact_id, l.created_at, a.state AS alert_state,"
    " a.updated_at AS alert_updated_at FROM responder_links l JOIN alerts a ON a.id = l.alert_id"
    " WHERE l.token_hash="
)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def insert_links(tx: sqlite3.Connection, alert_id: str, links: Iterable[LinkSpec], now: str) -> None:
    """Inside a write transaction: the links of ``alert_id`` (a hash already stored is kept)."""
    tx.executemany(
        "INSERT INTO responder_links(token_hash, alert_id, contact_id, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (token_hash) DO NOTHING",
        [(link.token_hash, alert_id, link.contact_id, now) for link in links],
    )


def insert_transition_links(tx: sqlite3.Connection, t: Transition) -> None:
    """The links a transition minted, in its own transaction."""
    if t.links:
        insert_links(tx, t.alert_id, t.links, _now())


class SqliteResponders:
    """``add_responder_link`` and ``responder_link`` for SqliteStore."""

    if TYPE_CHECKING:

        async def _atomic(
            self, work: Callable[[sqlite3.Connection], T], *, power_safe: bool = True, urgent: bool = True
        ) -> T: ...
        async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None: ...

    async def add_responder_link(self, alert_id: str, link: LinkSpec) -> None:
        def run(tx: sqlite3.Connection) -> None:
            if tx.execute("SELECT 1 FROM alerts WHERE id=?", (alert_id,)).fetchone() is None:
                raise NotFound(f"alert {alert_id!r} does not exist")
            insert_links(tx, alert_id, [link], _now())

        await self._atomic(run)

    async def responder_link(self, token_hash: str) -> ResponderLink | None:
        row = await self._one(SELECT_LINK + "?", (token_hash,))
        if row is None:
            return None
        times = {k: datetime.fromisoformat(row[k]) for k in ("created_at", "alert_updated_at")}
        return ResponderLink(**{**dict(row), **times})
