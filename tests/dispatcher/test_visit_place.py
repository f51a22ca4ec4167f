"""Visits that always route: placing a declared visit (real BAN sandbox over HTTP), and what
responders read when a fresh GPS fix and the active visit agree or disagree (issue 10)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dispatcher.alerting.texts import alert_sms, alert_speech
from dispatcher.directory.communes import CommuneIndex, parse_communes
from dispatcher.directory.geocoding import AddressGeocoder
from dispatcher.directory.location import LocationPolicy, resolve_location
from dispatcher.domain import Address, AlertContext, AlertKind, Device, DeviceKind, GeoPoint, Practitioner
from dispatcher.settings import GeocoderSettings
from dispatcher.visits.place import UnroutableVisit, place_visit_address
from sandbox.ban_server import BanSandbox
from tests.dispatcher.test_location import NOW, VISIT, VISIT_POINT, fix_at, offset
from tests.support.system import COMMUNES

INDEX = CommuneIndex(parse_communes(COMMUNES.read_bytes(), "communes.geojson"))


# --- placing a visit ------------------------------------------------------------------------


async def test_a_geocodable_visit_gets_its_point_and_commune(geocoder: AddressGeocoder) -> None:
    placed, warning = await place_visit_address(
        Address(label="12 rue de la Loge, 34000 Montpellier"), geocoder, INDEX
    )
    assert placed.point is not None and placed.insee == "34172" and warning is None


async def test_geocoder_down_the_postcode_and_commune_route_the_visit(ban: BanSandbox) -> None:
    ban.fail_next(10, status=503)
    settings = GeocoderSettings(domain=ban.base_domain, scheme="http", timeout_s=5)
    async with AddressGeocoder(settings, backoff_s=0.001) as down:
        placed, warning = await place_visit_address(
            Address(label="12 Rue des Cistes, 34790 Grabels", access_code="B4521"), down, INDEX
        )
    assert (placed.point, placed.insee, placed.access_code) == (None, "34116", "B4521")
    assert warning == "géocodeur injoignable : alerte routée par la commune 34116 (sans coordonnées)"


async def test_a_commune_level_answer_of_the_ban_routes_the_visit(geocoder: AddressGeocoder) -> None:
    # Not in the loaded contours' names (no postcode): the BAN's commune-level match gives the code.
    placed, warning = await place_visit_address(Address(label="Lattes"), geocoder, CommuneIndex())
    assert (placed.point, placed.insee) == (None, "34129")
    assert warning is not None and warning.startswith("adresse introuvable")


async def test_a_visit_nobody_can_place_is_refused_naming_the_field(geocoder: AddressGeocoder) -> None:
    with pytest.raises(UnroutableVisit) as refused:
        await place_visit_address(Address(label="chez Mme Durand, derrière l'église"), geocoder, INDEX)
    assert refused.value.field == "address.label"
    assert "code postal" in refused.value.reason


# --- a fresh fix and the active visit -------------------------------------------------------------


def context_at(distance_m: float, accuracy_m: float = 15) -> AlertContext:
    point = offset(VISIT_POINT, distance_m, 90)
    location = resolve_location(
        fix=fix_at(point, accuracy_m=accuracy_m), now=NOW, visit=VISIT, policy=LocationPolicy()
    )
    return AlertContext(
        alert_id="a-1",
        kind=AlertKind.ALERT,
        received_at=NOW,
        practitioner=Practitioner(
            id="dr-martin", first_name="Paul", last_name="Martin", rpps="10001234567", phones=["+33639980150"]
        ),
        device=Device(id="bracelet-1", kind=DeviceKind.BRACELET),
        location=location,
    )


def test_a_fix_110_m_from_the_visit_keeps_floor_and_door_code_and_gives_the_gps() -> None:
    ctx = context_at(110)
    assert ctx.location.at_address and ctx.location.address == VISIT.address
    sms = alert_sms(ctx)
    assert "5 chemin de la Garrigue" in sms and "RDC" in sms and "code porte 1987" in sms
    assert f"{ctx.location.point.lat:.5f}" in sms  # type: ignore[union-attr]
    assert "Code de la porte : 1, 9, 8, 7" in alert_speech(ctx)


def test_within_its_accuracy_a_farther_fix_is_still_at_the_visit() -> None:
    loose = LocationPolicy(max_accuracy_m=500)  # a deployment trusting coarse fixes
    point = offset(VISIT_POINT, 350, 90)
    assert resolve_location(fix=fix_at(point, accuracy_m=400), now=NOW, visit=VISIT, policy=loose).at_address
    assert not resolve_location(
        fix=fix_at(point, accuracy_m=30), now=NOW, visit=VISIT, policy=loose
    ).at_address


def test_a_fix_far_from_the_visit_gives_both_places_and_says_which_is_newer() -> None:
    ctx = context_at(2500)
    assert not ctx.location.at_address
    other = ctx.location.other_place
    assert other is not None and other.startswith("Visite déclarée : 5 chemin de la Garrigue")
    assert "code 1987" in other and "à 2,5 km à l'ouest de la position GPS" in other
    assert other.endswith("la position GPS est plus récente.")
    sms = alert_sms(ctx)
    assert "Visite déclarée" in sms and "code 1987" in sms
    assert other in alert_speech(ctx)


def test_a_visit_that_started_after_the_fix_is_the_newer_place() -> None:
    late = VISIT.model_copy(update={"starts_at": NOW - timedelta(seconds=5)})
    point = offset(VISIT_POINT, 2500, 90)
    location = resolve_location(fix=fix_at(point, age_s=60), now=NOW, visit=late)
    assert location.other_place is not None and location.other_place.endswith("la visite est plus récente.")
    assert location.point == point and location.insee is None  # no contours passed: commune unknown
    with_contours = resolve_location(
        fix=fix_at(GeoPoint(lat=43.648, lon=3.799)), now=NOW, commune_at=INDEX.insee_at
    )
    assert (with_contours.insee, with_contours.departement) == ("34116", "34")
