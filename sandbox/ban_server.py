"""A local BAN-compatible geocoding server, for tests and offline demos.

It speaks the HTTP API of the Base Adresse Nationale (``GET /search`` and
``GET /reverse``, GeoJSON ``FeatureCollection`` answers with the BAN's
property names) over a small fixture of Hérault addresses, so that geopy's
``BANFrance`` talks real HTTP to it. It counts the requests it receives
(tests assert who geocodes and who must not) and can be told to fail the
next requests to exercise retries.

Standalone: ``python -m sandbox.ban_server --port 8765`` then point the
dispatcher at it with ``VIGIE_GEOCODER__DOMAIN=127.0.0.1:8765`` and
``VIGIE_GEOCODER__SCHEME=http``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import socket
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

DEFAULT_LIMIT = 5
MAX_LIMIT = 20
MIN_SCORE = 0.2  # the BAN also drops hopeless candidates

_STOPWORDS = frozenset({"de", "du", "des", "la", "le", "les", "l", "d", "et", "a", "au", "aux", "en"})
_ABBREVIATIONS = {
    "av": "avenue",
    "ave": "avenue",
    "bd": "boulevard",
    "bld": "boulevard",
    "r": "rue",
    "pl": "place",
    "ch": "chemin",
    "rte": "route",
    "imp": "impasse",
    "st": "saint",
    "ste": "sainte",
}


def normalise(text: str) -> list[str]:
    """Lower-case, accent-free, abbreviation-expanded tokens without stopwords."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c))
    tokens = re.split(r"[^a-z0-9]+", ascii_text)
    return [_ABBREVIATIONS.get(t, t) for t in tokens if t and t not in _STOPWORDS]


def _house_numbers(tokens: list[str]) -> set[str]:
    """Numeric tokens that are not postcodes."""
    return {t for t in tokens if t.isdigit() and len(t) < 5}


def lambert93(lat: float, lon: float) -> tuple[float, float]:
    """WGS84 → Lambert-93 (EPSG:2154), the projection of the BAN's ``x``/``y``."""
    a, f = 6378137.0, 1 / 298.257222101  # GRS80
    e = math.sqrt(2 * f - f * f)
    phi0, phi1, phi2, lam0 = (math.radians(v) for v in (46.5, 44.0, 49.0, 3.0))

    def m(phi: float) -> float:
        return math.cos(phi) / math.sqrt(1 - (e * math.sin(phi)) ** 2)

    def t(phi: float) -> float:
        es = e * math.sin(phi)
        return math.tan(math.pi / 4 - phi / 2) / ((1 - es) / (1 + es)) ** (e / 2)

    n = (math.log(m(phi1)) - math.log(m(phi2))) / (math.log(t(phi1)) - math.log(t(phi2)))
    big_f = m(phi1) / (n * t(phi1) ** n)
    rho0 = a * big_f * t(phi0) ** n
    rho = a * big_f * t(math.radians(lat)) ** n
    theta = n * (math.radians(lon) - lam0)
    return round(700000 + rho * math.sin(theta), 2), round(6600000 + rho0 - rho * math.cos(theta), 2)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(h))


@dataclass(frozen=True, slots=True)
class BanEntry:
    """One fixture address (or street, or commune)."""

    id: str
    type: str
    postcode: str
    citycode: str
    city: str
    lat: float
    lon: float
    importance: float
    context: str
    housenumber: str | None = None
    street: str | None = None

    @property
    def name(self) -> str:
        if self.type == "housenumber":
            return f"{self.housenumber} {self.street}"
        return self.street if self.type == "street" and self.street else self.city

    @property
    def label(self) -> str:
        if self.type == "municipality":
            return self.city
        return f"{self.name} {self.postcode} {self.city}"

    def tokens(self) -> set[str]:
        return set(normalise(self.label))

    def feature(self, score: float, **extra: Any) -> dict[str, Any]:
        """The GeoJSON feature the BAN would return for this entry."""
        x, y = lambert93(self.lat, self.lon)
        props: dict[str, Any] = {"label": self.label, "score": round(score, 4)}
        if self.housenumber:
            props["housenumber"] = self.housenumber
        props |= {
            "id": self.id,
            "name": self.name,
            "postcode": self.postcode,
            "citycode": self.citycode,
            "x": x,
            "y": y,
            "city": self.city,
            "context": self.context,
            "type": self.type,
            "importance": self.importance,
        }
        if self.street:
            props["street"] = self.street
        props |= extra
        return {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [self.lon, self.lat]},
            "properties": props,
        }


def load_fixture(path: Path | None = None) -> list[BanEntry]:
    """Read the address fixture (``sandbox/data/ban_addresses.json`` by default)."""
    if path is None:
        text = resources.files("sandbox").joinpath("data/ban_addresses.json").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    doc = json.loads(text)
    return [BanEntry(context=doc["context"], **row) for row in doc["addresses"]]


