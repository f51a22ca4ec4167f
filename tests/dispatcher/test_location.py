"""Location resolution: order of trust, relative descriptions, territory inference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from geopy.distance import geodesic
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.directory.location import (
    KnownPlace,
    LocationPolicy,
    active_visit,
    departement_of,
    describe_relative,
    distance_m,
    known_places,
    plain_text,
    resolve_location,
)
from dispatcher.domain import Address, GeoPoint, HomeVisit, LocationSource, Site, SiteKind
from protocol.messages import Location

NOW = datetime(2025, 1, 14, 21, 30, tzinfo=UTC)  # a winter evening, 22:30 in Montpellier

# GSM 03.38 basic alphabet + extension table: what an SMS can carry without UCS-2.
GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)

CABINET_POINT = GeoPoint(lat=43.61092, lon=3.87723)
CABINET = Site(
    id="cabinet-loge",
    kind=SiteKind.CABINET,
    name="Cabinet de la Loge",
    address=Address(
        label="12 rue de la Loge, 34000 Montpellier",
        floor="2e étage",
        access_code="4521B",
        insee="34172",
        point=CABINET_POINT,
    ),
)
VISIT_POINT = GeoPoint(lat=43.69253, lon=3.80498)
VISIT_ADDRESS = Address(
    label="5 chemin de la Garrigue, 34980 Saint-Gély-du-Fesc",
    floor="RDC",
    access_code="1987",
    details="portail vert, interphone Durand",
    insee="34255",
    point=VISIT_POINT,
)
VISIT = HomeVisit(
    id="visite-1",
    practitioner_id="dr-martin",
    address=VISIT_ADDRESS,
    starts_at=NOW - timedelta(minutes=20),
    ends_at=NOW + timedelta(minutes=25),
    note="patient agité, chien",
)
PLACES = known_places(sites=[CABINET], visits=[VISIT])


def offset(origin: GeoPoint, metres: float, bearing: float) -> GeoPoint:
    dest = geodesic(meters=metres).destination((origin.lat, origin.lon), bearing=bearing)
    return GeoPoint(lat=dest.latitude, lon=dest.longitude)


def fix_at(point: GeoPoint, *, age_s: float = 20, accuracy_m: float = 15) -> Location:
    ts = round((NOW.timestamp() - age_s) * 1000)
    return Location(lat=point.lat, lon=point.lon, accuracy_m=accuracy_m, fix_ts=ts, source="gnss")


def assert_gsm7(text: str) -> None:
    outside = {c for c in text if c not in GSM7}
    assert not outside, f"non GSM-7 characters {outside!r} in {text!r}"


# --- helpers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("insee", "departement"),
    [("34172", "34"), ("34255", "34"), ("2A004", "2A"), ("2B033", "2B"), ("97411", "974"), ("97101", "971")],
)
def test_departement_of(insee: str, departement: str) -> None:
    assert departement_of(insee) == departement


def test_plain_text_replaces_typographic_characters_but_keeps_gsm7_accents() -> None:
    text = plain_text("Rue de l’Œuvre « côté cour » — 3\u00a0étage\u202fà gauche ±5")
    assert text == 'Rue de l\'OEuvre "côté cour" - 3 étage à gauche +/-5'


def test_known_place_requires_coordinates() -> None:
    with pytest.raises(ValueError, match="no coordinates"):
        KnownPlace(label="cabinet", address=Address(label="1 rue X, 34000 Montpellier"), kind="cabinet")


def test_known_places_skips_addresses_that_are_not_geocoded() -> None:
    site = CABINET.model_copy(update={"address": Address(label="sans coordonnées")})
    places = known_places(sites=[site, CABINET], visits=[VISIT])
    assert [p.kind for p in places] == ["cabinet", "visite"]
    assert places[0].label == "Cabinet de la Loge"  # not "cabinet Cabinet de la Loge"


# --- describe_relative ---------------------------------------------------------


@pytest.mark.parametrize(
    ("bearing", "phrase"),
    [
        (0, "au nord"),
        (45, "au nord-est"),
        (90, "à l'est"),
        (135, "au sud-est"),
        (180, "au sud"),
        (225, "au sud-ouest"),
        (270, "à l'ouest"),
        (315, "au nord-ouest"),
        (350, "au nord"),  # rounds to the nearest of 8 points
    ],
)
def test_describe_relative_gives_8_point_compass_direction(bearing: float, phrase: str) -> None:
    place = KnownPlace(label="cabinet", address=CABINET.address, kind="cabinet")
    text = describe_relative(offset(CABINET_POINT, 200, bearing), place)
    assert text == f"à 200 m {phrase} de 12 rue de la Loge, 34000 Montpellier (cabinet)"


def test_describe_relative_example_of_the_brief() -> None:
    place = KnownPlace(label="cabinet", address=CABINET.address, kind="cabinet")
    assert describe_relative(offset(CABINET_POINT, 41, 44), place) == (
        "à 40 m au nord-est de 12 rue de la Loge, 34000 Montpellier (cabinet)"
    )


def test_describe_relative_in_km_and_when_very_close() -> None:
    place = KnownPlace(label="cabinet", address=CABINET.address, kind="cabinet")
    assert describe_relative(offset(CABINET_POINT, 1234, 180), place).startswith("à 1,2 km au sud de 12 rue")
    assert describe_relative(offset(CABINET_POINT, 4, 90), place).startswith("à moins de 10 m de 12 rue")


def test_distance_is_geodesic() -> None:
    assert distance_m(CABINET_POINT, offset(CABINET_POINT, 500, 33)) == pytest.approx(500, abs=0.01)


# --- active_visit ----------------------------------------------------------------


def visit(vid: str, start_min: int, end_min: int, practitioner: str = "dr-martin") -> HomeVisit:
    return HomeVisit(
        id=vid,
        practitioner_id=practitioner,
        address=VISIT_ADDRESS,
        starts_at=NOW + timedelta(minutes=start_min),
        ends_at=NOW + timedelta(minutes=end_min),
    )


def test_active_visit_picks_the_covering_visit_that_started_last() -> None:
    visits = [visit("a", -90, 30), visit("b", -10, 20), visit("c", 5, 40), visit("d", -60, -30)]
    assert active_visit(visits, "dr-martin", NOW) == visits[1]


def test_active_visit_ignores_other_practitioners_and_ended_visits() -> None:
    visits = [visit("a", -10, 20, practitioner="dr-other"), visit("b", -40, 0)]
    assert active_visit(visits, "dr-martin", NOW) is None  # end is exclusive
    assert active_visit([], "dr-martin", NOW) is None


def test_active_visit_overrun_keeps_a_visit_that_runs_late() -> None:
    late = visit("late", -60, -10)
    assert active_visit([late], "dr-martin", NOW) is None
    assert active_visit([late], "dr-martin", NOW, overrun_s=1800) == late


def test_active_visit_accepts_now_in_another_timezone() -> None:
    from zoneinfo import ZoneInfo

    paris_now = NOW.astimezone(ZoneInfo("Europe/Paris"))
    assert active_visit([VISIT], "dr-martin", paris_now) == VISIT


# --- resolve_location: order of trust ----------------------------------------


def test_fresh_accurate_fix_wins_and_carries_the_nearby_known_address() -> None:
    point = offset(VISIT_POINT, 40, 45)
    loc = resolve_location(
        fix=fix_at(point, age_s=30, accuracy_m=12), now=NOW, visit=VISIT, site=CABINET, known_places=PLACES
    )
    assert loc.source is LocationSource.GPS
    assert loc.point == point
    assert loc.accuracy_m == 12
    assert loc.fix_age_s == pytest.approx(30, abs=0.01)
    assert not loc.stale
    assert loc.address == VISIT_ADDRESS
    assert (loc.insee, loc.departement) == ("34255", "34")
    assert loc.description.startswith(
        "Position GPS (précision 12 m, il y a 30 s) : à 40 m au nord-est de "
        "5 chemin de la Garrigue, 34980 Saint-Gély-du-Fesc (visite à domicile). "
        f"Coordonnées : {point.lat:.5f}, {point.lon:.5f}."
    )
    assert loc.description.endswith(
        "Adresse connue la plus proche : 5 chemin de la Garrigue, 34980 Saint-Gély-du-Fesc, RDC, "
        "code 1987, portail vert, interphone Durand."
    )


def test_fix_away_from_known_addresses_infers_only_the_departement() -> None:
    point = offset(CABINET_POINT, 900, 270)  # 900 m west of the cabinet: same département, commune unsure
    loc = resolve_location(fix=fix_at(point), now=NOW, known_places=PLACES)
    assert loc.source is LocationSource.GPS
    assert loc.address is None
    assert loc.insee is None
    assert loc.departement == "34"
    assert "à 900 m à l'ouest de 12 rue de la Loge" in loc.description
    assert "Adresse connue" not in loc.description


def test_fix_far_from_everything_has_no_territory_but_coordinates() -> None:
    nimes = GeoPoint(lat=43.8367, lon=4.3601)
    loc = resolve_location(fix=fix_at(nimes), now=NOW, known_places=PLACES)
    assert (loc.insee, loc.departement) == (None, None)
    assert "43.83670, 4.36010" in loc.description

    alone = resolve_location(fix=fix_at(nimes), now=NOW)
    assert (
        alone.description == "Position GPS (précision 15 m, il y a 20 s) : Coordonnées : 43.83670, 4.36010."
    )


def test_policy_thresholds_are_inclusive() -> None:
    policy = LocationPolicy(max_fix_age_s=60, max_accuracy_m=50)
    edge = fix_at(VISIT_POINT, age_s=60, accuracy_m=50)
    assert resolve_location(fix=edge, now=NOW, visit=VISIT, policy=policy).source is LocationSource.GPS


@pytest.mark.parametrize("fix", [fix_at(VISIT_POINT, age_s=121), fix_at(VISIT_POINT, accuracy_m=151)])
def test_old_or_imprecise_fix_gives_way_to_the_home_visit(fix: Location) -> None:
    loc = resolve_location(fix=fix, now=NOW, visit=VISIT, site=CABINET, known_places=PLACES)
    assert loc.source is LocationSource.HOME_VISIT
    assert loc.address == VISIT_ADDRESS
    assert loc.point == VISIT_POINT
    assert (loc.insee, loc.departement) == ("34255", "34")
    assert not loc.stale
    assert loc.description == (
        "Visite à domicile : 5 chemin de la Garrigue, 34980 Saint-Gély-du-Fesc, RDC, code 1987, "
        "portail vert, interphone Durand. Note : patient agité, chien. Coordonnées : 43.69253, 3.80498."
    )


def test_home_visit_warns_when_an_untrusted_fix_puts_her_elsewhere() -> None:
    far = offset(VISIT_POINT, 2300, 180)
    loc = resolve_location(fix=fix_at(far, age_s=300, accuracy_m=40), now=NOW, visit=VISIT)
    assert loc.source is LocationSource.HOME_VISIT
    assert (
        "Attention : dernière position GPS à 2,3 km au sud de cette adresse (il y a 5 min" in loc.description
    )


def test_home_visit_overrun_is_said() -> None:
    late = VISIT.model_copy(update={"ends_at": NOW - timedelta(minutes=12)})
    loc = resolve_location(fix=None, now=NOW, visit=late)
    assert loc.description.startswith("Visite à domicile (fin déclarée il y a 12 min) : 5 chemin")


def test_site_when_no_fix_and_no_visit() -> None:
    loc = resolve_location(fix=None, now=NOW, site=CABINET, known_places=PLACES)
    assert loc.source is LocationSource.SITE
    assert loc.address == CABINET.address
    assert (loc.insee, loc.departement) == ("34172", "34")
    assert loc.description == (
        "Cabinet de la Loge : 12 rue de la Loge, 34000 Montpellier, 2e étage, code 4521B. "
        "Coordonnées : 43.61092, 3.87723."
    )


def test_site_without_geocoding_still_resolves() -> None:
    mmg = Site(
        id="mmg-nord",
        kind=SiteKind.MMG,
        name="MMG Nord",
        address=Address(label="Av. du Père Soulas, Montpellier"),
    )
    loc = resolve_location(fix=None, now=NOW, site=mmg)
    assert loc.source is LocationSource.SITE
    assert loc.point is None and loc.departement is None
    assert loc.description == "Maison médicale de garde MMG Nord : Av. du Père Soulas, Montpellier."


def test_rejected_fix_becomes_the_stale_last_known_position() -> None:
    point = offset(CABINET_POINT, 300, 180)
    loc = resolve_location(fix=fix_at(point, age_s=720, accuracy_m=30), now=NOW, known_places=PLACES)
    assert loc.source is LocationSource.LAST_KNOWN
    assert loc.stale
    assert loc.point == point
    assert loc.fix_age_s == pytest.approx(720, abs=0.01)
    assert loc.description.startswith(
        "Dernière position connue, NON A JOUR (il y a 12 min, précision 30 m) : "
        "à 300 m au sud de 12 rue de la Loge"
    )


def test_last_known_is_the_most_recent_of_the_rejected_fix_and_the_previous_one() -> None:
    newer = fix_at(VISIT_POINT, age_s=400, accuracy_m=500)
    older = fix_at(CABINET_POINT, age_s=3600, accuracy_m=10)
    for fix, last in [(newer, older), (older, newer)]:
        loc = resolve_location(fix=fix, now=NOW, last_known=last, known_places=PLACES)
        assert loc.source is LocationSource.LAST_KNOWN
        assert loc.point == VISIT_POINT


def test_last_known_alone() -> None:
    loc = resolve_location(fix=None, now=NOW, last_known=fix_at(CABINET_POINT, age_s=2 * 3600 + 300))
    assert loc.source is LocationSource.LAST_KNOWN and loc.stale
    assert "il y a 2 h 05" in loc.description


def test_nothing_known_is_unknown_but_still_a_location() -> None:
    loc = resolve_location(fix=None, now=NOW)
    assert loc.source is LocationSource.UNKNOWN
    assert loc.point is None and loc.address is None and loc.departement is None
    assert loc.description.startswith("Position inconnue")


def test_device_clock_ahead_counts_as_fresh() -> None:
    loc = resolve_location(fix=fix_at(CABINET_POINT, age_s=-5), now=NOW, known_places=PLACES)
    assert loc.source is LocationSource.GPS
    assert loc.fix_age_s == 0


def test_descriptions_stay_in_gsm7_even_with_typographic_addresses() -> None:
    curly = Address(
        label="3 rue de l’Œuf – Bat. « A », 34000 Montpellier",
        floor="1er\u00a0étage",
        insee="34172",
        point=CABINET_POINT,
    )
    site = CABINET.model_copy(update={"address": curly})
    places = known_places(sites=[site])
    cases = [
        resolve_location(fix=fix_at(offset(CABINET_POINT, 30, 10)), now=NOW, known_places=places),
        resolve_location(fix=None, now=NOW, site=site),
        resolve_location(fix=fix_at(CABINET_POINT, age_s=900), now=NOW, known_places=places),
        resolve_location(fix=None, now=NOW, visit=VISIT),
        resolve_location(fix=None, now=NOW),
    ]
    for loc in cases:
        assert_gsm7(loc.description)


@given(
    lat=st.floats(min_value=41.0, max_value=51.0),
    lon=st.floats(min_value=-5.0, max_value=9.5),
    age=st.floats(min_value=-60, max_value=86_400),
    accuracy=st.floats(min_value=0, max_value=100_000),
    with_visit=st.booleans(),
    with_site=st.booleans(),
)
def test_resolution_never_fails(
    lat: float, lon: float, age: float, accuracy: float, with_visit: bool, with_site: bool
) -> None:
    fix = fix_at(GeoPoint(lat=lat, lon=lon), age_s=age, accuracy_m=accuracy)
    loc = resolve_location(
        fix=fix,
        now=NOW,
        visit=VISIT if with_visit else None,
        site=CABINET if with_site else None,
        known_places=PLACES,
    )
    assert loc.description
    assert_gsm7(loc.description)
    assert loc.source is not LocationSource.UNKNOWN
