"""Where is she? Resolving an alert's location, in order of trust.

Pure functions, no I/O: every input (the fix carried by the alert, the active
home visit, the device's site, the last known fix, the geocoded places) is
passed in, and ``now`` comes from the caller. Geocoding happens when addresses
are registered, never here.

Order of trust (docs: DESIGN.md, "Location, in order of trust"):

1. a fresh and accurate GPS fix carried by the alert;
2. the practitioner's active home visit (address, floor, door code);
3. the device's fixed site (cabinet, MMG);
4. the last known position, flagged ``stale``;
5. nothing: ``UNKNOWN``, and the alert still goes out.

Descriptions are plain French meant for SMS, voice and the console. They avoid
characters outside the GSM-7 alphabet where a plain equivalent exists
(typographic quotes and dashes, non-breaking spaces, "œ", "±", ...), so that an
SMS is not silently switched to UCS-2 (70 characters per segment instead of 160).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dispatcher.directory.place_words import (
    address_line,
    approx_distance_m,
    distance_m,
    format_age,
    format_coords,
    offset_phrase,
    plain_text,
)
from dispatcher.domain import (
    Address,
    GeoPoint,
    HomeVisit,
    LocationSource,
    ResolvedLocation,
    Site,
    SiteKind,
)
from protocol.messages import Location

__all__ = [
    "CommuneLookup",
    "KnownPlace",
    "LocationPolicy",
    "active_visit",
    "departement_of",
    "describe_relative",
    "distance_m",
    "known_places",
    "plain_text",
    "resolve_location",
]


#: ``(lat, lon) -> INSEE code`` from the commune contours held in memory (None outside them).
CommuneLookup = Callable[[float, float], "str | None"]


@dataclass(frozen=True, slots=True)
class LocationPolicy:
    """Thresholds deciding how far a GPS fix is trusted.

    ``near_radius_m``: a known address this close to an accepted fix is given as
    supporting information (floor, door code, INSEE code).
    ``departement_radius_m``: when no known address is that close, the
    département (not the commune) is still taken from the nearest known address
    within this radius, so that a département-wide SSJ convention can be found.
    ``visit_overrun_s``: how long after its declared end a home visit is still
    considered active (visits overrun; pass it to :func:`active_visit`).
    ``at_visit_radius_m``: a fresh fix this close to the active visit's address
    (or within its own accuracy, if larger) is *at* the visit: its floor and
    door code stay in the messages, with the GPS position.
    """

    max_fix_age_s: float = 120.0
    max_accuracy_m: float = 150.0
    near_radius_m: float = 150.0
    departement_radius_m: float = 5_000.0
    visit_overrun_s: float = 1_800.0
    at_visit_radius_m: float = 200.0


@dataclass(frozen=True, slots=True)
class KnownPlace:
    """A geocoded address of the practitioner, used to describe a GPS fix.

    ``label`` is what the description shows in parentheses ("cabinet",
    "visite à domicile", "MMG Montpellier Nord"); ``kind`` is a machine tag
    ("cabinet", "mmg", "visite", ...). The address must carry a ``point``.
    """

    label: str
    address: Address
    kind: str

    def __post_init__(self) -> None:
        if self.address.point is None:
            raise ValueError(f"known place {self.label!r} has no coordinates")

    @property
    def point(self) -> GeoPoint:
        assert self.address.point is not None  # checked in __post_init__
        return self.address.point

    @classmethod
    def from_site(cls, site: Site) -> KnownPlace | None:
        """The site as a known place, or None when its address is not geocoded."""
        if site.address.point is None:
            return None
        return cls(label=site_heading(site, capitalize=False), address=site.address, kind=site.kind.value)

    @classmethod
    def from_visit(cls, visit: HomeVisit) -> KnownPlace | None:
        """The visit's address as a known place, or None when it is not geocoded."""
        if visit.address.point is None:
            return None
        return cls(label="visite à domicile", address=visit.address, kind="visite")


def known_places(*, sites: Iterable[Site] = (), visits: Iterable[HomeVisit] = ()) -> tuple[KnownPlace, ...]:
    """The geocoded addresses among ``sites`` and ``visits`` (others are skipped)."""
    places = [KnownPlace.from_site(s) for s in sites] + [KnownPlace.from_visit(v) for v in visits]
    return tuple(p for p in places if p is not None)


