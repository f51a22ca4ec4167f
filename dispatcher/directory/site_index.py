"""The sites nearest a GPS fix, from memory: any cabinet or MMG can describe where she is.

A fix is described relative to the nearest known address of *any* kind, not
only the practitioner's own places (issue 10). With thousands of sites a scan
per alert would cost milliseconds on the alert path, so the sites' points sit
in an STRtree (shapely) rebuilt when the sites change, before the new
snapshot serves any alert.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import shapely
from shapely import STRtree

from dispatcher.domain import Site

# A box of ±0.01° (about 1 km) around the fix: the sites that may be "close".
_NEAR_DEG = 0.01


class SiteIndex:
    """Geocoded sites, queried by point."""

    def __init__(self, sites: Iterable[Site] = ()) -> None:
        self._sites = [s for s in sites if s.address.point is not None]
        points = [
            shapely.Point(s.address.point.lon, s.address.point.lat) for s in self._sites if s.address.point
        ]
        self._tree = STRtree(np.array(points, dtype=object))

    def near(self, lat: float, lon: float) -> list[Site]:
        """Sites within about 1 km of (lat, lon), else the nearest one (planar), else none."""
        if not self._sites:
            return []
        box = shapely.box(lon - _NEAR_DEG, lat - _NEAR_DEG, lon + _NEAR_DEG, lat + _NEAR_DEG)
        hits = self._tree.query(box)
        if len(hits) == 0:
            nearest = self._tree.nearest(shapely.Point(lon, lat))
            hits = [] if nearest is None else [nearest]
        return [self._sites[int(i)] for i in hits]
