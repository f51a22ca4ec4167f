"""The audit trail: who read whose location, who acted on an alert, who changed the configuration.

Entries are appended through :class:`Auditor` and can never be changed or
deleted: there is no such API, and the SQLite schema has triggers that abort
any UPDATE or DELETE on ``audit_log``. Admins read it through ``GET /api/audit``.
"""

from __future__ import annotations

from typing import Any

from dispatcher.store.base import AccessStore
from dispatcher.web.auth import User

# Action names, stable strings (they are filtered on).
LOGIN = "auth.login"
LOGIN_FAILED = "auth.login_failed"
LOGOUT = "auth.logout"
ALERT_LOCATION_READ = "alert.location.read"
ALERT_ACKNOWLEDGE = "alert.acknowledge"
ALERT_RESOLVE = "alert.resolve"
ALERT_FALSE_ALARM = "alert.false_alarm"
ALERT_TAKE_OVER = "alert.take_over"
ALERT_NOTE = "alert.note"
ALERT_REPORT = "alert.report"
STATS_EXPORT = "stats.export"
CONFIG_CHANGE = "config.change"
VISIT_CHANGE = "visit.change"
OPERATOR_ALARM_HANDLED = "operator_alarm.handled"
VISIT_READ = "visit.read"  # staff reading home visits (addresses, door codes)
RETENTION_PURGE = "retention.purge"
# The responder page (/r/<token>): who is the contact the link was sent to.
RESPONDER_OPEN = "responder.open"
RESPONDER_ACKNOWLEDGE = "responder.acknowledge"
RESPONDER_ON_SITE = "responder.on_site"
RESPONDER_REFUSED = "responder.refused"  # unknown, forged, expired or malformed link (reason in detail)


class Auditor:
    """Appends audit entries on behalf of a user (or of the system when ``user`` is None)."""

    def __init__(self, store: AccessStore) -> None:
        self._store = store

    async def record(
        self,
        user: User | None,
        action: str,
        *,
        target_kind: str | None = None,
        target_id: str | None = None,
        ip: str | None = None,
        **detail: Any,
    ) -> None:
        """Append one entry; ``detail`` must be JSON-able and must not hold secrets."""
        who = (user.id, user.username) if user else (None, None)
        await self._append(who, action, target_kind, target_id, ip, detail)

    async def record_contact(
        self, contact_id: str, action: str, *, target_kind: str, target_id: str, ip: str | None, **detail: Any
    ) -> None:
        """Append one entry on behalf of a responder without an account: ``who`` is the contact's id."""
        await self._append(
            (None, contact_id), action, target_kind, target_id, ip, {"who": "contact", **detail}
        )

    async def _append(
        self,
        who: tuple[int | None, str | None],
        action: str,
        target_kind: str | None,
        target_id: str | None,
        ip: str | None,
        detail: dict[str, Any],
    ) -> None:
        await self._store.append_audit(
            action=action,
            user_id=who[0],
            username=who[1],
            target_kind=target_kind,
            target_id=target_id,
            ip=ip,
            detail=detail,
        )
