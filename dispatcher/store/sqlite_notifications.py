"""SQLite side of the notifications (mixed into SqliteStore).

Sends and their claims, the provider's answers and status callbacks, the
reconciliation of rows in doubt, inbound SMS ids and the provider records we
disowned. Kept apart from :mod:`dispatcher.store.sqlite` so that each file
stays small.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from dispatcher.alerting import status_order
from dispatcher.store.base import PROVIDER_PENDING_STATUSES, NotificationRecord, ReconcileRow
from dispatcher.store.sqliteutil import SqliteMixin, _iso, utcnow

_NOTIFICATION_COLUMNS = (
    "id, alert_id, contact_id, contact_name, phone, channel, purpose, tier, round, status,"
    " provider_sid, error, attempts, duress, actor"
)


class SqliteNotifications(SqliteMixin):
    """Notification rows over SqliteStore's connection."""

    def _notification(self, row: sqlite3.Row) -> NotificationRecord:
        record = NotificationRecord(*(row[k] for k in _NOTIFICATION_COLUMNS.replace(" ", "").split(",")))
        return replace(record, duress=bool(record.duress))  # SQLite stores booleans as integers

    async def claim_notifications(
        self, owner: str, *, ids: Sequence[int] | None = None, lease_s: float = 30.0, now: float
    ) -> list[NotificationRecord]:
        """Mark pending notifications as being sent by ``owner`` and return them.

        Once claimed, a crash leaves the row 'sending': we then cannot know
        whether the provider received it, so it is never re-sent blindly.

        The claim is committed without fsync (see ``_atomic``): it precedes
        every first provider request, and the alert's own commit already paid
        for one fsync. A process crash keeps it; only a power loss can revert
        it to 'pending' (and the row be sent again) - docs/lifecycle.md.
        """
        where = "status='pending'"
        params: list[Any] = []
        if ids is not None:
            where += f" AND id IN ({','.join('?' * len(ids))})"
            params.extend(ids)

        def claim(tx: sqlite3.Connection) -> list[NotificationRecord]:
            sql = f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE {where}"
            rows = [self._notification(r) for r in tx.execute(sql, params).fetchall()]
            tx.executemany(
                "UPDATE notifications SET status='sending', lease_owner=?, lease_until=?,"
                " attempts=attempts+1, updated_at=? WHERE id=?",
                [(owner, now + lease_s, _iso(utcnow()), r.id) for r in rows],
            )
            return rows

        return await self._atomic(claim, power_safe=False)

    async def record_notification(
        self, notification_id: int, *, status: str, provider_sid: str | None = None, error: str | None = None
    ) -> None:
        """Store what the provider answered for one notification."""
        async with self._tx() as tx:
            await tx.execute(
                "UPDATE notifications SET status=?, provider_sid=COALESCE(?, provider_sid), error=?,"
                " lease_owner=NULL, lease_until=NULL, updated_at=? WHERE id=?",
                (status, provider_sid, error, _iso(utcnow()), notification_id),
            )

    async def record_notifications(self, rows: Sequence[tuple[int, str, str | None, str | None]]) -> None:
        """Several outcomes ``(id, status, provider_sid, error)`` in ONE transaction (group commit).

        Read and written in that transaction: a status never goes back
        (:mod:`dispatcher.alerting.status_order`), whichever of the send's answer
        and the provider's callbacks comes last.
        """
        outcomes = [status_order.Outcome(*row) for row in rows]
        ids = sorted({o.id for o in outcomes})
        if not ids:
            return
        now = _iso(utcnow())

        def record(tx: sqlite3.Connection) -> None:
            current = {
                int(r["id"]): status_order.Row(
                    r["status"], r["provider_sid"], r["error"], r["lease_owner"] is not None
                )
                for r in tx.execute(
                    "SELECT id, status, provider_sid, error, lease_owner FROM notifications"
                    f" WHERE id IN ({','.join('?' * len(ids))})",
                    ids,
                )
            }
            plan = status_order.writes(current, outcomes)
            tx.executemany(
                "UPDATE notifications SET status=?, provider_sid=?, error=?,"
                " lease_owner=NULL, lease_until=NULL, updated_at=? WHERE id=?",
                [(r.status, r.provider_sid, r.error, now, nid) for nid, r in plan.recorded],
            )
            tx.executemany(
                "UPDATE notifications SET provider_sid=? WHERE id=?", [(sid, nid) for nid, sid in plan.sids]
            )

        await self._atomic(record, urgent=False)

    async def notification_by_sid(self, sid: str) -> NotificationRecord | None:
        row = await self._one(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE provider_sid=?", (sid,)
        )
        return None if row is None else self._notification(row)

    async def notifications_for(self, alert_id: str) -> list[NotificationRecord]:
        rows = await self._all(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE alert_id=? ORDER BY id", (alert_id,)
        )
        return [self._notification(r) for r in rows]

    async def mark_notification(
        self, notification_id: int, *, status: str, owner: str, lease_until: float, error: str | None
    ) -> None:
        """Move a claimed row between 'sending' and 'retry_wait', renewing its lease."""
        async with self._tx() as tx:
            await tx.execute(
                "UPDATE notifications SET status=?, lease_owner=?, lease_until=?, error=COALESCE(?, error),"
                " updated_at=? WHERE id=?",
                (status, owner, lease_until, error, _iso(utcnow()), notification_id),
            )

    async def abandoned_notifications(self, now: float, owner: str | None = None) -> list[NotificationRecord]:
        """Rows left 'sending' or 'retry_wait' by a crashed owner.

        A lease that ran out marks a dead owner; so does ``owner`` itself when
        an instance restarts under the same id (it has claimed nothing yet, but
        its previous life's leases may still run for up to 30 s).
        """
        rows = await self._all(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE status IN ('sending', 'retry_wait')"
            " AND (lease_until<? OR lease_owner=?)",
            (now, owner),
        )
        return [self._notification(r) for r in rows]

    async def active_alert_for_phone(self, phone: str, states: Sequence[str]) -> str | None:
        """Most recent alert in ``states`` that notified ``phone`` (for SMS replies)."""
        marks = ",".join("?" * len(states))
        row = await self._one(
            f"SELECT n.alert_id FROM notifications n JOIN alerts a ON a.id=n.alert_id "
            f"WHERE n.phone=? AND a.state IN ({marks}) AND n.purpose='alert' ORDER BY n.id DESC LIMIT 1",
            (phone, *states),
        )
        return None if row is None else str(row["alert_id"])

    async def notifications_to_reconcile(
        self, *, stuck_before: datetime, limit: int = 200
    ) -> list[ReconcileRow]:
        """Rows 'unknown', and provider-pending rows unchanged since ``stuck_before`` (oldest first)."""
        marks = ",".join("?" * len(PROVIDER_PENDING_STATUSES))
        columns = ", ".join(f"n.{c.strip()}" for c in _NOTIFICATION_COLUMNS.split(","))
        rows = await self._all(
            f"SELECT {columns}, n.created_at AS n_created, n.updated_at AS n_updated, a.state AS a_state"
            " FROM notifications n JOIN alerts a ON a.id=n.alert_id"
            f" WHERE n.status='unknown' OR (n.status IN ({marks}) AND n.updated_at<?)"
            " ORDER BY n.updated_at LIMIT ?",
            (*PROVIDER_PENDING_STATUSES, _iso(stuck_before), limit),
        )
        return [
            ReconcileRow(
                self._notification(r),
                datetime.fromisoformat(r["n_created"]),
                datetime.fromisoformat(r["n_updated"]),
                str(r["a_state"]),
            )
            for r in rows
        ]

    async def settle_notification(
        self,
        notification_id: int,
        *,
        expected: str,
        status: str,
        provider_sid: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Compare-and-set of a row's status (see the protocol)."""

        def settle(tx: sqlite3.Connection) -> bool:
            cursor = tx.execute(
                "UPDATE notifications SET status=?, provider_sid=COALESCE(?, provider_sid), error=?,"
                " lease_owner=NULL, lease_until=NULL, updated_at=? WHERE id=? AND status=?",
                (status, provider_sid, error, _iso(utcnow()), notification_id, expected),
            )
            return cursor.rowcount == 1

        return await self._atomic(settle, urgent=False)

    async def open_alerts_for_phone(self, phone: str, states: Sequence[str]) -> list[str]:
        """Alerts in ``states`` that sent ``phone`` an alert notification, most recent first."""
        marks = ",".join("?" * len(states))
        rows = await self._all(
            f"SELECT n.alert_id, MAX(n.id) AS last FROM notifications n JOIN alerts a ON a.id=n.alert_id "
            f"WHERE n.phone=? AND a.state IN ({marks}) AND n.purpose='alert' "
            f"GROUP BY n.alert_id ORDER BY last DESC",
            (phone, *states),
        )
        return [str(r["alert_id"]) for r in rows]

    async def claim_inbound_message(self, sid: str, at: datetime) -> bool:
        """Remember a provider message id; False when it was already seen (a replayed webhook)."""
        async with self._tx() as tx:
            cur = await tx.execute(
                "INSERT OR IGNORE INTO inbound_messages(sid, at) VALUES (?, ?)", (sid, _iso(at))
            )
            return cur.rowcount == 1

    async def forget_inbound_messages(self, before: datetime) -> int:
        """Forget the provider message ids claimed before ``before``; how many (retention)."""
        async with self._tx() as tx:
            cur = await tx.execute("DELETE FROM inbound_messages WHERE at < ?", (_iso(before),))
            return cur.rowcount

    async def notifications_in_doubt(self, channel: str, phone: str) -> list[int]:
        rows = await self._all(
            "SELECT id FROM notifications WHERE phone=? AND channel=? AND provider_sid IS NULL"
            " AND status IN ('sending', 'unknown') ORDER BY id",
            (phone, channel),
        )
        return [int(r["id"]) for r in rows]

    async def disown_provider_records(self, sids: Sequence[str], at: datetime) -> None:
        async with self._tx() as tx:
            await tx.executemany(
                "INSERT OR IGNORE INTO disowned_provider_records(sid, at) VALUES (?, ?)",
                [(sid, _iso(at)) for sid in sids],
            )

    async def disowned_provider_records(self, sids: Sequence[str]) -> set[str]:
        if not sids:
            return set()
        marks = ",".join("?" * len(sids))
        rows = await self._all(
            f"SELECT sid FROM disowned_provider_records WHERE sid IN ({marks})", tuple(sids)
        )
        return {str(r["sid"]) for r in rows}
