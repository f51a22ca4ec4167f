"""Domain value objects of the dispatcher: the directory and the alert.

These are frozen pydantic models, validated when created (from the directory
YAML, the REST API or the store), shared by the pure core (location, routing,
escalation) and the I/O edges. They hold no behaviour that needs I/O.
"""

from __future__ import annotations

from datetime import datetime, time
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from dispatcher.directory.texts import ENDS_BEFORE_START, OFFSETS_MIXED

Id = Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")]
E164 = Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$")]
Insee = Annotated[str, Field(pattern=r"^(?:[0-9]{2}|2A|2B)[0-9]{3}$")]
Departement = Annotated[str, Field(pattern=r"^(?:[0-9]{2,3}|2A|2B)$")]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GeoPoint(_Value):
    """WGS84 coordinates."""

    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


class Address(_Value):
    """A postal address, geocoded once when registered (never on the hot path)."""

    label: str = Field(description="Full address as written, e.g. '12 rue de la Loge, 34000 Montpellier'")
    floor: str | None = Field(default=None, description="Étage, e.g. '3e étage gauche'")
    access_code: str | None = Field(default=None, description="Digicode / door code")
    details: str | None = Field(default=None, description="Bâtiment, interphone, landmarks")
    insee: Insee | None = Field(default=None, description="INSEE commune code (from the geocoder)")
    point: GeoPoint | None = Field(default=None, description="Coordinates (from the geocoder)")


class SiteKind(StrEnum):
    CABINET = "cabinet"
    MMG = "mmg"  # maison médicale de garde
    CENTRE_SANTE = "centre_sante"
    OTHER = "other"


class Practitioner(_Value):
    """A registered healthcare worker, pré-identifié with the police."""

    id: Id
    first_name: str
    last_name: str
    profession: str = "médecin généraliste"
    rpps: Annotated[str, Field(pattern=r"^[0-9]{11}$")] = Field(description="11-digit RPPS number")
    phones: list[E164] = Field(min_length=1, description="Numbers the police have pre-identified")
    cancel_pin_hash: str | None = Field(default=None, description="argon2 hash of the normal cancel PIN")
    duress_pin_hash: str | None = Field(default=None, description="argon2 hash of the duress PIN")

    @property
    def display_name(self) -> str:
        return f"Dr {self.first_name} {self.last_name}"


class Site(_Value):
    """A fixed place of practice: cabinet, MMG, ..."""

    id: Id
    kind: SiteKind
    name: str
    address: Address
    cancel_pin_hash: str | None = Field(
        default=None, repr=False, description="argon2 hash of the staff PIN cancelling a desk button's alert"
    )
    duress_pin_hash: str | None = Field(
        default=None, repr=False, description="argon2 hash of the staff duress PIN"
    )


class DeviceKind(StrEnum):
    BUTTON = "button"  # fixed, e.g. under a desk
    POCKET = "pocket"  # carried button
    BRACELET = "bracelet"


class DeviceState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class Device(_Value):
    """A provisioned button or bracelet, bound to a practitioner and/or a site."""

    id: Id
    kind: DeviceKind
    label: str = ""
    practitioner_id: Id | None = None
    site_id: Id | None = None
    state: DeviceState = DeviceState.ACTIVE
    heartbeat_interval_s: Annotated[int, Field(ge=5, le=3600)] = 30


class HomeVisit(_Value):
    """A visite à domicile declared by the practitioner (address, floor, door code, window)."""

    id: Id
    practitioner_id: Id
    address: Address
    starts_at: datetime
    ends_at: datetime
    note: str | None = None
    dangerous: bool = Field(default=False, description="'Lieu signalé dangereux' (declared by her)")
    checked_out_at: datetime | None = Field(
        default=None, description="She said she left ('Je suis sortie'): no longer locates her alerts"
    )

    @field_validator("ends_at")
    @classmethod
    def _ends_after_start(cls, v: datetime, info: ValidationInfo) -> datetime:
        starts = info.data.get("starts_at")
        if starts is not None and (starts.tzinfo is None) != (v.tzinfo is None):
            # Comparing them would raise TypeError, which pydantic does not catch.
            raise ValueError(OFFSETS_MIXED)
        if starts is not None and v <= starts:
            raise ValueError(ENDS_BEFORE_START)
        return v


class Channel(StrEnum):
    SMS = "sms"
    VOICE = "voice"