# ---------------------------------------------------------------------------
# Small pure helpers


_SITE_KIND_LABEL: dict[SiteKind, str] = {
    SiteKind.CABINET: "cabinet",
    SiteKind.MMG: "maison médicale de garde",
    SiteKind.CENTRE_SANTE: "centre de santé",
    SiteKind.OTHER: "site",
}


def site_heading(site: Site, *, capitalize: bool = True) -> str:
    """The site named with its kind ("Cabinet Dr Roux"), unless its name already says it (no doubled word).

    >>> from dispatcher.domain import Address
    >>> a = Address(label="1 rue X, 34000 Montpellier")
    >>> site_heading(Site(id="c", name="Cabinet médical du Faubourg", kind=SiteKind.CABINET, address=a))
    'Cabinet médical du Faubourg'
    >>> site_heading(Site(id="c", name="Dr Roux", kind=SiteKind.CABINET, address=a), capitalize=False)
    'cabinet Dr Roux'
    """
    kind = _SITE_KIND_LABEL[site.kind]
    if site.name.casefold().startswith(kind.casefold()):
        return site.name
    return f"{kind.capitalize() if capitalize else kind} {site.name}"


def departement_of(insee: str) -> str:
    """The département of an INSEE commune code: 2 characters, 3 for overseas (97x, 98x).

    >>> departement_of("34172"), departement_of("2A004"), departement_of("97411")
    ('34', '2A', '974')
    """
    return insee[:3] if insee.startswith(("97", "98")) else insee[:2]


def describe_relative(point: GeoPoint, place: KnownPlace) -> str:
    """Where ``point`` lies from ``place``, in plain French.

    e.g. "à 40 m au nord-est de 12 rue de la Loge, 34000 Montpellier (cabinet)".
    """
    return plain_text(offset_phrase(place.point, point, f"{place.address.label} ({place.label})"))


def offset_from_address(point: GeoPoint, address: Address, *, at_radius_m: float) -> str | None:
    """'à 40 m au nord-est de <address>', or None when ``point`` is at the address
    (within ``at_radius_m``) or the address has no coordinates."""
    if address.point is None:
        return None
    d = distance_m(address.point, point)
    if d <= at_radius_m:
        return None
    return plain_text(offset_phrase(address.point, point, address.label, d))


def _as_utc(dt: datetime) -> datetime:
    # Naive datetimes are taken as UTC, the store's convention; aware ones are converted.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _fix_point(fix: Location) -> GeoPoint:
    return GeoPoint(lat=fix.lat, lon=fix.lon)


def _fix_age_s(fix: Location, now: datetime) -> float:
    # A device clock slightly ahead gives a negative age: count it as fresh, not as an error.
    return max(0.0, _as_utc(now).timestamp() - fix.fix_ts / 1000.0)


def _nearest(point: GeoPoint, places: Sequence[KnownPlace]) -> tuple[KnownPlace, float] | None:
    """The nearest place and its geodesic distance (ranked by haversine: the hot path is short)."""
    place = min(places, key=lambda p: approx_distance_m(point, p.point), default=None)
    return None if place is None else (place, distance_m(point, place.point))


# ---------------------------------------------------------------------------
# Public API


def active_visit(
    visits: Iterable[HomeVisit], practitioner_id: str, now: datetime, *, overrun_s: float = 0.0
) -> HomeVisit | None:
    """The practitioner's home visit whose window covers ``now``.

    The window is ``[starts_at, ends_at + overrun_s)``: visits overrun, and a
    practitioner still inside a flat after the declared end is exactly the case
    this system exists for (see :attr:`LocationPolicy.visit_overrun_s`). A visit
    she checked out of ends then, overrun or not. When several visits match,
    the one that started most recently wins.
    """
    t = _as_utc(now)
    overrun = timedelta(seconds=overrun_s)
    candidates = [
        v
        for v in visits
        if v.practitioner_id == practitioner_id
        and _as_utc(v.starts_at) <= t < _as_utc(v.ends_at) + overrun
        and (v.checked_out_at is None or t < _as_utc(v.checked_out_at))
    ]
    return max(candidates, key=lambda v: _as_utc(v.starts_at), default=None)


