"""Stored alerts → API models: summaries, details and the French timeline.

Shared by the REST routers, the console WebSocket and the incident report.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dispatcher.api.schemas import (
    AlertDetail,
    AlertSummary,
    DevicePublic,
    LocationPublic,
    NotePublic,
    NotificationPublic,
    PractitionerPublic,
    TimelineEntry,
)
from dispatcher.domain import Practitioner
from dispatcher.store.base import PURGED_LOCATION, AlertRecord, NoteRecord, NotificationRecord, Store

OPEN_STATES = frozenset({"received", "notifying", "duress", "acknowledged"})
_VIA = {"sms": "réponse SMS", "voice": "touche 1 au téléphone", "console": "console"}
_CHANNEL = {"sms": "SMS", "voice": "Appel"}
_PURPOSE = {
    "alert": "alerte",
    "cancelled": "fin d'alerte (annulée par le praticien)",
    "false_alarm": "fin d'alerte (fausse alerte)",
    "resolved": "avis de clôture",
    "duress_notice": "avis de contrainte",
    "ack_notice": "avis de prise en charge",
    "test": "test",
}
_STATUS = {
    "pending": "en attente",
    "sending": "en cours d'envoi",
    "queued": "accepté par l'opérateur télécom",
    "sent": "envoyé",
    "delivered": "remis",
    "completed": "appel terminé",
    "in-progress": "appel en cours",
    "ringing": "sonne",
    "failed": "échec",
    "undelivered": "non remis",
    "no-answer": "pas de réponse",
    "busy": "occupé",
    "canceled": "annulé",
    "unknown": "incertain (arrêt du dispatcher)",
}


def _escalation(record: AlertRecord) -> dict[str, Any]:
    return record.escalation or {}


def _context(record: AlertRecord) -> dict[str, Any]:
    return record.context or {}


def contact_name(record: AlertRecord, contact_id: str | None) -> str | None:
    """A contact id of the plan → its name; other strings (console users) as they are."""
    if contact_id is None:
        return None
    for tier in (_escalation(record).get("plan") or {}).get("tiers", []):
        for r in tier.get("recipients", []):
            if r.get("contact_id") == contact_id:
                return f"{r.get('name')} ({r.get('unit_name') or r.get('unit_id') or ''})".replace(" ()", "")
    return contact_id


def summary(record: AlertRecord) -> AlertSummary:
    ctx, esc = _context(record), _escalation(record)
    practitioner = ctx.get("practitioner") or {}
    site = ctx.get("site") or {}
    location = ctx.get("location") or {}
    name = f"Dr {practitioner.get('first_name')} {practitioner.get('last_name')}" if practitioner else None
    acked, taken = esc.get("acked_by"), esc.get("taken_over_by")
    return AlertSummary(
        id=record.id,
        kind=record.kind,
        state=record.state,
        received_at=record.received_at,
        device_id=record.device_id,
        practitioner_id=practitioner.get("id"),
        practitioner_name=name,
        site_name=site.get("name"),
        site_kind=site.get("kind"),
        convention_name=ctx.get("convention_name"),
        location_source=location.get("source"),
        stale=bool(location.get("stale")),
        duress=bool(esc.get("duress")),
        acked_by=contact_name(record, acked),
        taken_over_by=taken,
        closed_by=esc.get("closed_by"),
        exhausted=bool(esc.get("exhausted")),
        needs_attention=(
            record.kind == "alert"
            and record.state in {"received", "notifying", "duress"}
            and not acked
            and not taken
        ),
    )


def _event_text(record: AlertRecord, kind: str, d: dict[str, Any]) -> str:
    by = contact_name(record, d.get("by"))
    match kind:
        case "received":
            return f"Alerte reçue de la balise (geste : {d.get('gesture', '?')})"
        case "located":
            return f"Localisée ({d.get('source', '?')}) : {d.get('description', '')}"
        case "routed":
            notes = " ".join(d.get("notes") or [])
            return f"Routée vers : {d.get('convention') or 'aucune convention'}. {notes}".strip()
        case "Acknowledged":
            return f"Prise en charge par {by} ({_VIA.get(d.get('via', ''), d.get('via', ''))})"
        case "AckTimeout":
            return f"Pas de prise en charge au palier {int(d.get('tier', 0)) + 1} : escalade"
        case "DeliveryFailed":
            return f"Échec {_CHANNEL.get(d.get('channel', ''), d.get('channel'))} vers {d.get('contact_id')}"
        case "Cancelled":
            if d.get("duress"):
                return "ANNULATION SOUS CONTRAINTE depuis la balise : l'alerte continue"
            return "Annulée depuis la balise (code correct)"
        case "Resolved":
            return f"Clôturée par {by}"
        case "MarkedFalseAlarm":
            return f"Déclarée fausse alerte par {by}"
        case "OperatorTookOver":
            return f"Prise en main manuelle par {by} : escalade automatique arrêtée"
        case "operator_alarm":
            return f"Alarme opérateur : {d.get('reason', '')}"
    return kind


def _notification_entries(
    n: NotificationRecord, times: tuple[datetime, datetime] | None
) -> list[TimelineEntry]:
    if times is None:
        return []
    created, updated = times
    what = f"{_CHANNEL.get(n.channel, n.channel)} ({_PURPOSE.get(n.purpose, n.purpose)})"
    detail = {"notification_id": n.id, "tier": n.tier, "round": n.round, "channel": n.channel}
    entries = [
        TimelineEntry(
            at=created,
            kind="notification",
            text=f"{what} → {n.contact_name} {n.phone} (palier {n.tier + 1})",
            source="notification",
            detail=detail,
        )
    ]
    if n.status not in ("pending", "sending"):
        status = _STATUS.get(n.status, n.status)
        error = f" — {n.error}" if n.error else ""
        entries.append(
            TimelineEntry(
                at=updated,
                kind=f"notification.{n.status}",
                text=f"{what} → {n.contact_name} : {status}{error}",
                source="notification",
                detail=detail,
            )
        )
    return entries


def timeline(
    record: AlertRecord,
    events: list[dict[str, Any]],
    notifications: list[NotificationRecord],
    times: dict[int, tuple[datetime, datetime]],
    notes: list[NoteRecord],
) -> list[TimelineEntry]:
    """Events, notifications (sent, then their last status) and notes, in time order."""
    entries = [
        TimelineEntry(
            at=datetime.fromisoformat(e["at"]),
            kind=e["kind"],
            text=_event_text(record, e["kind"], e["detail"]),
            source="event",
            detail=e["detail"],
        )
        for e in events
    ]
    for n in notifications:
        entries += _notification_entries(n, times.get(n.id))
    entries += [
        TimelineEntry(at=note.at, kind="note", text=f"Note de {note.author} : {note.text}", source="note")
        for note in notes
    ]
    return sorted(entries, key=lambda e: e.at)


def _location(record: AlertRecord) -> LocationPublic | None:
    raw = _context(record).get("location")
    if not raw:
        return None
    return LocationPublic.model_validate({**raw, "purged": raw.get("description") == PURGED_LOCATION})


async def detail(store: Store, record: AlertRecord) -> AlertDetail:
    """Everything about one alert (includes its location: audit the read)."""
    ctx, esc = _context(record), _escalation(record)
    events = await store.alert_events(record.id)
    notifications = await store.notifications_for(record.id)
    times = await store.notification_times(record.id)
    notes = await store.notes_for(record.id)
    practitioner = (
        PractitionerPublic.of(Practitioner.model_validate(ctx["practitioner"]))
        if ctx.get("practitioner")
        else None
    )
    return AlertDetail(
        **summary(record).model_dump(),
        practitioner=practitioner,
        site=ctx.get("site"),
        device=DevicePublic.model_validate(ctx["device"]) if ctx.get("device") else None,
        location=_location(record),
        tier=int(esc.get("tier", 0)),
        round=int(esc.get("round", 0)),
        timeline=timeline(record, events, notifications, times, notes),
        notifications=[
            NotificationPublic(
                id=n.id,
                contact_id=n.contact_id,
                contact_name=n.contact_name,
                phone=n.phone,
                channel=n.channel,  # type: ignore[arg-type]
                purpose=n.purpose,
                tier=n.tier,
                round=n.round,
                status=n.status,
                error=n.error,
                attempts=n.attempts,
                created_at=times.get(n.id, (None, None))[0],
                updated_at=times.get(n.id, (None, None))[1],
            )
            for n in notifications
        ],
        notes=[NotePublic(id=n.id, at=n.at, author=n.author, text=n.text) for n in notes],
    )