class Hours(_Value):
    """A daily window during which a contact answers (may cross midnight)."""

    start: time
    end: time

    def covers(self, t: time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class Contact(_Value):
    """A person or desk of a responder unit that receives alerts."""

    id: Id
    name: str
    phone: E164
    channels: list[Channel] = Field(default_factory=lambda: [Channel.SMS, Channel.VOICE], min_length=1)
    priority: Annotated[int, Field(ge=1, le=9)] = 1
    hours: list[Hours] = Field(default_factory=list, description="Empty = 24/7")


class UnitKind(StrEnum):
    COMMISSARIAT = "commissariat"
    BRIGADE = "brigade"  # brigade de gendarmerie
    POLICE_MUNICIPALE = "police_municipale"
    SAMU = "samu"


class Zone(StrEnum):
    POLICE = "police"  # zone police nationale
    GENDARMERIE = "gendarmerie"
    ANY = "any"  # e.g. SAMU, competent everywhere in the territory


class ResponderUnit(_Value):
    """A unit named in an SSJ convention, with its zone of competence."""

    id: Id
    name: str
    kind: UnitKind
    zone: Zone
    communes: list[Insee] = Field(default_factory=list, description="INSEE codes of competence")
    polygons: list[list[tuple[float, float]]] = Field(
        default_factory=list, description="Rings of (lon, lat) pairs, GeoJSON order"
    )
    contacts: list[Contact] = Field(min_length=1)


class TierTarget(_Value):
    """Who a tier notifies: the unit competent for the location, or a named unit."""

    unit: str = Field(description="'competent' or a unit id")
    max_priority: Annotated[int, Field(ge=1, le=9)] = 9


class EscalationTier(_Value):
    targets: list[TierTarget] = Field(min_length=1)
    ack_timeout_s: Annotated[int, Field(ge=5, le=3600)] = 120


class Convention(_Value):
    """A local Santé-Sécurité-Justice convention: territory, units, escalation chain."""

    id: Id
    name: str
    departement: Departement
    communes: list[Insee] = Field(default_factory=list, description="Empty = the whole département")
    units: list[ResponderUnit] = Field(min_length=1)
    tiers: list[EscalationTier] = Field(min_length=1)
    repeats: Annotated[int, Field(ge=0, le=5)] = 1
    drills: bool = Field(
        default=False,
        description="Explicit consent: a test alert runs the real chain as a drill (every message starts"
        " with 'EXERCICE — NE PAS INTERVENIR'); without it a test reaches the practitioner only",
    )
    fallback_units: list[Id] = Field(
        min_length=1,
        description="Departmental units (e.g. the CIC and the CORG) alerted together when the zone"
        " (police or gendarmerie) cannot be determined, or when the competent unit has nobody on duty",
    )


class LocationSource(StrEnum):
    """Where a resolved location came from, in order of trust."""

    GPS = "gps"
    HOME_VISIT = "home_visit"
    SITE = "site"
    LAST_KNOWN = "last_known"
    UNKNOWN = "unknown"


class ResolvedLocation(_Value):
    """The best answer to 'where is she?' at alert time."""

    source: LocationSource
    point: GeoPoint | None = None
    accuracy_m: float | None = None
    address: Address | None = None
    description: str = Field(description="Human text for SMS/voice/console, in French")
    stale: bool = False
    fix_age_s: float | None = None
    insee: Insee | None = None
    departement: Departement | None = None
    at_address: bool = Field(
        default=False,
        description="A GPS fix at ``address`` (the active visit, within the fix's accuracy or 200 m):"
        " its floor and door code apply",
    )
    other_place: str | None = Field(
        default=None,
        description="The other place when a fix and the active visit disagree, saying which is newer",
    )


class AlertKind(StrEnum):
    ALERT = "alert"
    TEST = "test"
    DRILL = "drill"  # a test on a convention that consented to drills: the real chain, announced as a drill


class AlertState(StrEnum):
    RECEIVED = "received"
    NOTIFYING = "notifying"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"
    FALSE_ALARM = "false_alarm"
    DURESS = "duress"  # cancelled with the duress PIN: escalation continues


DownlinkKind = Literal["received", "acknowledged", "resolved", "cancelled", "cancel_refused"]


class AlertContext(_Value):
    """Everything a message to a responder or an operator says about one alert.

    Built once per alert from the store and the in-memory directory, so that
    composing texts never needs I/O.
    """

    alert_id: Id
    kind: AlertKind
    received_at: datetime
    practitioner: Practitioner | None = Field(default=None, description="None for a site-only device")
    site: Site | None = None
    device: Device
    location: ResolvedLocation
    convention_name: str | None = None
    duress: bool = False
    routing_reason: str | None = Field(
        default=None, description="Why a fallback routed the alert (said in every message), else None"
    )
    reason: str | None = Field(
        default=None, description="Why the dispatcher raised it itself, e.g. 'visite non clôturée'"
    )
    fallback: str | None = Field(
        default=None, description="'departemental' or 'deployment' when a fallback routed the alert"
    )
    operator_scope: list[str] = Field(
        default_factory=list,
        description="Names of the conventions whose operators see the alert (its territory's)",
    )
