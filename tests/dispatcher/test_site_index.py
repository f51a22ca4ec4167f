"""Any site can describe where a fix is: the sites near a point, from memory."""

from __future__ import annotations

from dispatcher.directory.site_index import SiteIndex
from dispatcher.domain import Address, GeoPoint, Site, SiteKind


def site(site_id: str, lat: float, lon: float) -> Site:
    address = Address(label=f"{site_id}, 34000 Montpellier", point=GeoPoint(lat=lat, lon=lon))
    return Site(id=site_id, kind=SiteKind.CABINET, name=site_id, address=address)


def test_sites_within_a_kilometre_else_the_nearest_else_none() -> None:
    near, other, far = site("near", 43.6215, 3.8727), site("other", 43.6250, 3.8760), site("far", 43.70, 3.95)
    unplaced = Site(id="unplaced", kind=SiteKind.MMG, name="x", address=Address(label="x"))
    index = SiteIndex([near, other, far, unplaced])
    assert {s.id for s in index.near(43.6220, 3.8730)} == {"near", "other"}
    assert [s.id for s in index.near(43.80, 4.10)] == ["far"]  # nothing close: the nearest one
    assert SiteIndex([unplaced]).near(43.62, 3.87) == []
