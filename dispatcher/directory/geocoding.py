"""Geocoding of registered addresses with the BAN (Base Adresse Nationale).

Addresses are geocoded once, when a site or a home visit is registered, never
on the alert hot path. :class:`AddressGeocoder` wraps geopy's ``BANFrance``
with its asynchronous aiohttp adapter, so a slow geocoder never blocks the
event loop; its ``domain``/``scheme`` point at the IGN Géoplateforme in
production and at :class:`sandbox.ban_server.BanSandbox` in tests.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from geopy.adapters import AdapterHTTPError, AioHTTPAdapter
from geopy.exc import (
    GeocoderRateLimited,
    GeocoderServiceError,
    GeocoderTimedOut,
    GeopyError,
)
from geopy.exc import (
    GeocoderUnavailable as GeopyUnavailable,
)
from geopy.geocoders import BANFrance
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from dispatcher.domain import Address
from dispatcher.settings import GeocoderSettings

USER_AGENT = "vigie-dispatcher/0.1 (registration geocoding)"

# BAN result types precise enough to send a patrol to; "municipality" only
# locates the town hall, which would mislead responders.
PRECISE_TYPES = frozenset({"housenumber", "street", "locality"})


# Imprecise BAN result types in the words of a failure reason.
TYPE_WORDS = {"municipality": "de la commune"}


class GeocodingError(Exception):
    """An address could not be geocoded; ``label`` is the address as written.

    ``reason`` is in French: administrators read it in ``vigie load-directory``'s
    report and the console, practitioners in a visit's warning.
    """

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"géocodage impossible de {label!r} : {reason}")
        self.label = label
        self.reason = reason


class AddressNotFound(GeocodingError):
    """The geocoder answered, but with no result precise or confident enough."""


class GeocodingUnavailable(GeocodingError):
    """The geocoding service failed (down, timing out, refusing) after retries."""


def _is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: timeouts, connection errors, 429 and 5xx."""
    if isinstance(exc, GeocoderTimedOut | GeopyUnavailable | GeocoderRateLimited):
        return True
    cause = exc.__cause__
    return isinstance(cause, AdapterHTTPError) and cause.status_code >= 500


