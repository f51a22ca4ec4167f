"""PostgreSQL side of the notifications (mixed into PostgresStore).

Same semantics as :mod:`dispatcher.store.sqlite_notifications`; pending rows
are claimed with ``FOR UPDATE SKIP LOCKED``, so two instances never claim the
same row, and no transaction is held across a provider call.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from dispatcher.alerting import status_order
from dispatcher.store.base import PROVIDER_PENDING_STATUSES, NotificationRecord, ReconcileRow
from dispatcher.store.pgutil import Conn, PostgresMixin, _status_count, _utc, utcnow

_NOTIFICATION_COLUMNS = (
    "id, alert_id, contact_id, contact_name, phone, channel, purpose, tier, round, status,"
    " provider_sid, error, attempts, duress, actor"
)


class PostgresNotifications(PostgresMixin):
    """Notification rows over PostgresStore's pool."""

    @staticmethod
    def _notification(row: asyncpg.Record) -> NotificationRecord:
        return NotificationRecord(*(row[k] for k in _NOTIFICATION_COLUMNS.replace(" ", "").split(",")))

    async def claim_notifications(
        self, owner: str, *, ids: Sequence[int] | None = None, lease_s: float = 30.0, now: float
    ) -> list[NotificationRecord]:
        """Mark pending notifications as being sent by ``owner`` and return them.

        ``FOR UPDATE SKIP LOCKED``: rows another instance is claiming right now
        are skipped, rows it already claimed are no longer 'pending' when the
        lock is taken (re-checked), so a row is claimed once. The rows are
        returned as they were before the claim, as SqliteStore does.
        """
        where = "status='pending'" if ids is None else "status='pending' AND id = ANY($4::bigint[])"
        sql = (
            f"WITH c AS (SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE {where}"
            " ORDER BY id FOR UPDATE SKIP LOCKED)"
            " UPDATE notifications n SET status='sending', lease_owner=$1, lease_until=$2,"
            " attempts=n.attempts+1, updated_at=$3 FROM c WHERE n.id=c.id"
            f" RETURNING {', '.join('c.' + col.strip() for col in _NOTIFICATION_COLUMNS.split(','))}"
        )
        args: list[Any] = [owner, now + lease_s, utcnow()]
        if ids is not None:
            args.append(list(ids))

        async def claim(conn: Conn) -> list[asyncpg.Record]:
            # The claim precedes every first provider request: no wait for the WAL
            # flush here (as SqliteStore's synchronous=NORMAL claim). A server
            # crash may lose it - the row is then 'pending' again and sent after
            # recovery, possibly twice; see docs/lifecycle.md.
            await conn.execute("SET LOCAL synchronous_commit = off")
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows

        rows = await self._tx(claim)
        return sorted((self._notification(r) for r in rows), key=lambda n: n.id)

    async def record_notification(
        self, notification_id: int, *, status: str, provider_sid: str | None = None, error: str | None = None
    ) -> None:
        """Store what the provider answered for one notification."""
        await self._tx(
            lambda c: c.execute(
                "UPDATE notifications SET status=$1, provider_sid=COALESCE($2, provider_sid), error=$3,"
                " lease_owner=NULL, lease_until=NULL, updated_at=$4 WHERE id=$5",
                status,
                provider_sid,
                error,
                utcnow(),
                notification_id,
            )
        )

    async def notification_by_sid(self, sid: str) -> NotificationRecord | None:
        row = await self._fetchrow(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE provider_sid=$1", sid
        )
        return None if row is None else self._notification(row)

    async def notifications_for(self, alert_id: str) -> list[NotificationRecord]:
        rows = await self._fetch(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE alert_id=$1 ORDER BY id", alert_id
        )
        return [self._notification(r) for r in rows]

    async def record_notifications(self, rows: Sequence[tuple[int, str, str | None, str | None]]) -> None:
        """Several outcomes ``(id, status, provider_sid, error)`` in one transaction (group commit).

        The rows are locked (``FOR UPDATE``, in id order) and read first: a
        status never goes back (:mod:`dispatcher.alerting.status_order`), whichever
        of the send's answer and the provider's callbacks, on any instance, comes last.
        """
        outcomes = [status_order.Outcome(*row) for row in rows]
        ids = sorted({o.id for o in outcomes})
        if not ids:
            return
        now = utcnow()

        async def record(c: Conn) -> None:
            locked = await c.fetch(
                "SELECT id, status, provider_sid, error, lease_owner FROM notifications"
                " WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",
                ids,
            )
            current = {
                int(r["id"]): status_order.Row(
                    r["status"], r["provider_sid"], r["error"], r["lease_owner"] is not None
                )
                for r in locked
            }
            plan = status_order.writes(current, outcomes)
            if plan.recorded:
                await c.executemany(
                    "UPDATE notifications SET status=$1, provider_sid=$2, error=$3,"
                    " lease_owner=NULL, lease_until=NULL, updated_at=$4 WHERE id=$5",
                    [(r.status, r.provider_sid, r.error, now, nid) for nid, r in plan.recorded],
                )
            if plan.sids:
                await c.executemany(
                    "UPDATE notifications SET provider_sid=$1 WHERE id=$2",
                    [(sid, nid) for nid, sid in plan.sids],
                )

        await self._tx(record)

    async def mark_notification(
        self, notification_id: int, *, status: str, owner: str, lease_until: float, error: str | None
    ) -> None:
        """Move a claimed row between 'sending' and 'retry_wait', renewing its lease."""
        await self._tx(
            lambda c: c.execute(
                "UPDATE notifications SET status=$1, lease_owner=$2, lease_until=$3,"
                " error=COALESCE($4, error), updated_at=$5 WHERE id=$6",
                status,
                owner,
                lease_until,
                error,
                utcnow(),
                notification_id,
            )
        )

    async def abandoned_notifications(self, now: float, owner: str | None = None) -> list[NotificationRecord]:
        """Rows left 'sending' or 'retry_wait' by a crashed owner (lease run out, or ``owner`` itself)."""
        rows = await self._fetch(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE status IN ('sending', 'retry_wait')"
            " AND (lease_until<$1 OR lease_owner=$2) ORDER BY id",
            now,
            owner,
        )
        return [self._notification(r) for r in rows]

    async def active_alert_for_phone(self, phone: str, states: Sequence[str]) -> str | None:
        """Most recent alert in ``states`` that notified ``phone`` (for SMS replies)."""
        row = await self._fetchrow(
            "SELECT n.alert_id FROM notifications n JOIN alerts a ON a.id=n.alert_id"
            " WHERE n.phone=$1 AND a.state = ANY($2::text[]) AND n.purpose='alert'"
            " ORDER BY n.id DESC LIMIT 1",
            phone,
            list(states),
        )
        return None if row is None else str(row["alert_id"])

    async def notifications_to_reconcile(
        self, *, stuck_before: datetime, limit: int = 200
    ) -> list[ReconcileRow]:
        """Rows 'unknown', and provider-pending rows unchanged since ``stuck_before`` (oldest first)."""
        columns = ", ".join(f"n.{c.strip()}" for c in _NOTIFICATION_COLUMNS.split(","))
        rows = await self._fetch(
            f"SELECT {columns}, n.created_at AS n_created, n.updated_at AS n_updated, a.state AS a_state"
            " FROM notifications n JOIN alerts a ON a.id=n.alert_id"
            " WHERE n.status='unknown' OR (n.status = ANY($1::text[]) AND n.updated_at<$2)"
            " ORDER BY n.updated_at LIMIT $3",
            list(PROVIDER_PENDING_STATUSES),
            stuck_before,
            limit,
        )
        return [
            ReconcileRow(self._notification(r), r["n_created"], r["n_updated"], str(r["a_state"]))
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
        done = await self._tx(
            lambda c: c.execute(
                "UPDATE notifications SET status=$1, provider_sid=COALESCE($2, provider_sid), error=$3,"
                " lease_owner=NULL, lease_until=NULL, updated_at=$4 WHERE id=$5 AND status=$6",
                status,
                provider_sid,
                error,
                utcnow(),
                notification_id,
                expected,
            )
        )
        return str(done).endswith(" 1")

    async def open_alerts_for_phone(self, phone: str, states: Sequence[str]) -> list[str]:
        """Alerts in ``states`` that sent ``phone`` an alert notification, most recent first."""
        rows = await self._fetch(
            "SELECT n.alert_id, MAX(n.id) AS last FROM notifications n JOIN alerts a ON a.id=n.alert_id"
            " WHERE n.phone=$1 AND a.state = ANY($2::text[]) AND n.purpose='alert'"
            " GROUP BY n.alert_id ORDER BY last DESC",
            phone,
            list(states),
        )
        return [str(r["alert_id"]) for r in rows]

    async def claim_inbound_message(self, sid: str, at: datetime) -> bool:
        """Remember a provider message id; False when it was already seen (a replayed webhook)."""
        status = await self._tx(
            lambda c: c.execute(
                "INSERT INTO inbound_messages(sid, at) VALUES ($1, $2) ON CONFLICT (sid) DO NOTHING",
                sid,
                _utc(at),
            )
        )
        return _status_count(status) == 1

    async def forget_inbound_messages(self, before: datetime) -> int:
        """Forget the provider message ids claimed before ``before``; how many (retention)."""
        status = await self._tx(
            lambda c: c.execute("DELETE FROM inbound_messages WHERE at < $1", _utc(before))
        )
        return _status_count(status)

    async def notifications_in_doubt(self, channel: str, phone: str) -> list[int]:
        rows = await self._fetch(
            "SELECT id FROM notifications WHERE phone=$1 AND channel=$2 AND provider_sid IS NULL"
            " AND status IN ('sending', 'unknown') ORDER BY id",
            phone,
            channel,
        )
        return [int(r["id"]) for r in rows]

    async def disown_provider_records(self, sids: Sequence[str], at: datetime) -> None:
        await self._tx(
            lambda c: c.executemany(
                "INSERT INTO disowned_provider_records(sid, at) VALUES ($1, $2) ON CONFLICT (sid) DO NOTHING",
                [(sid, _utc(at)) for sid in sids],
            )
        )

    async def disowned_provider_records(self, sids: Sequence[str]) -> set[str]:
        if not sids:
            return set()
        rows = await self._fetch(
            "SELECT sid FROM disowned_provider_records WHERE sid = ANY($1::text[])", list(sids)
        )
        return {str(r["sid"]) for r in rows}
