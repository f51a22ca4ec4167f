"""Commune contours, offline: which commune (INSEE code) a GPS fix lies in.

Contours are loaded ahead of time (``vigie load-communes``) from a GeoJSON
FeatureCollection whose features carry the INSEE code in ``properties.code``
and the name in ``properties.nom`` — the French geo API's format
(``/communes?codeDepartement=34&format=geojson&geometry=contour``) and that of
IGN ADMIN EXPRESS exports converted to GeoJSON. They are stored (WKB) and held
in memory in a :class:`CommuneIndex`: an STRtree of the contours (shapely 2,
GEOS), prepared for point-in-polygon, so that an alert resolves its commune
with no network and no disk access (docs/performance.md: per-lookup time with
all of France's communes loaded).

Parsing is all-or-nothing: any problem refuses the whole file with the file,
the feature's index and the reason (:class:`CommuneLoadError`).
"""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import numpy as np
import shapely
from shapely import STRtree

from dispatcher.directory.location import departement_of
from dispatcher.settings import GeoApiSettings
from dispatcher.store.base import CommuneRecord, GeoStore

__all__ = [
    "CommuneIndex",
    "CommuneLoadError",
    "CommuneRecord",
    "fetch_departement",
    "load_communes",
    "parse_communes",
]

_INSEE = re.compile(r"^(?:[0-9]{2}|2A|2B)[0-9]{3}$")
_AREAL = frozenset({"Polygon", "MultiPolygon"})


class CommuneLoadError(Exception):
    """A commune file is refused: nothing of it was loaded."""

    def __init__(self, source: str, reason: str, index: int | None = None) -> None:
        self.source, self.reason, self.index = source, reason, index
        where = f"entité {index} : " if index is not None else ""
        super().__init__(f"{source} : {where}{reason} ; rien n'est chargé")