class AddressGeocoder:
    """Completes :class:`Address` objects with ``point`` and ``insee`` from a BAN API.

    Use as an async context manager (or call :meth:`aclose`) so that the HTTP
    session is closed. GET requests are idempotent, so transient failures are
    retried ``attempts`` times with exponential backoff.
    """

    def __init__(
        self,
        settings: GeocoderSettings,
        *,
        min_score: float = 0.5,
        attempts: int = 3,
        backoff_s: float = 0.25,
    ) -> None:
        self._settings = settings
        self._min_score = min_score
        self._attempts = attempts
        self._backoff_s = backoff_s
        # The aiohttp session inside the adapter is created lazily, on the first
        # request, so constructing this object needs no running loop.
        self._ban = BANFrance(
            domain=settings.domain,
            scheme=settings.scheme,
            timeout=settings.timeout_s,
            user_agent=USER_AGENT,
            adapter_factory=AioHTTPAdapter,
        )

    @property
    def search_url(self) -> str:
        """The URL queried, e.g. ``https://data.geopf.fr/geocodage/search``."""
        url: str = self._ban.geocode_api
        return url

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session (idempotent)."""
        adapter = self._ban.adapter
        session = adapter.__dict__.get("session")
        if session is not None and not session.closed:
            await adapter.__aexit__(None, None, None)

    async def geocode(self, address: Address) -> Address:
        """Return ``address`` with ``point`` and ``insee`` filled in by the BAN.

        An address that already has a point is returned unchanged without any
        request. The label, floor, door code and details are kept as written.
        Raises :class:`AddressNotFound` or :class:`GeocodingUnavailable`.
        """
        if address.point is not None:
            return address
        feature = await self._best_feature(address.label)
        return _complete(address, feature)

    async def suggest(self, query: str, *, limit: int = 5) -> list[dict[str, Any]]:
        """Candidate addresses for an autocomplete field: BAN features, best first.

        Raises :class:`GeocodingUnavailable`; a query under 3 characters gives [].
        """
        if len(query.strip()) < 3:
            return []
        try:
            found = await self._ban.geocode(query.strip(), limit=limit, exactly_one=False)
        except GeopyError as exc:
            raise GeocodingUnavailable(query, self._failed(exc)) from exc
        return [location.raw for location in found or []]

    async def commune_code(self, label: str) -> str | None:
        """The INSEE code of the commune the BAN places ``label`` in, even from a
        commune-level match (a visit then routes by its commune); None if no
        confident match. Raises :class:`GeocodingUnavailable`."""
        if len(label.strip()) < 3:
            return None
        location = await self._search(label.strip())
        props = (location.raw.get("properties") or {}) if location is not None else {}
        code = props.get("citycode")
        confident = float(props.get("score") or 0.0) >= self._min_score
        return code if confident and isinstance(code, str) else None

    async def _best_feature(self, label: str) -> dict[str, Any]:
        query = label.strip()
        if len(query) < 3:
            # The BAN answers 400 to queries shorter than 3 characters.
            raise AddressNotFound(label, "adresse trop courte pour être cherchée (3 caractères au moins)")
        location = await self._search(query)
        if location is None:
            raise AddressNotFound(label, "aucune correspondance dans la Base Adresse Nationale")
        feature: dict[str, Any] = location.raw
        self._check_quality(label, feature)
        return feature

    async def _search(self, query: str) -> Any:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_is_transient),
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=self._backoff_s, max=5 * self._backoff_s + 1),
                reraise=True,
            ):
                with attempt:
                    return await self._ban.geocode(query, limit=1, exactly_one=True)
        except GeocoderServiceError as exc:
            raise GeocodingUnavailable(query, self._failed(exc)) from exc
        except GeopyError as exc:
            raise GeocodingUnavailable(query, f"géocodeur mal configuré : {exc}") from exc
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _failed(self, exc: GeopyError) -> str:
        """Why the service failed, in French; geopy's own words only as the technical detail."""
        cause = exc.__cause__
        if isinstance(cause, AdapterHTTPError):  # by status: geopy calls a 503 a timeout
            code = cause.status_code
            what = "service en panne" if code >= 500 else "requête refusée"
            if code == 429:
                what = "trop de requêtes, le service limite le débit"
            return f"le géocodeur {self.search_url} a échoué : {what} (HTTP {code})"
        if isinstance(exc, GeocoderTimedOut):
            what = "délai de réponse dépassé"
        elif isinstance(exc, GeopyUnavailable):
            what = "service injoignable"
        else:
            what = "erreur"
        return f"le géocodeur {self.search_url} a échoué : {what} ({exc})"

    def _check_quality(self, label: str, feature: dict[str, Any]) -> None:
        props = feature.get("properties") or {}
        score = float(props.get("score") or 0.0)
        kind = props.get("type")
        found = props.get("label", "?")
        if score < self._min_score:
            raise AddressNotFound(
                label, f"meilleure correspondance {found!r} trop incertaine (score {score:.2f})"
            )
        if kind not in PRECISE_TYPES:
            level = TYPE_WORDS.get(str(kind)) or f"du type « {kind or '?'} »"
            raise AddressNotFound(
                label,
                f"correspondance seulement au niveau {level} ({found!r}) : trop vague pour une patrouille",
            )


def _complete(address: Address, feature: dict[str, Any]) -> Address:
    """Copy the feature's point and INSEE code into the address (validated)."""
    props = feature.get("properties") or {}
    try:
        lon, lat = feature["geometry"]["coordinates"][:2]
        # Validated, not model_copy'd: these values come from the network.
        return Address.model_validate(
            {**address.model_dump(), "point": {"lat": lat, "lon": lon}, "insee": props.get("citycode")}
        )
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise GeocodingUnavailable(address.label, f"réponse du géocodeur malformée : {exc}") from exc
