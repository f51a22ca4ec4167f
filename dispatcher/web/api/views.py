"""Stored alerts → API models: summaries, details and the French timeline.

Shared by the REST routers, the console WebSocket and the incident report.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from dispatcher.domain import Practitioner
from dispatcher.store.base import PURGED_LOCATION, AlertRecord, NoteRecord, NotificationRecord, Store
from dispatcher.web.api.schemas import (
    AlertDetail,
    AlertSummary,
    DevicePublic,
    LivePositionPublic,
    LocationPublic,
    NotePublic,
    NotificationPublic,
    PractitionerPublic,
    TimelineEntry,
)

OPEN_STATES = frozenset({"received", "notifying", "duress", "acknowledged"})
_VIA = {"sms": "réponse SMS", "voice": "touche 1 au téléphone", "console": "console", "link": "lien de suivi"}
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
_DRILL_RUN = "chaîne réelle déroulée, chaque message commence par « EXERCICE — NE PAS INTERVENIR »"
_DRILL_REFUSED = (
    "Test : la convention n'a pas consenti aux exercices (drills: true) ; seul le praticien est prévenu"
)
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


def hides_duress(record: AlertRecord) -> bool:
    """Under duress and not yet resolved by an operator: she must see a plain cancel."""
    esc = _escalation(record)
    return bool(esc.get("duress")) and record.state != "resolved" and bool(esc.get("cover"))


def hidden_from_practitioner(record: AlertRecord) -> bool:
    """Raised under duress (a visit check answered with her duress code): not hers to see until resolved.

    There is no cancel it could pass for: she "answered OK", so nothing happened.
    """
    esc = _escalation(record)
    return bool(esc.get("duress")) and record.state != "resolved" and not esc.get("cover")


def practitioner_record(record: AlertRecord) -> AlertRecord:
    """The alert as the practitioner may see it, wherever she looks (API, console, her page).

    Someone may be holding her phone: under duress, until an operator resolved
    it, she is shown the state a normal cancel would have left at that moment
    (kept by the escalation as ``cover``), never the duress.
    """
    if not hides_duress(record):
        return record
    cover = _escalation(record)["cover"]
    return replace(record, state=str(cover["state"]), escalation=cover)


def summary(record: AlertRecord, *, as_practitioner: bool = False) -> AlertSummary:
    """The alert as listed; ``as_practitioner``: as she may see it (:func:`practitioner_record`)."""
    if as_practitioner:
        record = practitioner_record(record)
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
        fallback=ctx.get("fallback"),
        location_source=location.get("source"),
        stale=bool(location.get("stale")),
        duress=bool(esc.get("duress")),
        acked_by=contact_name(record, acked),
        taken_over_by=taken,
        closed_by=esc.get("closed_by"),
        exhausted=bool(esc.get("exhausted")),
        alarm=esc.get("alarm"),
        needs_attention=_needs_attention(record, esc),
    )


def _needs_attention(record: AlertRecord, esc: dict[str, Any]) -> bool:
    """Ring the console: nobody has it yet, or an alarm (duress, exhausted, unrouted) is unanswered.

    The alarm counts whatever the state: a duress after an acknowledgement rings again.
    """
    if record.kind not in ("alert", "drill") or record.state not in OPEN_STATES:
        return False
    untaken = record.state in {"received", "notifying", "duress"}
    untaken = untaken and not esc.get("acked_by") and not esc.get("taken_over_by")
    return untaken or bool(esc.get("alarm"))


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
            whose = "du site" if d.get("pin_of") == "site" else "du praticien"
            if d.get("duress"):
                return f"Code de contrainte {whose} saisi sur la balise : danger confirmé, l'alerte continue"
            return f"Annulée depuis la balise avec le code d'annulation {whose}"
        case "Resolved":
            return f"Clôturée par {by}"
        case "MarkedFalseAlarm":
            return f"Déclarée fausse alerte par {by}"
        case "OperatorTookOver":
            return f"Prise en main manuelle par {by} : escalade automatique arrêtée"
        case "on_site":
            return f"Sur place : {by} (lien de suivi)"
        case "operator_alarm":
            return f"Alarme opérateur : {d.get('reason', '')}"
        case "drill":
            if d.get("consent"):
                return f"Exercice consenti par la convention ({d.get('convention')}) : {_DRILL_RUN}"
            return _DRILL_REFUSED
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


def _as_if_cancelled(
    events: list[dict[str, Any]],
    notifications: list[NotificationRecord],
    times: dict[int, tuple[datetime, datetime]],
    notes: list[NoteRecord],
) -> tuple[list[dict[str, Any]], list[NotificationRecord], list[NoteRecord]]:
    """The history up to her duress cancel, told as a normal cancel: what came after is not hers to see."""
    cut = next(i for i, e in enumerate(events) if e["kind"] == "Cancelled" and e["detail"].get("duress"))
    at = events[cut]["at"]
    told = [*events[:cut], {**events[cut], "detail": {**events[cut]["detail"], "duress": False}}]
    moment = datetime.fromisoformat(at)
    before = [n for n in notifications if n.id in times and times[n.id][0] <= moment]
    # The duress notices went to the very people a normal cancel stands down, on the same channels.
    as_cancel = [
        replace(n, purpose="cancelled", duress=False) if n.purpose == "duress_notice" else n for n in before
    ]
    return told, as_cancel, [note for note in notes if note.at <= moment]


def _location(record: AlertRecord) -> LocationPublic | None:
    raw = _context(record).get("location")
    if not raw:
        return None
    return LocationPublic.model_validate({**raw, "purged": raw.get("description") == PURGED_LOCATION})


async def _live(store: Store, alert_id: str) -> LivePositionPublic | None:
    fix = await store.latest_alert_position(alert_id)
    if fix is None:
        return None
    age_s = max(0.0, (datetime.now(UTC) - fix.at).total_seconds())
    return LivePositionPublic(lat=fix.lat, lon=fix.lon, accuracy_m=fix.accuracy_m, at=fix.at, age_s=age_s)


async def detail(store: Store, record: AlertRecord, *, as_practitioner: bool = False) -> AlertDetail:
    """Everything about one alert (includes its location: audit the read).

    ``as_practitioner``: as she may see it — under duress, the alert as it stood
    when she cancelled, as if the cancel had been a normal one.
    """
    events = await store.alert_events(record.id)
    notifications = await store.notifications_for(record.id)
    times = await store.notification_times(record.id)
    notes = await store.notes_for(record.id)
    if as_practitioner and hides_duress(record):
        events, notifications, notes = _as_if_cancelled(events, notifications, times, notes)
        record = practitioner_record(record)
    ctx, esc = _context(record), _escalation(record)
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
        # For responders and operators. Never in her own views: whatever a duress would
        # add or withhold there could tell it from a normal cancel.
        live_position=None if as_practitioner else await _live(store, record.id),
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
