"""What the responder page shows, as JSON: a pure function of the stored alert and the link.

Who she is, where she is now, the escalation as the contact may know it, and
whether the buttons still act. Deliberately less than the console's detail:
no other contact's phone number, no delivery statuses, no operator notes.

Duress: the page says exactly what this contact's SMS said (a duress is
announced to every responder already alerted: "DANGER CONFIRME ..."); it is a
page for the police contact, never shown to her (there is no link for her).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from dispatcher.alerting.responder_links import CLOSED_STATES
from dispatcher.alerting.texts import AT_ADDRESS_M, DRILL_PREFIX, duress_words
from dispatcher.directory.location import offset_from_address
from dispatcher.domain import Address, GeoPoint
from dispatcher.store.base import AlertRecord, PositionFix, ResponderLink
from dispatcher.web.api.views import contact_name

ON_SITE = "on_site"  # the alert event "Sur place" records


def map_url(lat: float, lon: float) -> str:
    """OpenStreetMap at the point (the console's "ouvrir dans une carte" link)."""
    return f"https://www.openstreetmap.org/?mlat={lat:.5f}&mlon={lon:.5f}#map=17/{lat:.5f}/{lon:.5f}"


def _age_s(now: datetime, at: datetime | None) -> float | None:
    return None if at is None else max(0.0, (now - at).total_seconds())


def _who(ctx: dict[str, Any]) -> dict[str, Any]:
    p = ctx.get("practitioner") or {}
    site = ctx.get("site") or {}
    device = ctx.get("device") or {}
    if p:
        name = f"Dr {p.get('first_name', '')} {p.get('last_name', '')}".strip()
        initials = f"{p.get('first_name', ' ')[:1]}{p.get('last_name', ' ')[:1]}".upper()
        phones = p.get("phones") or []
        return {
            "name": name,
            "role": p.get("profession"),
            "phone": phones[0] if phones else None,  # hers, as the SMS gives it
            "rpps": p.get("rpps"),
            "initials": initials.strip(),
            "site": site.get("name"),
        }
    name = site.get("name") or device.get("label") or device.get("id") or "Bouton d'alerte"
    return {
        "name": name,
        "role": "bouton d'alerte",
        "phone": None,
        "rpps": None,
        "initials": name[:1],
        "site": None,
    }


def _address(ctx: dict[str, Any], loc: dict[str, Any], live: PositionFix | None) -> dict[str, Any] | None:
    """The address, with floor and door code only when she is there (as the SMS decides).

    A live position away from it is said from it ("à 40 m au nord-est de ..."), like the SMS says a fix.
    """
    raw = loc.get("address") or (ctx.get("site") or {}).get("address")
    if not raw:
        return None
    inside = loc.get("source") in ("home_visit", "site") or bool(loc.get("at_address"))
    offset = None
    if live is not None:
        radius = max(AT_ADDRESS_M, live.accuracy_m or 0.0)
        offset = offset_from_address(
            GeoPoint(lat=live.lat, lon=live.lon), Address.model_validate(raw), at_radius_m=radius
        )
        inside = offset is None and (inside or raw.get("point") is not None)
    return {
        "label": raw.get("label"),
        "floor": raw.get("floor") if inside else None,
        "access_code": raw.get("access_code") if inside else None,
        "details": raw.get("details") if inside else None,
        "near": not inside,  # a fix away from it: the nearest known address
        "offset": offset,
    }


def _position(record: AlertRecord, now: datetime, live: PositionFix | None) -> dict[str, Any]:
    ctx = record.context or {}
    loc = ctx.get("location") or {}
    address = _address(ctx, loc, live)
    at: datetime | None
    lat: float | None
    lon: float | None
    if live is not None:
        lat, lon, accuracy, at = live.lat, live.lon, live.accuracy_m, live.at
        source = "live"
    else:
        point = loc.get("point") or ((loc.get("address") or {}).get("point"))
        lat, lon = (point["lat"], point["lon"]) if point else (None, None)
        accuracy = loc.get("accuracy_m")
        age = loc.get("fix_age_s")
        at = None if age is None else record.received_at - timedelta(seconds=float(age))
        source = loc.get("source", "unknown")
    return {
        "source": source,
        "live": live is not None,
        "lat": lat,
        "lon": lon,
        "accuracy_m": accuracy,
        "at": at.isoformat() if at else None,
        "age_s": _age_s(now, at),
        "stale": bool(loc.get("stale")) and live is None,
        "description": loc.get("description"),
        "other_place": loc.get("other_place"),
        "address": address,
        "map_url": map_url(lat, lon) if lat is not None and lon is not None else None,
    }


def _state(record: AlertRecord, link: ResponderLink) -> dict[str, Any]:
    esc = record.escalation or {}
    ctx = record.context or {}
    acked = esc.get("acked_by")
    duress = bool(esc.get("duress")) or bool(ctx.get("duress"))
    return {
        "code": record.state,
        "open": record.state not in CLOSED_STATES,
        "acked_by": contact_name(record, acked) if acked else esc.get("taken_over_by"),
        "acked_by_you": acked == link.contact_id,
        "closed_by": esc.get("closed_by"),
        "duress": duress_words(bool(ctx.get("reason"))) if duress else None,
    }


def page_state(
    record: AlertRecord,
    link: ResponderLink,
    events: list[dict[str, Any]],
    now: datetime,
    *,
    live: PositionFix | None = None,
    poll_s: float = 3.0,
) -> dict[str, Any]:
    """The JSON the page renders (``GET /r/<token>/etat``)."""
    ctx = record.context or {}
    on_site = [
        {"by": contact_name(record, e["detail"].get("by")), "at": e["at"]}
        for e in events
        if e["kind"] == ON_SITE
    ]
    return {
        "now": now.isoformat(),
        "poll_s": poll_s,
        "drill": DRILL_PREFIX if record.kind == "drill" else None,
        "test": record.kind == "test",
        "received_at": record.received_at.isoformat(),
        "reason": ctx.get("reason"),
        "you": contact_name(record, link.contact_id),
        "who": _who(ctx),
        "position": _position(record, now, live),
        "state": _state(record, link),
        "on_site": on_site,
        "on_site_by_you": any(
            e["detail"].get("by") == link.contact_id for e in events if e["kind"] == ON_SITE
        ),
    }
