"""SSJ routing on Hérault data: convention, competent units, escalation plan."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.alerting.escalation import Recipient
from dispatcher.directory.fallback import (
    DEPLOYMENT_CONTACT_ID,
    Fallback,
    RoutingDecision,
    deployment_recipient,
)
from dispatcher.directory.fallback import route as route_with
from dispatcher.directory.routing import (
    _build_convention_plan,
    build_convention_plan,
    build_plan,
    competent_units,
    find_convention,
    point_in_ring,
)
from dispatcher.domain import (
    Channel,
    Contact,
    Convention,
    EscalationTier,
    GeoPoint,
    Hours,
    LocationSource,
    ResolvedLocation,
    ResponderUnit,
    TierTarget,
    UnitKind,
    Zone,
)

MONTPELLIER = "34172"
CASTELNAU = "34057"
SAINT_GELY = "34255"
SAINT_CLEMENT = "34247"

WINTER_NIGHT = datetime(2025, 1, 14, 21, 30, tzinfo=UTC)  # 22:30 in Paris
SUMMER_MORNING = datetime(2025, 7, 15, 8, 0, tzinfo=UTC)  # 10:00 in Paris (CEST)

OFFICE_HOURS = [Hours(start=time(8), end=time(19))]

COMMISSARIAT = ResponderUnit(
    id="dipn-34-montpellier",
    name="Commissariat central de Montpellier",
    kind=UnitKind.COMMISSARIAT,
    zone=Zone.POLICE,
    communes=[MONTPELLIER, CASTELNAU],
    contacts=[
        Contact(id="officier-permanence", name="Officier de permanence", phone="+33639980101"),
        Contact(
            id="cic-montpellier",
            name="CIC Montpellier",
            phone="+33465710101",
            channels=[Channel.VOICE],
            priority=2,
        ),
        Contact(
            id="commissaire",
            name="Commissaire référent SSJ",
            phone="+33639980102",
            priority=3,
            hours=OFFICE_HOURS,
        ),
    ],
)
BRIGADE = ResponderUnit(
    id="bta-saint-gely",
    name="Brigade de gendarmerie de Saint-Gély-du-Fesc",
    kind=UnitKind.BRIGADE,
    zone=Zone.GENDARMERIE,
    communes=[SAINT_GELY, SAINT_CLEMENT],
    contacts=[
        Contact(id="cdt-brigade", name="Commandant de brigade", phone="+33639980111", hours=OFFICE_HOURS),
        Contact(
            id="corg-34",
            name="CORG Hérault",
            phone="+33465710111",
            channels=[Channel.VOICE, Channel.VOICE],
            priority=2,
        ),
    ],
)
SAMU = ResponderUnit(
    id="samu-34",
    name="SAMU 34 - Centre 15",
    kind=UnitKind.SAMU,
    zone=Zone.ANY,
    contacts=[
        Contact(id="regulation-samu", name="Régulation SAMU", phone="+33465710120", channels=[Channel.VOICE])
    ],
)
CENTRES = ResponderUnit(
    id="cic-corg-34",
    name="CIC et CORG de l'Hérault",
    kind=UnitKind.COMMISSARIAT,
    zone=Zone.ANY,
    contacts=[Contact(id="chef-de-salle", name="Chef de salle CIC", phone="+33465710140")],
)
SSJ_HERAULT = Convention(
    id="ssj-herault",
    name="Convention SSJ de l'Hérault",
    departement="34",
    units=[COMMISSARIAT, BRIGADE, SAMU, CENTRES],
    fallback_units=["cic-corg-34"],
    tiers=[
        EscalationTier(targets=[TierTarget(unit="competent", max_priority=1)], ack_timeout_s=90),
        EscalationTier(
            targets=[TierTarget(unit="competent"), TierTarget(unit="samu-34")],
            ack_timeout_s=120,
        ),
    ],
    repeats=1,
)
# A city convention listing its commune explicitly: more specific than the département one.
SSJ_MONTPELLIER = Convention(
    id="ssj-montpellier",
    name="Convention SSJ Montpellier Métropole",
    departement="34",
    communes=[MONTPELLIER],
    units=[COMMISSARIAT],
    fallback_units=["dipn-34-montpellier"],
    tiers=[EscalationTier(targets=[TierTarget(unit="competent")])],
)
SSJ_GARD = Convention(
    id="ssj-gard",
    name="Convention SSJ du Gard",
    departement="30",
    units=[SAMU.model_copy(update={"id": "samu-30"})],
    tiers=[EscalationTier(targets=[TierTarget(unit="samu-30")])],
    fallback_units=["samu-30"],
)
DEPLOYMENT = deployment_recipient("Permanence Vigie", "+33465710190", ["sms", "voice"])


def route(conventions: list[Convention], location: ResolvedLocation, now: datetime) -> RoutingDecision:
    """Routing with the deployment contact every dispatcher is configured with."""
    return route_with(conventions, location, now, DEPLOYMENT)


def at(
    insee: str | None, *, departement: str | None = None, point: GeoPoint | None = None
) -> ResolvedLocation:
    dep = departement if departement is not None else (insee[:2] if insee else None)
    return ResolvedLocation(
        source=LocationSource.HOME_VISIT if insee else LocationSource.GPS,
        insee=insee,
        departement=dep,
        point=point,
        description="test",
    )


def ids(recipients: tuple[Recipient, ...]) -> list[str]:
    return [r.contact_id for r in recipients]


# --- geometry --------------------------------------------------------------------

SQUARE = [(3.80, 43.68), (3.82, 43.68), (3.82, 43.70), (3.80, 43.70)]


@pytest.mark.parametrize(
    ("lon", "lat", "inside"),
    [(3.81, 43.69, True), (3.83, 43.69, False), (3.81, 43.71, False), (3.79, 43.67, False)],
)
def test_point_in_ring(lon: float, lat: float, inside: bool) -> None:
    point = GeoPoint(lat=lat, lon=lon)
    assert point_in_ring(point, SQUARE) is inside
    assert point_in_ring(point, [*SQUARE, SQUARE[0]]) is inside  # closed GeoJSON ring


def test_point_in_concave_ring_and_degenerate_ring() -> None:
    # A "U" opening to the north: its notch is outside.
    u_shape = [(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)]
    assert point_in_ring(GeoPoint(lat=2, lon=0.5), u_shape)
    assert not point_in_ring(GeoPoint(lat=2, lon=1.5), u_shape)
    assert not point_in_ring(GeoPoint(lat=0, lon=0), [(0, 0), (1, 1)])


# --- find_convention ---------------------------------------------------------------


def test_explicit_commune_beats_whole_departement() -> None:
    conventions = [SSJ_HERAULT, SSJ_MONTPELLIER, SSJ_GARD]
    assert find_convention(conventions, at(MONTPELLIER)) == SSJ_MONTPELLIER
    assert find_convention(conventions, at(SAINT_GELY)) == SSJ_HERAULT


def test_departement_known_without_commune_finds_the_departement_convention() -> None:
    conventions = [SSJ_MONTPELLIER, SSJ_HERAULT]
    assert find_convention(conventions, at(None, departement="34")) == SSJ_HERAULT


def test_no_convention_outside_every_territory() -> None:
    assert find_convention([SSJ_HERAULT, SSJ_MONTPELLIER], at("30189")) is None  # Nîmes
    assert find_convention([SSJ_HERAULT], at(None)) is None
    assert find_convention([], at(MONTPELLIER)) is None


def test_polygon_of_a_unit_covers_a_point_without_commune() -> None:
    drawn = BRIGADE.model_copy(update={"communes": [], "polygons": [SQUARE]})
    convention = SSJ_GARD.model_copy(update={"id": "ssj-polygone", "units": [drawn]})
    inside = at(None, point=GeoPoint(lat=43.69, lon=3.81))
    assert find_convention([SSJ_HERAULT, convention], inside) == convention
    assert find_convention([convention], at(None, point=GeoPoint(lat=43.60, lon=3.88))) is None


def test_listed_commune_is_trusted_even_across_a_departement_border() -> None:
    cross = SSJ_MONTPELLIER.model_copy(
        update={"id": "ssj-agglo", "departement": "30", "communes": [MONTPELLIER]}
    )
    assert find_convention([cross], at(MONTPELLIER)) == cross


# --- competent_units ---------------------------------------------------------------


def test_police_zone_commune_gets_the_commissariat() -> None:
    assert competent_units(SSJ_HERAULT, at(MONTPELLIER)) == [COMMISSARIAT]
    assert competent_units(SSJ_HERAULT, at(CASTELNAU)) == [COMMISSARIAT]


def test_gendarmerie_zone_commune_gets_the_brigade() -> None:
    assert competent_units(SSJ_HERAULT, at(SAINT_GELY)) == [BRIGADE]


def test_polygon_decides_without_an_insee_code() -> None:
    drawn = BRIGADE.model_copy(update={"polygons": [SQUARE]})
    convention = SSJ_HERAULT.model_copy(update={"units": [COMMISSARIAT, drawn, SAMU]})
    assert competent_units(convention, at(None, departement="34", point=GeoPoint(lat=43.69, lon=3.81))) == [
        drawn
    ]


def test_unknown_commune_goes_to_the_departmental_fallback_units_with_the_reason() -> None:
    decision = route([SSJ_HERAULT], at("34999"), WINTER_NIGHT)
    assert decision.fallback is Fallback.DEPARTEMENTAL
    assert list(decision.units) == [CENTRES]
    assert ids(decision.plan.tiers[0].recipients) == ["chef-de-salle"]
    assert decision.reason is not None and decision.reason.startswith("zone non déterminée")
    assert any("Aucune unité compétente (commune 34999)" in n for n in decision.notes)
    assert competent_units(SSJ_HERAULT, at(None, departement="34")) == [CENTRES]


def test_fallback_never_returns_nothing_when_the_convention_has_units() -> None:
    samu_only = SSJ_GARD
    assert competent_units(samu_only, at("30189")) == list(samu_only.units)


# --- build_plan --------------------------------------------------------------------


def test_plan_for_montpellier_at_night() -> None:
    plan = build_plan(SSJ_HERAULT, at(MONTPELLIER), WINTER_NIGHT)
    assert plan.repeats == 1
    first, second = plan.tiers
    assert first.ack_timeout_s == 90
    assert first.recipients == (
        Recipient(
            contact_id="officier-permanence",
            name="Officier de permanence",
            phone="+33639980101",
            channels=(Channel.SMS, Channel.VOICE),
            unit_id="dipn-34-montpellier",
            unit_name="Commissariat central de Montpellier",
            priority=1,
        ),
    )
    # The commissaire works office hours: skipped at 22:30. Sorted by priority, then convention order.
    assert ids(second.recipients) == ["officier-permanence", "regulation-samu", "cic-montpellier"]
    assert second.ack_timeout_s == 120


def test_contact_hours_are_read_in_paris_time() -> None:
    plan = build_plan(SSJ_HERAULT, at(MONTPELLIER), SUMMER_MORNING)  # 08:00 UTC = 10:00 CEST
    expected = ["officier-permanence", "regulation-samu", "cic-montpellier", "commissaire"]
    assert ids(plan.tiers[1].recipients) == expected
    evening = datetime(2025, 7, 15, 17, 30, tzinfo=UTC)  # 19:30 CEST: after hours
    assert "commissaire" not in ids(build_plan(SSJ_HERAULT, at(MONTPELLIER), evening).tiers[1].recipients)


def test_off_duty_contacts_fall_through_to_the_next_priority_never_to_silence() -> None:
    # At night the brigade commander (priority 1, office hours) is off duty: the
    # next priority of the same unit that is on duty (the CORG desk) takes tier 1.
    decision = route([SSJ_HERAULT], at(SAINT_GELY), WINTER_NIGHT)
    assert decision.fallback is None
    assert ids(decision.plan.tiers[0].recipients) == ["corg-34"]
    assert any("priorité suivante" in n for n in decision.notes)
    assert ids(decision.plan.tiers[1].recipients) == ["regulation-samu", "corg-34"]


def test_channels_are_deduplicated() -> None:
    plan = build_plan(SSJ_HERAULT, at(SAINT_GELY), WINTER_NIGHT)
    corg = next(r for r in plan.tiers[1].recipients if r.contact_id == "corg-34")
    assert corg.channels == (Channel.VOICE,)


def test_a_contact_listed_twice_in_a_tier_is_notified_once() -> None:
    twice = SSJ_HERAULT.model_copy(
        update={
            "tiers": [
                EscalationTier(
                    targets=[
                        TierTarget(unit="competent"),
                        TierTarget(unit="dipn-34-montpellier"),
                        TierTarget(unit="samu-34"),
                    ]
                )
            ]
        }
    )
    shared_desk = SAMU.model_copy(
        update={"contacts": [Contact(id="autre-nom-cic", name="CIC (via SAMU)", phone="+33465710101")]}
    )
    convention = twice.model_copy(update={"units": [COMMISSARIAT, BRIGADE, shared_desk]})
    plan = build_plan(convention, at(MONTPELLIER), WINTER_NIGHT)
    assert ids(plan.tiers[0].recipients) == ["officier-permanence", "cic-montpellier"]


def test_unknown_unit_and_empty_tiers_are_skipped_with_notes() -> None:
    convention = SSJ_HERAULT.model_copy(
        update={
            "tiers": [
                EscalationTier(targets=[TierTarget(unit="brigade-inexistante")]),
                EscalationTier(targets=[TierTarget(unit="samu-34")], ack_timeout_s=60),
            ]
        }
    )
    decision = route([convention], at(MONTPELLIER), WINTER_NIGHT)
    assert decision.plan is not None
    assert len(decision.plan.tiers) == 1
    assert ids(decision.plan.tiers[0].recipients) == ["regulation-samu"]
    assert decision.plan.tiers[0].ack_timeout_s == 60
    assert any("brigade-inexistante" in n for n in decision.notes)
    assert any("Niveau 1 de la convention sans destinataire" in n for n in decision.notes)


def test_naive_now_is_taken_as_utc_not_as_server_local_time() -> None:
    naive_morning = SUMMER_MORNING.replace(tzinfo=None)
    assert build_plan(SSJ_HERAULT, at(MONTPELLIER), naive_morning) == build_plan(
        SSJ_HERAULT, at(MONTPELLIER), SUMMER_MORNING
    )


# --- route -----------------------------------------------------------------------------


def test_route_without_convention_goes_to_the_deployment_contact() -> None:
    decision = route([SSJ_HERAULT], at("30189"), WINTER_NIGHT)
    assert decision.convention is None
    assert decision.fallback is Fallback.DEPLOYMENT
    assert [t.recipients for t in decision.plan.tiers] == [(DEPLOYMENT,)]
    assert decision.units == ()
    assert decision.reason is not None and "aucune convention" in decision.reason


def test_route_unknown_everything_goes_to_the_deployment_contact() -> None:
    decision = route([SSJ_HERAULT], at(None), WINTER_NIGHT)
    assert decision.convention is None
    assert decision.plan.tiers[0].recipients[0].contact_id == DEPLOYMENT_CONTACT_ID
    assert decision.reason == "aucune convention SSJ ne couvre cette position — adresse sans commune connue"


def test_route_montpellier() -> None:
    decision = route([SSJ_HERAULT, SSJ_MONTPELLIER], at(MONTPELLIER), WINTER_NIGHT)
    assert decision.convention == SSJ_MONTPELLIER
    assert decision.units == (COMMISSARIAT,)
    assert decision.plan is not None
    assert ids(decision.plan.tiers[0].recipients) == ["officier-permanence", "cic-montpellier"]
    assert decision.notes == ()


def test_a_convention_with_nobody_on_duty_ends_with_the_deployment_contact() -> None:
    asleep = Contact(
        id="samu-30-chef", name="Chef", phone="+33465710130", hours=[Hours(start=time(8), end=time(9))]
    )
    nobody = SSJ_GARD.model_copy(
        update={"units": [SAMU.model_copy(update={"id": "samu-30", "contacts": [asleep]})]}
    )
    decision = route([nobody], at("30189"), WINTER_NIGHT)
    assert decision.convention == nobody
    assert decision.fallback is Fallback.DEPLOYMENT
    assert decision.plan.tiers[0].recipients == (DEPLOYMENT,)
    assert decision.reason is not None
    assert "aucun contact de la convention ssj-gard en service" in decision.reason


# --- end to end through the pure core -----------------------------------------------------------


def test_home_visit_in_saint_gely_alerts_the_brigade_first() -> None:
    from datetime import timedelta

    from dispatcher.alerting.escalation import Notify, start
    from dispatcher.directory.location import LocationPolicy, active_visit, known_places, resolve_location
    from dispatcher.domain import Address, AlertKind, HomeVisit

    visit = HomeVisit(
        id="visite-nuit",
        practitioner_id="dr-martin",
        address=Address(
            label="5 chemin de la Garrigue, 34980 Saint-Gély-du-Fesc",
            access_code="1987",
            insee=SAINT_GELY,
            point=GeoPoint(lat=43.69253, lon=3.80498),
        ),
        starts_at=WINTER_NIGHT - timedelta(minutes=50),
        ends_at=WINTER_NIGHT - timedelta(minutes=5),  # running late
    )
    policy = LocationPolicy()
    current = active_visit([visit], "dr-martin", WINTER_NIGHT, overrun_s=policy.visit_overrun_s)
    location = resolve_location(
        fix=None, now=WINTER_NIGHT, visit=current, known_places=known_places(visits=[visit]), policy=policy
    )
    decision = route([SSJ_MONTPELLIER, SSJ_HERAULT], location, WINTER_NIGHT)
    assert decision.convention == SSJ_HERAULT
    assert decision.units == (BRIGADE,)

    _, commands = start("alerte-1", AlertKind.ALERT, decision.plan, practitioner_phone=None)
    notified = {
        (c.recipient.contact_id, c.recipient.phone, c.channel) for c in commands if isinstance(c, Notify)
    }
    # 22:30: the brigade commander is off duty, the CORG desk (next priority) is alerted.
    assert notified == {("corg-34", "+33465710111", Channel.VOICE)}


# Contact hours with every shape: office hours, a window across midnight, an
# empty one (start == end), minutes and seconds; Paris time through both DST
# changes of 2025.
_SHIFTS = [
    Hours(start=time(8), end=time(19)),
    Hours(start=time(22, 15), end=time(6, 30)),
    Hours(start=time(12), end=time(12)),
    Hours(start=time(7, 59, 59), end=time(8, 0, 1)),
]
_SHIFTED = Convention.model_validate(
    {
        **SSJ_HERAULT.model_dump(),
        "id": "shifted",
        "units": [
            unit.model_copy(
                update={
                    "contacts": [
                        c.model_copy(update={"hours": [_SHIFTS[(i + j) % len(_SHIFTS)]]})
                        for j, c in enumerate(unit.contacts)
                    ]
                }
            )
            for i, unit in enumerate(SSJ_HERAULT.units)
        ],
    }
)


@settings(max_examples=400)
@given(
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2025, 12, 31), timezones=st.just(UTC)),
    st.sampled_from([_SHIFTED, SSJ_HERAULT]),
    st.integers(min_value=0, max_value=2),
)
def test_a_remembered_plan_is_the_plan_built_at_that_time(
    now: datetime, convention: Convention, n: int
) -> None:
    competent = convention.units[n : n + 1] or convention.units[:1]
    # 400 instants fall in a few hour slots: most answers come from the memo, filled by earlier examples.
    assert build_convention_plan(convention, now, competent) == _build_convention_plan(
        convention, now, competent
    )