def score(query: list[str], entry: BanEntry) -> float:
    """Token overlap (Jaccard), halved when the query's house number differs."""
    q, e = set(query), entry.tokens()
    if not q:
        return 0.0
    result = len(q & e) / len(q | e)
    wanted = _house_numbers(query)
    if wanted and entry.housenumber not in wanted:
        result /= 2
    return result


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What the sandbox saw: path and query parameters."""

    path: str
    params: dict[str, str]


@dataclass
class _Faults:
    remaining: int = 0
    status: int = 503


@dataclass
class BanSandbox:
    """The BAN sandbox server; ``await start()`` then use :attr:`base_domain`."""

    port: int = 0
    host: str = "127.0.0.1"
    fixture: Path | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    _entries: list[BanEntry] = field(default_factory=list)
    _faults: _Faults = field(default_factory=_Faults)
    _runner: web.AppRunner | None = None

    @property
    def base_domain(self) -> str:
        """``host:port``, the value for geopy's / the settings' ``domain``."""
        return f"{self.host}:{self.port}"

    @property
    def request_count(self) -> int:
        """Requests received on ``/search`` and ``/reverse`` (failed ones included)."""
        return len(self.requests)

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests with HTTP ``status`` (a fault)."""
        self._faults = _Faults(remaining=count, status=status)

    def app(self) -> web.Application:
        """The aiohttp application (also usable with aiohttp's test client)."""
        application = web.Application()
        application.router.add_get("/search", self._search)
        application.router.add_get("/search/", self._search)
        application.router.add_get("/reverse", self._reverse)
        application.router.add_get("/reverse/", self._reverse)
        # The French geo API's commune contours (vigie load-communes --fetch), from a fixture.
        application.router.add_get("/communes", self._communes)
        return application

    async def start(self) -> None:
        """Load the fixture and listen; ``port=0`` picks a free port."""
        self._entries = load_fixture(self.fixture)
        # Bind the socket ourselves: port 0 then gives a free port without the
        # race of probing one first and binding it later.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BanSandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _record(self, request: web.Request) -> web.Response | None:
        self.requests.append(RecordedRequest(request.path, dict(request.query)))
        if self._faults.remaining > 0:
            self._faults.remaining -= 1
            return _error(self._faults.status, "injected fault")
        return None

    async def _search(self, request: web.Request) -> web.Response:
        fault = self._record(request)
        if fault is not None:
            return fault
        q = request.query.get("q", "").strip()
        if not 3 <= len(q) <= 200:
            return _error(400, "q must contain between 3 and 200 chars")
        try:
            limit = min(int(request.query.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
        except ValueError:
            return _error(400, "limit must be an integer")
        tokens = normalise(q)
        ranked = sorted(((score(tokens, e), e) for e in self._entries), key=lambda se: -se[0])
        features = [e.feature(s) for s, e in ranked if s >= MIN_SCORE][: max(limit, 1)]
        return _collection(features, query=q, limit=limit)

    async def _reverse(self, request: web.Request) -> web.Response:
        fault = self._record(request)
        if fault is not None:
            return fault
        try:
            lat, lon = float(request.query["lat"]), float(request.query["lon"])
        except (KeyError, ValueError):
            return _error(400, "lat and lon are required numbers")
        candidates = [e for e in self._entries if e.type == "housenumber"]
        nearest = min(candidates, key=lambda e: haversine_m(lat, lon, e.lat, e.lon))
        distance = round(haversine_m(lat, lon, nearest.lat, nearest.lon))
        features = [nearest.feature(1.0, distance=distance)] if distance < 1000 else []
        return _collection(features, limit=1)


    async def _communes(self, request: web.Request) -> web.Response:
        """``/communes?codeDepartement=34&format=geojson&geometry=contour``, like geo.api.gouv.fr."""
        fault = self._record(request)
        if fault is not None:
            return fault
        if request.query.get("format") != "geojson" or request.query.get("geometry") != "contour":
            return _error(400, "this sandbox serves format=geojson&geometry=contour only")
        departement = request.query.get("codeDepartement", "")
        features = [f for f in commune_features() if _departement(f["properties"]["code"]) == departement]
        return web.json_response({"type": "FeatureCollection", "features": features})


def commune_features() -> list[dict[str, Any]]:
    """The fixture's communes (simplified IGN contours: scripts/derive_commune_fixture.py)."""
    text = resources.files("sandbox").joinpath("data/communes.geojson").read_text(encoding="utf-8")
    features: list[dict[str, Any]] = json.loads(text)["features"]
    return features


def _departement(insee: str) -> str:
    return insee[:3] if insee.startswith("97") else insee[:2]


def _collection(features: list[dict[str, Any]], **extra: Any) -> web.Response:
    body = {
        "type": "FeatureCollection",
        "version": "draft",
        "features": features,
        "attribution": "BAN",
        "licence": "ETALAB-2.0",
        **extra,
    }
    return web.json_response(body)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status)


async def _serve(host: str, port: int, fixture: Path | None) -> None:
    sandbox = BanSandbox(port=port, host=host, fixture=fixture)
    await sandbox.start()
    print(f"BAN sandbox on http://{sandbox.base_domain}/search?q=... (Ctrl-C to stop)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the sandbox until interrupted: ``python -m sandbox.ban_server --port 8765``."""
    parser = argparse.ArgumentParser(description="Local BAN-compatible geocoder (sandbox)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--fixture", type=Path, default=None, help="JSON file like sandbox/data/ban_addresses.json"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.fixture))


if __name__ == "__main__":
    main()
