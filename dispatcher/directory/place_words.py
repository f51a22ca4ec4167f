"""Words for places: distances, compass directions, ages and plain GSM-7 text (pure).

Split out of :mod:`dispatcher.directory.location`, which re-exports the public names.
Descriptions avoid characters outside the GSM-7 alphabet where a plain
equivalent exists, so that an SMS is not silently switched to UCS-2.
"""

from __future__ import annotations

import math
import re

from geopy.distance import geodesic

from dispatcher.domain import Address, GeoPoint

__all__ = [
    "address_line",
    "approx_distance_m",
    "distance_m",
    "format_age",
    "format_coords",
    "offset_phrase",
    "plain_text",
]

# Where a point lies from a place, 8-point compass, with the French preposition.
_COMPASS = (
    "au nord",
    "au nord-est",
    "à l'est",
    "au sud-est",
    "au sud",
    "au sud-ouest",
    "à l'ouest",
    "au nord-ouest",
)

# Characters that would force an SMS into UCS-2, mapped to a plain GSM-7 equivalent.
_PLAIN = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2026": "...",
        "\u00a0": " ",
        "\u202f": " ",
        "\u2009": " ",
        "\u0153": "oe",
        "\u0152": "OE",
        "\u00b1": "+/-",
    }
)


# French guillemets carry inner (often non-breaking) spaces that straight quotes do not.
_GUILLEMETS = re.compile(r"\u00ab\s*|\s*\u00bb")  # \s covers the non-breaking spaces too


def plain_text(text: str) -> str:
    """Replace typographic characters by their plain GSM-7 equivalents.

    Accented letters are kept: é è à ù are GSM-7, and the others (â, ç, ...)
    come from addresses the SMS encoder transliterates anyway.
    """
    return _GUILLEMETS.sub('"', text).translate(_PLAIN)


# One instance, so that geopy builds its WGS84 Geodesic once instead of at every call
# (halves the cost; this runs on the alert's hot path). It holds no per-call state.
_WGS84 = geodesic()


def distance_m(a: GeoPoint, b: GeoPoint) -> float:
    """Geodesic (WGS84) distance in metres."""
    return float(_WGS84.measure((a.lat, a.lon), (b.lat, b.lon))) * 1000.0


def _bearing_deg(origin: GeoPoint, target: GeoPoint) -> float:
    """Initial great-circle bearing from origin to target, degrees clockwise from north.

    A spherical formula is plenty for an 8-point compass at street scale.
    """
    phi1, phi2 = math.radians(origin.lat), math.radians(target.lat)
    dlon = math.radians(target.lon - origin.lon)
    y = math.sin(dlon) * math.cos(phi2)
    x = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(dlon)
    return math.degrees(math.atan2(y, x)) % 360.0


def _compass(origin: GeoPoint, target: GeoPoint) -> str:
    return _COMPASS[round(_bearing_deg(origin, target) / 45.0) % 8]


def _format_distance(metres: float) -> str:
    rounded = round(metres / 10.0) * 10
    if rounded < 1000:
        return f"{rounded} m"
    return f"{metres / 1000:.1f} km".replace(".", ",")


def approx_distance_m(a: GeoPoint, b: GeoPoint) -> float:
    """Haversine distance: to rank places cheaply (geodesic costs ~0.1 ms a call in pure Python)."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    h = (
        math.sin((phi2 - phi1) / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(b.lon - a.lon) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(h)))


def offset_phrase(origin: GeoPoint, target: GeoPoint, what: str, distance: float | None = None) -> str:
    """'à 40 m au nord-est de <what>', or 'à moins de 10 m de <what>' when too close for a direction."""
    d = distance_m(origin, target) if distance is None else distance
    if d < 10:
        return f"à moins de 10 m de {what}"
    return f"à {_format_distance(d)} {_compass(origin, target)} de {what}"


def format_age(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 90:
        return f"il y a {s} s"
    if s < 90 * 60:
        return f"il y a {round(s / 60)} min"
    return f"il y a {s // 3600} h {round((s % 3600) / 60):02d}"


def format_coords(p: GeoPoint) -> str:
    # Decimal degrees with a dot: what responders type into a map; 5 decimals is about 1 m.
    return f"{p.lat:.5f}, {p.lon:.5f}"


def address_line(address: Address) -> str:
    """Label, floor, door code and details, comma-separated."""
    parts = [address.label]
    if address.floor:
        parts.append(address.floor)
    if address.access_code:
        parts.append(f"code {address.access_code}")
    if address.details:
        parts.append(address.details)
    return ", ".join(parts)
