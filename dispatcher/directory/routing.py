"""SSJ routing: which convention, which units, which people, in which order.

Pure functions over the in-memory directory: the conventions and a
:class:`~dispatcher.domain.ResolvedLocation` in, a convention's escalation plan
out. The plan may come out empty (contact hours, zone unknown):
:mod:`dispatcher.directory.fallback` owns the chain that completes it, so that no alert
ever reaches nobody.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from dispatcher.alerting.escalation import EscalationPlan, PlanTier, Recipient
from dispatcher.domain import (
    Contact,
    Convention,
    EscalationTier,
    GeoPoint,
    ResolvedLocation,
    ResponderUnit,
    TierTarget,
)

__all__ = [
    "COMPETENT",
    "build_convention_plan",
    "build_plan",
    "competent_units",
    "fallback_units",
    "find_convention",
    "matching_units",
    "on_duty_recipients",
    "paris_time",
    "point_in_ring",
    "where",
]

#: The :class:`TierTarget` unit meaning "the unit(s) territorially competent for the location".
COMPETENT = "competent"

# Contact hours in conventions are French local times.
_PARIS = ZoneInfo("Europe/Paris")


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


def matching_units(convention: Convention, location: ResolvedLocation) -> list[ResponderUnit]:
    """Units whose polygons contain the point or whose communes list the INSEE code (maybe none)."""
    return [
        u
        for u in convention.units
        if (location.insee is not None and location.insee in u.communes)
        or _unit_polygon_contains(u, location.point)
    ]


def fallback_units(convention: Convention) -> list[ResponderUnit]:
    """The convention's departmental fallback units (e.g. CIC and CORG), in the file's order."""
    by_id = {u.id: u for u in convention.units}
    return [by_id[i] for i in convention.fallback_units if i in by_id]


def competent_units(convention: Convention, location: ResolvedLocation) -> list[ResponderUnit]:
    """Units territorially competent for the location (police or gendarmerie zone).

    A unit is competent when one of its polygons contains the point or its
    communes list the location's INSEE code. When none is (zone not
    determined: unknown commune, no point), the convention's departmental
    fallback units stand in for it (see :mod:`dispatcher.directory.fallback`).
    """
    return matching_units(convention, location) or fallback_units(convention)


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


def _on_duty(
    units: Sequence[ResponderUnit], max_priority: int, local_now: datetime
) -> list[tuple[ResponderUnit, Contact]]:
    """On-duty contacts of ``units`` up to ``max_priority``; when contact hours leave none,
    those of the next priority that has someone on duty (never an off-duty contact)."""
    pairs = [(u, c) for u in units for c in u.contacts if _covers(c, local_now)]
    within = [(u, c) for u, c in pairs if c.priority <= max_priority]
    if within or not pairs:
        return within
    nearest = min(c.priority for _, c in pairs)
    return [(u, c) for u, c in pairs if c.priority == nearest]


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
        reachable = _on_duty(units, target.max_priority, local_now)
        if units and any(c.priority > target.max_priority for _, c in reachable):
            notes.append(f"Niveau {index + 1} : contacts hors service, priorité suivante alertée.")
        candidates += reachable
    on_duty = _dedupe(candidates)
    # Stable sort: priority first, then the convention's order.
    on_duty.sort(key=lambda uc: uc[1].priority)
    recipients = tuple(_recipient(u, c) for u, c in on_duty)
    return PlanTier(recipients=recipients, ack_timeout_s=tier.ack_timeout_s), notes


def paris_time(now: datetime) -> datetime:
    """``now`` in Europe/Paris, where contact hours are written (naive = UTC, never server time)."""
    return (now if now.tzinfo is not None else now.replace(tzinfo=UTC)).astimezone(_PARIS)


def on_duty_recipients(units: Sequence[ResponderUnit], now: datetime) -> tuple[Recipient, ...]:
    """Every contact of ``units`` on duty at ``now`` (any priority, sorted by it), deduplicated."""
    pairs = _dedupe(_on_duty(units, 9, paris_time(now)))
    pairs.sort(key=lambda uc: uc[1].priority)
    return tuple(_recipient(u, c) for u, c in pairs)


def build_convention_plan(
    convention: Convention, now: datetime, competent: Sequence[ResponderUnit]
) -> tuple[EscalationPlan, list[str]]:
    """The convention's tiers with ``competent`` standing for ``unit: competent``, and notes.

    Remembered (the last :data:`PLAN_MEMO_SIZE` answers): the answer depends on
    ``now`` only through which contacts are on duty, and that changes only
    when the Paris time crosses a start or an end of the convention's contact
    hours. So it is keyed by the convention object (a directory reload makes
    new ones), the competent units and the interval between two such
    boundaries. Building a plan was ≈ 300 µs of the event loop per alert.
    """
    local_t = paris_time(now).time().replace(tzinfo=None)
    key = (id(convention), tuple(u.id for u in competent), bisect_right(_hour_bounds(convention), local_t))
    hit = _PLANS.get(key)
    if hit is not None and hit[0] is convention:
        _PLANS.move_to_end(key)
        return hit[1], list(hit[2])
    plan, notes = _build_convention_plan(convention, now, competent)
    _PLANS[key] = (convention, plan, tuple(notes))
    if len(_PLANS) > PLAN_MEMO_SIZE:
        _PLANS.popitem(last=False)
    return plan, notes


#: Plans remembered by :func:`build_convention_plan` (conventions x competent units x hour slots).
PLAN_MEMO_SIZE = 1024
_PLANS: OrderedDict[tuple[int, tuple[str, ...], int], tuple[Convention, EscalationPlan, tuple[str, ...]]] = (
    OrderedDict()
)
_BOUNDS: dict[int, tuple[Convention, list[time]]] = {}


def _hour_bounds(convention: Convention) -> list[time]:
    """Every start and end of the convention's contact hours, sorted: on-duty sets change only there.

    ``Hours.covers`` is ``start <= t < end`` (or its wrap past midnight), so
    between two consecutive bounds ([b_i, b_i+1)) every contact's answer is
    the same; :func:`bisect_right` numbers those intervals.
    """
    hit = _BOUNDS.get(id(convention))
    if hit is not None and hit[0] is convention:
        return hit[1]
    bounds = sorted(
        {b for u in convention.units for c in u.contacts for h in c.hours for b in (h.start, h.end)}
    )
    if len(_BOUNDS) >= PLAN_MEMO_SIZE:  # old directories' conventions: let them go
        _BOUNDS.clear()
    _BOUNDS[id(convention)] = (convention, bounds)
    return bounds


def _build_convention_plan(
    convention: Convention, now: datetime, competent: Sequence[ResponderUnit]
) -> tuple[EscalationPlan, list[str]]:
    local_now = paris_time(now)
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

    Each tier's targets become recipients (``max_priority`` applied; contacts
    off duty at ``now`` in Europe/Paris are never alerted: the next priority
    of the same units that has someone on duty stands in, else the tier is
    dropped; duplicates removed, sorted by priority). A naive ``now`` is taken
    as UTC. The plan may be empty: :func:`dispatcher.directory.fallback.route` completes it.
    """
    return build_convention_plan(convention, now, competent_units(convention, location))[0]


def where(location: ResolvedLocation) -> str:
    """'commune 34172', 'département 34' or 'commune et département inconnus'."""
    if location.insee:
        return f"commune {location.insee}"
    if location.departement:
        return f"département {location.departement}"
    return "commune et département inconnus"