def resolve_location(
    *,
    fix: Location | None,
    now: datetime,
    visit: HomeVisit | None = None,
    site: Site | None = None,
    last_known: Location | None = None,
    known_places: Sequence[KnownPlace] = (),
    policy: LocationPolicy | None = None,
    commune_at: CommuneLookup | None = None,
) -> ResolvedLocation:
    """The best answer to "where is she?" at ``now``, never failing for lack of data.

    ``fix`` is the position carried by the alert; ``last_known`` an earlier fix
    (e.g. from a previous alert or heartbeat). A ``fix`` that is too old or too
    imprecise is not thrown away: it competes with ``last_known`` as the stale
    fallback, and when a visit or site wins but the fix is far from it, the
    description says so. ``commune_at(lat, lon)`` gives the INSEE code of a
    point from the commune contours loaded in memory (None outside them).
    """
    policy = policy or LocationPolicy()
    if fix is not None and _is_trusted(fix, now, policy):
        located = _from_fix(fix, now, known_places, policy, stale=False, commune_at=commune_at)
        return with_visit(located, fix, visit, policy) if visit is not None else located

    fallback_fix = _most_recent(f for f in (fix, last_known) if f is not None)
    if visit is not None:
        return _from_address(
            LocationSource.HOME_VISIT,
            _visit_heading(visit, now),
            visit.address,
            note=visit.note,
            fallback_fix=fallback_fix,
            now=now,
            policy=policy,
        )
    if site is not None:
        heading = site_heading(site)
        return _from_address(
            LocationSource.SITE,
            heading,
            site.address,
            note=None,
            fallback_fix=fallback_fix,
            now=now,
            policy=policy,
        )
    if fallback_fix is not None:
        return _from_fix(fallback_fix, now, known_places, policy, stale=True, commune_at=commune_at)
    return ResolvedLocation(
        source=LocationSource.UNKNOWN,
        description="Position inconnue : aucun GPS, aucune visite à domicile en cours, aucun site fixe.",
    )


def _is_trusted(fix: Location, now: datetime, policy: LocationPolicy) -> bool:
    return _fix_age_s(fix, now) <= policy.max_fix_age_s and fix.accuracy_m <= policy.max_accuracy_m


def _most_recent(fixes: Iterable[Location]) -> Location | None:
    # Newest first; at equal time, the more precise one.
    return max(fixes, key=lambda f: (f.fix_ts, -f.accuracy_m), default=None)


def _visit_heading(visit: HomeVisit, now: datetime) -> str:
    overrun = _as_utc(now).timestamp() - _as_utc(visit.ends_at).timestamp()
    if overrun > 0:
        return f"Visite à domicile (fin déclarée {format_age(overrun)})"
    return "Visite à domicile"


def _territory(
    point: GeoPoint,
    nearest: tuple[KnownPlace, float] | None,
    places: Sequence[KnownPlace],
    policy: LocationPolicy,
    commune_at: CommuneLookup | None = None,
) -> tuple[KnownPlace | None, str | None, str | None]:
    """(near place, INSEE, département) for a fix.

    The commune comes from the loaded contours when they cover the point.
    Otherwise it is only claimed when a known address is within
    ``near_radius_m``, and the département is inferred from farther away
    (``departement_radius_m``).
    """
    near = nearest[0] if nearest is not None and nearest[1] <= policy.near_radius_m else None
    insee = commune_at(point.lat, point.lon) if commune_at is not None else None
    if insee is not None:
        return near, insee, departement_of(insee)
    if nearest is None:
        return None, None, None
    insee = near.address.insee if near is not None else None
    if insee is not None:
        return near, insee, departement_of(insee)
    with_insee = _nearest(point, [p for p in places if p.address.insee is not None])
    if with_insee is not None and with_insee[1] <= policy.departement_radius_m:
        assert with_insee[0].address.insee is not None
        return near, None, departement_of(with_insee[0].address.insee)
    return near, None, None


def _fix_sentence(point: GeoPoint, nearest: tuple[KnownPlace, float] | None) -> str:
    coords = f"Coordonnées : {format_coords(point)}."
    if nearest is None:
        return coords
    place, d = nearest
    return f"{offset_phrase(place.point, point, f'{place.address.label} ({place.label})', d)}. {coords}"


