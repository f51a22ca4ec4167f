"""Where a declared home visit is: a visit is accepted only if it can be routed.

The one rule the REST API and the CLI share (issue 10): a visit's address is
geocoded (BAN) when possible; when it cannot be (no precise match, geocoder
down), it is accepted only if its commune resolves to an INSEE code — from the
commune contours loaded offline (postcode + name in the label), else from the
BAN's commune-level answer — so that the alert is routed by that commune.
Otherwise it is refused, naming the field, never stored without a place.
"""

from __future__ import annotations

from dispatcher.directory.communes import CommuneIndex
from dispatcher.directory.geocoding import AddressGeocoder, AddressNotFound, GeocodingUnavailable
from dispatcher.domain import Address

__all__ = ["UnroutableVisit", "place_visit_address"]


class UnroutableVisit(Exception):
    """No place for the visit: neither coordinates nor commune (``field`` names the input)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


async def place_visit_address(
    address: Address, geocoder: AddressGeocoder | None, communes: CommuneIndex
) -> tuple[Address, str | None]:
    """The address with ``point``/``insee`` filled in, and a French warning when only the
    commune is known (None when geocoded). Raises :class:`UnroutableVisit`."""
    if address.point is not None:
        insee = address.insee or communes.insee_at(address.point.lat, address.point.lon)
        return address.model_copy(update={"insee": insee}), None
    failure = "aucun géocodeur configuré"
    if geocoder is not None:
        try:
            return await geocoder.geocode(address), None
        except AddressNotFound as exc:
            failure = f"adresse introuvable ({exc.reason})"
        except GeocodingUnavailable:
            failure = "géocodeur injoignable"
    insee = address.insee or communes.insee_of_label(address.label)
    if insee is None and geocoder is not None and failure.startswith("adresse introuvable"):
        insee = await _ban_commune(geocoder, address.label)
    if insee is None:
        raise UnroutableVisit(
            "address.label",
            f"{failure}, et ni le code postal ni la commune ne donnent un code INSEE connu :"
            " écrivez l'adresse complète, code postal et commune (ex. '12 rue des Cistes, 34790 Grabels')",
        )
    warning = f"{failure} : alerte routée par la commune {insee} (sans coordonnées)"
    return address.model_copy(update={"insee": insee}), warning


async def _ban_commune(geocoder: AddressGeocoder, label: str) -> str | None:
    try:
        return await geocoder.commune_code(label)
    except GeocodingUnavailable:
        return None