def parse_communes(
    data: bytes | str, source: str, departements: Collection[str] | None = None
) -> list[CommuneRecord]:
    """Validate a GeoJSON FeatureCollection of communes; raise :class:`CommuneLoadError`.

    ``departements``: the départements being loaded; a commune of another one
    is refused (a wrong file for the département is a mistake, not a bonus).
    """
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CommuneLoadError(source, f"pas du JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise CommuneLoadError(source, "pas une FeatureCollection GeoJSON")
    features = document.get("features")
    if not isinstance(features, list) or not features:
        raise CommuneLoadError(source, "'features' manque ou est vide")
    records, seen = [], set()
    for index, feature in enumerate(features):
        record = _record(feature, source, index, departements)
        if record.code in seen:
            raise CommuneLoadError(source, f"la commune {record.code} apparaît deux fois", index)
        seen.add(record.code)
        records.append(record)
    return records


def _record(feature: Any, source: str, index: int, departements: Collection[str] | None) -> CommuneRecord:
    def refuse(reason: str) -> CommuneLoadError:
        return CommuneLoadError(source, reason, index)

    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise refuse("pas une Feature GeoJSON")
    properties = feature.get("properties") or {}
    code, nom = properties.get("code"), properties.get("nom")
    if not isinstance(code, str) or not _INSEE.match(code):
        raise refuse(f"properties.code doit être un code INSEE de commune, pas {code!r}")
    if not isinstance(nom, str) or not nom.strip():
        raise refuse(f"commune {code} : properties.nom manque")
    departement = departement_of(code)
    if departements is not None and departement not in departements:
        loaded = ", ".join(sorted(departements)) or "none"
        raise refuse(f"la commune {code} est hors des départements chargés ({loaded})")
    geometry = _geometry(feature.get("geometry"), code, refuse)
    return CommuneRecord(code=code, nom=nom.strip(), departement=departement, wkb=shapely.to_wkb(geometry))


def _geometry(raw: Any, code: str, refuse: Any) -> shapely.Geometry:
    if not isinstance(raw, dict) or raw.get("type") not in _AREAL:
        raise refuse(f"commune {code} : la géométrie doit être un Polygon ou un MultiPolygon (un contour)")
    try:
        geometry = shapely.from_geojson(json.dumps(raw))
    except shapely.errors.GEOSException as exc:
        raise refuse(f"commune {code} : géométrie illisible ({exc})") from None
    if geometry.is_empty or not geometry.is_valid:
        raise refuse(f"commune {code} : contour invalide ({shapely.is_valid_reason(geometry)})")
    minx, miny, maxx, maxy = geometry.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise refuse(f"commune {code} : les coordonnées ne sont pas des longitude/latitude WGS84")
    return geometry


async def load_communes(
    store: GeoStore, sources: Sequence[tuple[str, bytes]], departements: Collection[str]
) -> int:
    """Parse every source (all must be valid), then replace the communes of ``departements``
    in one transaction. Returns the number of communes stored. Nothing is written on error."""
    records: list[CommuneRecord] = []
    for source, data in sources:
        records += await asyncio.to_thread(parse_communes, data, source, departements)
    codes = [r.code for r in records]
    if len(set(codes)) != len(codes):
        raise CommuneLoadError(", ".join(s for s, _ in sources), "une commune apparaît dans deux sources")
    return await store.replace_communes(sorted(departements), records)


async def fetch_departement(settings: GeoApiSettings, departement: str) -> tuple[str, bytes]:
    """One département's contours from the geo API: (the URL, the GeoJSON body)."""
    query = urlencode({"codeDepartement": departement, "format": "geojson", "geometry": "contour"})
    url = f"{settings.base_url.rstrip('/')}/communes?{query}"
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            body = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CommuneLoadError(url, f"API géo injoignable ({exc or type(exc).__name__})") from None
    if response.status != 200:
        raise CommuneLoadError(url, f"l'API géo a répondu HTTP {response.status}")
    return url, body


@dataclass(frozen=True, slots=True)
class Commune:
    """The answer of a lookup."""

    code: str
    nom: str


class CommuneIndex:
    """Point-in-polygon over every loaded commune, in memory (read-only once built).

    A lookup must cost a few microseconds even with all of France loaded
    (~35,000 communes), on the event loop that runs the alert path. So the
    index is a uniform grid of ``cell_deg`` cells, computed once with shapely's
    STRtree (GEOS): a cell lying wholly inside one commune answers at once
    (no geometry test); a cell on a border keeps its few candidate communes,
    tested exactly in one vectorised GEOS call. The grid is three flat numpy
    arrays (sorted cell keys, their answer, the candidates), a few bytes per
    cell rather than a Python object each. Boundaries count as inside; a point
    on a border shared by two communes gets the lower INSEE code.
    """

    def __init__(self, records: Iterable[CommuneRecord] = (), *, cell_deg: float = 0.02) -> None:
        ordered = sorted(records, key=lambda r: r.code)
        self._communes = [Commune(r.code, r.nom) for r in ordered]
        self._geometries = np.array([shapely.from_wkb(r.wkb) for r in ordered], dtype=object)
        self._cell = cell_deg
        self._grid = _Grid.build(self._geometries, cell_deg)
        self.departements = frozenset(r.departement for r in ordered)
        self._by_name: dict[tuple[str, str], str] = {
            (r.departement, normalise_name(r.nom)): r.code for r in ordered
        }

    def __len__(self) -> int:
        return len(self._communes)

    def lookup(self, lat: float, lon: float) -> Commune | None:
        """The commune containing (lat, lon), or None outside every loaded contour."""
        grid = self._grid
        key = _cell_key(lon, lat, self._cell)
        i = int(np.searchsorted(grid.keys, key))
        if i == len(grid.keys) or grid.keys[i] != key:
            return None
        answer = int(grid.answers[i])
        if answer >= 0:  # the cell lies inside this commune
            return self._communes[answer]
        group = -answer - 1
        candidates = grid.candidates[grid.starts[group] : grid.starts[group + 1]]
        hits = np.flatnonzero(shapely.intersects_xy(self._geometries[candidates], lon, lat))
        return self._communes[int(candidates[hits[0]])] if len(hits) else None

    def insee_at(self, lat: float, lon: float) -> str | None:
        """The INSEE code at (lat, lon), or None: what location resolution needs."""
        commune = self.lookup(lat, lon)
        return commune.code if commune is not None else None

    def insee_of_label(self, label: str) -> str | None:
        """The INSEE code of a postal address's commune ('…, 34790 Grabels'), offline.

        The postcode gives the département, the words after it the commune's
        name; None when either is missing or no loaded commune matches.
        """
        match = _POSTCODE_CITY.search(label)
        if match is None:
            return None
        postcode, city = match.group(1), normalise_name(match.group(2))
        for departement in _departements_of_postcode(postcode):
            if (code := self._by_name.get((departement, city))) is not None:
                return code
        return None


_POSTCODE_CITY = re.compile(r"\b((?:[0-8][0-9]|9[0-8])[0-9]{3})\s+([^,\d][^,]*?)\s*(?:,|$)")


def _departements_of_postcode(postcode: str) -> tuple[str, ...]:
    """Départements a postcode may belong to (Corsica's 20xxx is 2A or 2B; overseas 97x)."""
    if postcode.startswith("20"):
        return ("2A", "2B")
    return (postcode[:3],) if postcode.startswith("97") else (postcode[:2],)


def normalise_name(name: str) -> str:
    """'Saint-Gély-du-Fesc' and 'ST GELY DU FESC' → 'saint gely du fesc'."""
    decomposed = unicodedata.normalize("NFKD", name.lower())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    words = re.split(r"[^a-z0-9]+", plain.replace("œ", "oe"))
    return " ".join(_NAME_ABBREVIATIONS.get(w, w) for w in words if w)


_NAME_ABBREVIATIONS = {"st": "saint", "ste": "sainte"}


# Grid cell keys: column * _ROW + row, with columns and rows counted from (-180, -90).
_ROW = 1 << 20


def _cell_key(lon: float, lat: float, cell: float) -> int:
    return int((lon + 180.0) // cell) * _ROW + int((lat + 90.0) // cell)


@dataclass(frozen=True, slots=True)
class _Grid:
    """Sorted cell keys; per cell, a commune index (inside it) or -(group + 1) (a border cell
    whose candidates are ``candidates[starts[group]:starts[group + 1]]``, by INSEE code)."""

    keys: np.ndarray[Any, Any]
    answers: np.ndarray[Any, Any]
    starts: np.ndarray[Any, Any]
    candidates: np.ndarray[Any, Any]

    @classmethod
    def build(cls, geometries: np.ndarray[Any, Any], cell: float) -> _Grid:
        empty = np.zeros(0, dtype=np.int64)
        if len(geometries) == 0:
            return cls(empty, empty, np.zeros(1, dtype=np.int64), empty)
        keys = _cells_of_bounds(shapely.bounds(geometries), cell)
        shapely.prepare(geometries)  # for the build only: lookups test few, small contours
        tree = STRtree(geometries)
        try:
            # In chunks: a box geometry per cell of all France at once would cost
            # hundreds of MB at the peak, for a structure of a few MB.
            parts = [_cover(tree, geometries, keys, i, cell) for i in range(0, len(keys), _CHUNK)]
        finally:
            shapely.destroy_prepared(geometries)
        box_index, commune_index, covering = (np.concatenate(p) for p in zip(*parts, strict=True))
        first = np.flatnonzero(np.r_[True, box_index[1:] != box_index[:-1]])
        counts = np.diff(np.r_[first, len(box_index)])
        inside = (counts == 1) & covering[first]
        border = ~inside
        answers = np.where(inside, commune_index[first], -(np.cumsum(border) - 1) - 1)
        in_border = np.repeat(border, counts)
        starts = np.r_[0, np.cumsum(counts[border])]
        return cls(keys[box_index[first]], answers, starts, commune_index[in_border].astype(np.int32))


_CHUNK = 16_384


def _cover(
    tree: STRtree, geometries: np.ndarray[Any, Any], keys: np.ndarray[Any, Any], offset: int, cell: float
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """For the cells ``keys[offset:offset + _CHUNK]``: (cell, commune) pairs that intersect,
    sorted by cell then INSEE code, and whether the commune wholly covers the cell."""
    chunk = keys[offset : offset + _CHUNK]
    cols, rows = chunk // _ROW, chunk % _ROW
    x0, y0 = cols * cell - 180.0, rows * cell - 90.0
    boxes = shapely.box(x0, y0, x0 + cell, y0 + cell)
    box_index, commune_index = tree.query(boxes, predicate="intersects")
    order = np.lexsort((commune_index, box_index))
    box_index, commune_index = box_index[order], commune_index[order]
    covering = shapely.contains_properly(geometries[commune_index], boxes[box_index])
    return box_index + offset, commune_index, covering


def _cells_of_bounds(bounds: np.ndarray[Any, Any], cell: float) -> np.ndarray[Any, Any]:
    """Sorted unique keys of every cell some commune's bounding box touches."""
    keys: set[int] = set()
    for minx, miny, maxx, maxy in bounds:
        first, last = int((miny + 90.0) // cell), int((maxy + 90.0) // cell)
        for col in range(int((minx + 180.0) // cell), int((maxx + 180.0) // cell) + 1):
            keys.update(range(col * _ROW + first, col * _ROW + last + 1))
    return np.array(sorted(keys), dtype=np.int64)
