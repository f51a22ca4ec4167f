"""AddressGeocoder: geopy's BANFrance over real HTTP to the BAN sandbox."""

from __future__ import annotations

import asyncio

import pytest

from broker_config.runner import free_port
from dispatcher.directory.geocoding import (
    AddressGeocoder,
    AddressNotFound,
    GeocodingError,
    GeocodingUnavailable,
)
from dispatcher.domain import Address, GeoPoint
from dispatcher.settings import GeocoderSettings
from sandbox.ban_server import BanSandbox


def test_default_settings_query_the_geoplateforme() -> None:
    # A domain with a path works: BANFrance appends '/search' to scheme://domain.
    assert AddressGeocoder(GeocoderSettings()).search_url == "https://data.geopf.fr/geocodage/search"


async def test_known_address_gets_point_and_insee(geocoder: AddressGeocoder, ban: BanSandbox) -> None:
    address = Address(
        label="45 rue du Faubourg Boutonnet, 34090 Montpellier",
        floor="2e étage",
        access_code="1234A",
        details="interphone 12",
    )
    located = await geocoder.geocode(address)
    assert located.insee == "34172"
    assert located.point == GeoPoint(lat=43.62153, lon=3.87269)
    # What the practitioner wrote is kept, only the location is added.
    assert located.model_dump(exclude={"point", "insee"}) == address.model_dump(exclude={"point", "insee"})
    assert ban.request_count == 1
    [request] = ban.requests
    assert request.path == "/search"
    assert request.params == {"q": address.label, "limit": "1"}


async def test_address_with_a_point_makes_no_request(geocoder: AddressGeocoder, ban: BanSandbox) -> None:
    address = Address(label="somewhere only we know", point=GeoPoint(lat=43.6, lon=3.9))
    assert await geocoder.geocode(address) is address
    assert ban.request_count == 0


async def test_unknown_address_is_not_found(geocoder: AddressGeocoder) -> None:
    with pytest.raises(AddressNotFound) as caught:
        await geocoder.geocode(Address(label="99 boulevard Haussmann 75009 Paris"))
    assert isinstance(caught.value, GeocodingError)
    assert caught.value.label == "99 boulevard Haussmann 75009 Paris"
    assert "Haussmann" in str(caught.value)


async def test_commune_only_match_is_not_precise_enough(geocoder: AddressGeocoder) -> None:
    with pytest.raises(AddressNotFound, match="au niveau de la commune"):
        await geocoder.geocode(Address(label="Lattes"))


async def test_wrong_house_number_is_too_uncertain(geocoder: AddressGeocoder) -> None:
    with pytest.raises(AddressNotFound, match="trop incertaine"):
        await geocoder.geocode(Address(label="14 rue de la Loge Montpellier"))


async def test_transient_errors_are_retried(geocoder: AddressGeocoder, ban: BanSandbox) -> None:
    ban.fail_next(2, status=503)
    located = await geocoder.geocode(Address(label="22 quai de Bosc 34200 Sète"))
    assert located.insee == "34301"
    assert ban.request_count == 3


async def test_persistent_outage_gives_up_after_the_attempts(ban: BanSandbox) -> None:
    settings = GeocoderSettings(domain=ban.base_domain, scheme="http", timeout_s=5)
    async with AddressGeocoder(settings, attempts=3, backoff_s=0.001) as geocoder:
        ban.fail_next(10, status=500)
        with pytest.raises(GeocodingUnavailable, match="500"):
            await geocoder.geocode(Address(label="22 quai de Bosc 34200 Sète"))
    assert ban.request_count == 3


async def test_client_errors_are_not_retried(geocoder: AddressGeocoder, ban: BanSandbox) -> None:
    ban.fail_next(1, status=400)
    with pytest.raises(GeocodingUnavailable):
        await geocoder.geocode(Address(label="22 quai de Bosc 34200 Sète"))
    assert ban.request_count == 1


async def test_service_down_is_a_clear_error() -> None:
    settings = GeocoderSettings(domain=f"127.0.0.1:{free_port()}", scheme="http", timeout_s=2)
    async with AddressGeocoder(settings, attempts=2, backoff_s=0.001) as geocoder:
        with pytest.raises(GeocodingUnavailable, match="a échoué : service injoignable"):
            await geocoder.geocode(Address(label="22 quai de Bosc 34200 Sète"))


async def test_concurrent_geocodes_share_one_session(geocoder: AddressGeocoder, ban: BanSandbox) -> None:
    labels = ["15 rue Foch Montpellier", "7 rue du Lavoir Grabels", "3 plan de l'Ormeau Ganges"]
    located = await asyncio.gather(*(geocoder.geocode(Address(label=label)) for label in labels))
    assert [a.insee for a in located] == ["34172", "34116", "34111"]
    assert ban.request_count == 3