def _near_sentence(near: KnownPlace | None) -> str:
    if near is None:
        return ""
    return f" Adresse connue la plus proche : {address_line(near.address)}."


def _from_fix(
    fix: Location,
    now: datetime,
    places: Sequence[KnownPlace],
    policy: LocationPolicy,
    *,
    stale: bool,
    commune_at: CommuneLookup | None = None,
) -> ResolvedLocation:
    point = _fix_point(fix)
    age = _fix_age_s(fix, now)
    nearest = _nearest(point, places)
    near, insee, departement = _territory(point, nearest, places, policy, commune_at)
    precision = f"précision {round(fix.accuracy_m)} m"
    if stale:
        heading = f"Dernière position connue, NON A JOUR ({format_age(age)}, {precision})"
    else:
        heading = f"Position GPS ({precision}, {format_age(age)})"
    return ResolvedLocation(
        source=LocationSource.LAST_KNOWN if stale else LocationSource.GPS,
        point=point,
        accuracy_m=fix.accuracy_m,
        address=near.address if near is not None else None,
        description=plain_text(f"{heading} : {_fix_sentence(point, nearest)}{_near_sentence(near)}"),
        stale=stale,
        fix_age_s=age,
        insee=insee,
        departement=departement,
    )


def _from_address(
    source: LocationSource,
    heading: str,
    address: Address,
    *,
    note: str | None,
    fallback_fix: Location | None,
    now: datetime,
    policy: LocationPolicy,
) -> ResolvedLocation:
    description = f"{heading} : {address_line(address)}."
    if note:
        description += f" Note : {note}."
    if address.point is not None:
        description += f" Coordonnées : {format_coords(address.point)}."
    description += _divergent_fix_warning(address, fallback_fix, now, policy)
    return ResolvedLocation(
        source=source,
        point=address.point,
        address=address,
        description=plain_text(description),
        insee=address.insee,
        departement=departement_of(address.insee) if address.insee else None,
    )


def _divergent_fix_warning(
    address: Address, fix: Location | None, now: datetime, policy: LocationPolicy
) -> str:
    """A warning when an untrusted fix puts her clearly elsewhere than the declared address.

    The fix was not good enough to be the location, but a fix kilometres away
    from the declared visit is something a responder must know.
    """
    if fix is None or address.point is None:
        return ""
    point = _fix_point(fix)
    d = distance_m(address.point, point)
    if d <= policy.near_radius_m + fix.accuracy_m:
        return ""
    where = offset_phrase(address.point, point, "cette adresse", d)
    return (
        f" Attention : dernière position GPS {where} "
        f"({format_age(_fix_age_s(fix, now))}, précision {round(fix.accuracy_m)} m, "
        f"coordonnées {format_coords(point)})."
    )


def with_visit(
    located: ResolvedLocation, fix: Location, visit: HomeVisit, policy: LocationPolicy
) -> ResolvedLocation:
    """A fresh fix and the active home visit: both matter to whoever comes.

    Within the fix's accuracy (or ``at_visit_radius_m``) of the visit's
    address, she is at the visit: its floor and door code stay, with the GPS
    position. Farther, both places are given, saying which is newer.
    """
    address, point = visit.address, _fix_point(fix)
    radius = max(fix.accuracy_m, policy.at_visit_radius_m)
    if address.point is not None and distance_m(address.point, point) <= radius:
        insee = located.insee or address.insee
        description = located.description
        if located.address != address:  # not already given as the nearest known address
            description += f" Sur le lieu de la visite déclarée : {address_line(address)}."
        update = {
            "address": address,
            "at_address": True,
            "insee": insee,
            "departement": departement_of(insee) if insee else located.departement,
            "description": plain_text(description),
        }
        return located.model_copy(update=update)
    gps_newer = datetime.fromtimestamp(fix.fix_ts / 1000, UTC) >= _as_utc(visit.starts_at)
    newer = "la position GPS est plus récente" if gps_newer else "la visite est plus récente"
    where = "non géolocalisée"
    if address.point is not None:
        where = offset_phrase(point, address.point, "la position GPS")
    other = plain_text(f"Visite déclarée : {address_line(address)} ({where}) ; {newer}.")
    return located.model_copy(update={"other_place": other, "description": f"{located.description} {other}"})
