"""SSJ routing: which convention, which units, which people, in which order.

Pure functions over the in-memory directory: the conventions and a
:class:`~dispatcher.domain.ResolvedLocation` in, a :class:`RoutingDecision` out.
A decision without a convention is not an error: the engine raises an operator
alarm and the operators handle the alert by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from dispatcher.domain import (
    Contact,
    Convention,
    EscalationTier,
    GeoPoint,
    ResolvedLocation,
    ResponderUnit,
    TierTarget,
    Zone,
)
from dispatcher.escalation import EscalationPlan, PlanTier, Recipient

__all__ = [
    "COMPETENT",
    "RoutingDecision",
    "build_plan",
    "competent_units",
    "find_convention",
    "point_in_ring",
    "route",
]

#: The :class:`TierTarget` unit meaning "the unit(s) territorially competent for the location".
COMPETENT = "competent"

# Contact hours in conventions are French local times.
_PARIS = ZoneInfo("Europe/Paris")


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """The outcome of routing one alert, with human-readable notes for the console.

    ``convention`` None means no convention covers the location: manual handling.
    """

    convention: Convention | None
    units: tuple[ResponderUnit, ...]
    plan: EscalationPlan | None
    notes: tuple[str, ...]


# ---------------------------------------------------------------------------
# Geometry


def point_in_ring(point: GeoPoint, ring: Sequence[tuple[float, float]]) -> bool:
    """Ray casting on a ring of (lon, lat) pairs (GeoJSON order, closed or not).

    Planar in degrees, which is exact enough at the scale of a commune.
    """
    if len(ring) < 3:
        return False
    x, y = point.lon, point.lat
    inside = False
    x_prev, y_prev = ring[-1]
    for x_cur, y_cur in ring:
        crosses = (y_cur > y) != (y_prev > y)
        if crosses and x < (x_prev - x_cur) * (y - y_cur) / (y_prev - y_cur) + x_cur:
            inside = not inside
        x_prev, y_prev = x_cur, y_cur
    return inside


def _unit_polygon_contains(unit: ResponderUnit, point: GeoPoint | None) -> bool:
    # Each ring is a separate territory; holes are not modelled.
    return point is not None and any(point_in_ring(point, ring) for ring in unit.polygons)


# ---------------------------------------------------------------------------
# Convention


def _territory_score(convention: Convention, location: ResolvedLocation) -> int:
    """How specifically the convention covers the location; 0 = not at all.

    An explicit commune list beats a drawn polygon, which beats a whole département.
    """
    if location.insee is not None and location.insee in convention.communes:
        # Listed communes are trusted even if the département field disagrees
        # (a convention of an agglomeration spanning a border).
        return 3
    if any(_unit_polygon_contains(u, location.point) for u in convention.units):
        return 2
    if not convention.communes and location.departement == convention.departement:
        return 1
    return 0


def find_convention(conventions: Iterable[Convention], location: ResolvedLocation) -> Convention | None:
    """The SSJ convention whose territory contains the location, the most specific one first.

    Ties keep the order of ``conventions`` (the directory's order), so the result is deterministic.
    """
    best: tuple[int, Convention] | None = None
    for convention in conventions:
        score = _territory_score(convention, location)
        if score and (best is None or score > best[0]):
            best = (score, convention)
    return best[1] if best is not None else None


# ---------------------------------------------------------------------------
# Units


def _competent(convention: Convention, location: ResolvedLocation) -> tuple[list[ResponderUnit], list[str]]:
    matching = [
        u
        for u in convention.units
        if (location.insee is not None and location.insee in u.communes)
        or _unit_polygon_contains(u, location.point)
    ]
    if matching:
        return matching, []
    law_enforcement = [u for u in convention.units if u.zone in (Zone.POLICE, Zone.GENDARMERIE)]
    fallback = law_enforcement or list(convention.units)
    where = f"commune {location.insee}" if location.insee else "commune inconnue"
    kind = "police/gendarmerie " if law_enforcement else ""
    note = (
        f"Aucune unité compétente trouvée ({where}) : toutes les unités {kind}de la convention sont alertées."
    )
    return fallback, [note]


def competent_units(convention: Convention, location: ResolvedLocation) -> list[ResponderUnit]:
    """Units territorially competent for the location (police or gendarmerie zone).

    A unit is competent when one of its polygons contains the point or its
    communes list the location's INSEE code. When none is (unknown commune, no
    point), every police/gendarmerie unit of the convention is returned rather
    than nothing (every unit if it has none); :func:`route` notes it.
    """
    return _competent(convention, location)[0]


# ---------------------------------------------------------------------------
# Plan


def _covers(contact: Contact, local_now: datetime) -> bool:
    t = local_now.time().replace(tzinfo=None)
    return not contact.hours or any(h.covers(t) for h in contact.hours)


def _recipient(unit: ResponderUnit, contact: Contact) -> Recipient:
    return Recipient(
        contact_id=contact.id,
        name=contact.name,
        phone=contact.phone,
        channels=tuple(dict.fromkeys(contact.channels)),  # dedupe, keep order
        unit_id=unit.id,
        unit_name=unit.name,
        priority=contact.priority,
    )


def _target_units(
    convention: Convention, target: TierTarget, competent: Sequence[ResponderUnit]
) -> tuple[list[ResponderUnit], list[str]]:
    if target.unit == COMPETENT:
        return list(competent), []
    named = [u for u in convention.units if u.id == target.unit]
    if not named:
        return [], [f"Unité {target.unit!r} inconnue dans la convention {convention.id} : ignorée."]
    return named, []


def _dedupe(candidates: Iterable[tuple[ResponderUnit, Contact]]) -> list[tuple[ResponderUnit, Contact]]:
    # The same contact (or the same phone, e.g. a shared desk) listed twice in a
    # tier must get one message, not two; the first listing wins.
    seen: set[str] = set()
    out = []
    for unit, contact in candidates:
        if contact.id in seen or contact.phone in seen:
            continue
        seen.update((contact.id, contact.phone))
        out.append((unit, contact))
    return out


def _plan_tier(
    convention: Convention,
    tier: EscalationTier,
    competent: Sequence[ResponderUnit],
    local_now: datetime,
    index: int,
) -> tuple[PlanTier, list[str]]:
    notes: list[str] = []
    candidates: list[tuple[ResponderUnit, Contact]] = []
    for target in tier.targets:
        units, unit_notes = _target_units(convention, target, competent)
        notes += unit_notes
        candidates += [(u, c) for u in units for c in u.contacts if c.priority <= target.max_priority]
    candidates = _dedupe(candidates)
    on_duty = [(u, c) for u, c in candidates if _covers(c, local_now)]
    if candidates and not on_duty:
        # Better to wake someone off duty than to alert nobody at this tier.
        notes.append(f"Niveau {index + 1} : aucun contact en service à cette heure, tous sont alertés.")
        on_duty = candidates
    # Stable sort: priority first, then the convention's order.
    on_duty.sort(key=lambda uc: uc[1].priority)
    recipients = tuple(_recipient(u, c) for u, c in on_duty)
    return PlanTier(recipients=recipients, ack_timeout_s=tier.ack_timeout_s), notes


def _build_plan(
    convention: Convention, now: datetime, competent: Sequence[ResponderUnit]
) -> tuple[EscalationPlan, list[str]]:
    # Naive times are UTC by the project's convention, never the server's local time.
    local_now = (now if now.tzinfo is not None else now.replace(tzinfo=UTC)).astimezone(_PARIS)
    tiers: list[PlanTier] = []
    notes: list[str] = []
    for index, tier in enumerate(convention.tiers):
        plan_tier, tier_notes = _plan_tier(convention, tier, competent, local_now, index)
        notes += tier_notes
        if plan_tier.recipients:
            tiers.append(plan_tier)
        else:
            notes.append(f"Niveau {index + 1} de la convention sans destinataire : sauté.")
    return EscalationPlan(tiers=tuple(tiers), repeats=convention.repeats), notes


def build_plan(convention: Convention, location: ResolvedLocation, now: datetime) -> EscalationPlan:
    """The concrete escalation plan of ``convention`` for an alert at ``location`` at ``now``.

    Each tier's targets become recipients (``max_priority`` applied, contacts
    off duty at ``now`` in Europe/Paris skipped unless that would empty the
    tier, duplicates removed, sorted by priority). Tiers left empty are dropped.
    A naive ``now`` is taken as UTC.
    """
    competent, _ = _competent(convention, location)
    return _build_plan(convention, now, competent)[0]


def route(conventions: Iterable[Convention], location: ResolvedLocation, now: datetime) -> RoutingDecision:
    """Convention, competent units and escalation plan for an alert, with notes for the operators."""
    convention = find_convention(conventions, location)
    if convention is None:
        note = f"Aucune convention SSJ ne couvre cette position ({_where(location)}) : traitement manuel."
        return RoutingDecision(convention=None, units=(), plan=None, notes=(note,))
    units, notes = _competent(convention, location)
    plan, plan_notes = _build_plan(convention, now, units)
    notes += plan_notes
    if plan.is_empty:
        notes.append(f"La convention {convention.id} ne donne aucun destinataire : traitement manuel.")
    return RoutingDecision(convention=convention, units=tuple(units), plan=plan, notes=tuple(notes))


def _where(location: ResolvedLocation) -> str:
    if location.insee:
        return f"commune {location.insee}"
    if location.departement:
        return f"département {location.departement}"
    return "commune et département inconnus"
