"""Request and response bodies of the REST API.

Create/update schemas are separate from public ones: responses never carry
HMAC keys, PIN hashes or password hashes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from dispatcher.directory.loader import PIN_PATTERN
from dispatcher.directory.texts import DURESS_EQUALS_CANCEL, ENDS_BEFORE_START
from dispatcher.domain import (
    E164,
    Address,
    Channel,
    DeviceKind,
    DeviceState,
    GeoPoint,
    Id,
    LocationSource,
    Practitioner,
    Site,
    SiteKind,
)
from dispatcher.web.auth import Role

Text = Annotated[str, Field(min_length=1, max_length=200)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- auth and users -------------------------------------------------------------------


class LoginRequest(_In):
    username: Annotated[str, Field(min_length=1, max_length=100)]
    password: Annotated[str, Field(min_length=1, max_length=200)]


class TokenResponse(BaseModel):
    """OAuth2 bearer token (the same opaque session as the console's cookie)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime


class UserPublic(BaseModel):
    id: int
    username: str
    display_name: str
    role: Role
    practitioner_id: str | None = None
    practitioner_name: str | None = Field(default=None, description="A practitioner account's display name")
    conventions: list[str] = Field(default_factory=list)
    disabled: bool = False


class UserCreate(_In):
    username: Annotated[str, Field(pattern=r"^[a-z0-9._-]{3,64}$")]
    display_name: Text
    password: Annotated[str, Field(min_length=12, max_length=200)]
    role: Role
    practitioner_id: Id | None = None
    conventions: list[Id] = Field(default_factory=list)

    @model_validator(mode="after")
    def _scope_matches_role(self) -> UserCreate:
        if self.role is Role.OPERATOR and not self.conventions:
            raise ValueError("un opérateur a besoin d'au moins une convention")
        if self.role is Role.PRACTITIONER and not self.practitioner_id:
            raise ValueError("un compte praticien a besoin d'un praticien (practitioner_id)")
        return self


class UserUpdate(_In):
    display_name: Text | None = None
    password: Annotated[str, Field(min_length=12, max_length=200)] | None = None
    role: Role | None = None
    practitioner_id: Id | None = None
    conventions: list[Id] | None = None
    disabled: bool | None = None


# -- directory -------------------------------------------------------------------------


class PractitionerPublic(BaseModel):
    id: str
    first_name: str
    last_name: str
    display_name: str
    profession: str
    rpps: str
    phones: list[str]
    has_cancel_pin: bool
    has_duress_pin: bool

    @classmethod
    def of(cls, p: Practitioner) -> PractitionerPublic:
        return cls(
            id=p.id,
            first_name=p.first_name,
            last_name=p.last_name,
            display_name=p.display_name,
            profession=p.profession,
            rpps=p.rpps,
            phones=list(p.phones),
            has_cancel_pin=p.cancel_pin_hash is not None,
            has_duress_pin=p.duress_pin_hash is not None,
        )


class SitePublic(BaseModel):
    """A site as sent out: whether it has staff PINs, never their hashes (a 4-digit PIN is found
    from its hash in minutes, and the duress one must stay unknown to anyone who could be made
    to tell it)."""

    id: str
    kind: SiteKind
    name: str
    address: Address
    has_cancel_pin: bool
    has_duress_pin: bool

    @classmethod
    def of(cls, s: Site) -> SitePublic:
        return cls(
            id=s.id,
            kind=s.kind,
            name=s.name,
            address=s.address,
            has_cancel_pin=s.cancel_pin_hash is not None,
            has_duress_pin=s.duress_pin_hash is not None,
        )


class PractitionerWrite(_In):
    """Create or replace a practitioner; PINs in clear are hashed and forgotten."""

    first_name: Text
    last_name: Text
    profession: Text = "médecin généraliste"
    rpps: Annotated[str, Field(pattern=r"^[0-9]{11}$")]
    phones: Annotated[list[E164], Field(min_length=1, max_length=5)]
    cancel_pin: Annotated[str, Field(pattern=PIN_PATTERN)] | None = None
    duress_pin: Annotated[str, Field(pattern=PIN_PATTERN)] | None = None

    @model_validator(mode="after")
    def _pins_differ(self) -> PractitionerWrite:
        if self.cancel_pin is not None and self.cancel_pin == self.duress_pin:
            raise ValueError(DURESS_EQUALS_CANCEL)
        return self


class PractitionerCreate(PractitionerWrite):
    id: Id


class AddressIn(_In):
    label: Annotated[str, Field(min_length=3, max_length=300)]
    floor: Annotated[str, Field(max_length=100)] | None = None
    access_code: Annotated[str, Field(max_length=50)] | None = None
    details: Annotated[str, Field(max_length=300)] | None = None
    insee: Annotated[str, Field(pattern=r"^(?:[0-9]{2}|2A|2B)[0-9]{3}$")] | None = None
    point: GeoPoint | None = None

    def to_address(self) -> Address:
        return Address.model_validate(self.model_dump())


class SiteWrite(_In):
    kind: SiteKind
    name: Text
    address: AddressIn


class SiteCreate(SiteWrite):
    id: Id


class DeviceUpdate(_In):
    """What may change on a provisioned device (its key and certificate never go through the API)."""

    label: Annotated[str, Field(max_length=100)] | None = None
    practitioner_id: Id | None = None
    site_id: Id | None = None
    heartbeat_interval_s: Annotated[int, Field(ge=5, le=3600)] | None = None


class DevicePublic(BaseModel):
    id: str
    kind: DeviceKind
    label: str
    practitioner_id: str | None
    site_id: str | None
    state: DeviceState
    heartbeat_interval_s: int


class DeviceHealthPublic(BaseModel):
    device_id: str
    label: str
    kind: DeviceKind
    state: DeviceState
    practitioner_id: str | None
    practitioner_name: str | None = Field(description="Her display name (the screens show it, not her id)")
    site_id: str | None
    site_name: str | None
    status: str | None = Field(description="'online' / 'offline' as last reported, None if never seen")
    last_seen_at: datetime | None
    battery_pct: int | None
    signal_dbm: int | None
    firmware: str | None
    offline: bool
    low_battery: bool


class OperatorEventPublic(BaseModel):
    id: int
    at: datetime
    kind: str
    alert_id: str | None
    device_id: str | None
    message: str
    must_act: bool = Field(
        description="An alarm scoped to a territory (a home visit's): on the consoles until handled"
    )
    handled_by: str | None


class VisitCreate(_In):
    """A visite à domicile; ``practitioner_id`` is implied for a practitioner account."""

    practitioner_id: Id | None = None
    address: AddressIn
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    note: Annotated[str, Field(max_length=500)] | None = None

    @model_validator(mode="after")
    def _window(self) -> VisitCreate:
        if self.ends_at <= self.starts_at:
            raise ValueError(ENDS_BEFORE_START)
        if (self.ends_at - self.starts_at).total_seconds() > 24 * 3600:
            raise ValueError("une visite à domicile dure au plus 24 heures")
        return self


class VisitPublic(BaseModel):
    id: str
    practitioner_id: str
    address: Address
    starts_at: datetime
    ends_at: datetime
    note: str | None
    geocoded: bool = Field(description="False: no coordinates; the alert is routed by the address's commune")
    warnings: list[str] = Field(
        default=[], description="On a declaration: French warnings (no device, no coordinates)"
    )


# -- alerts ----------------------------------------------------------------------------


class AlertSummary(BaseModel):
    """An alert as listed (no address nor coordinates: reading those is audited)."""

    id: str
    kind: str
    state: str
    received_at: datetime
    device_id: str
    practitioner_id: str | None
    practitioner_name: str | None
    site_name: str | None
    site_kind: str | None
    convention_name: str | None
    fallback: str | None = Field(
        default=None,
        description="'departemental' or 'deployment': routed through a fallback (reason in the timeline)",
    )
    location_source: LocationSource | None
    stale: bool
    duress: bool
    acked_by: str | None
    taken_over_by: str | None
    closed_by: str | None
    exhausted: bool
    alarm: str | None = Field(
        default=None, description="Operator alarm no human has taken in hand (duress, exhausted, unrouted)"
    )
    needs_attention: bool = Field(
        description="Open, and nobody has it yet or an alarm is unanswered: the console rings"
    )


class LocationPublic(BaseModel):
    source: LocationSource
    description: str
    point: GeoPoint | None = None
    accuracy_m: float | None = None
    address: Address | None = None
    stale: bool = False
    fix_age_s: float | None = None
    insee: str | None = None
    departement: str | None = None
    purged: bool = False


class LivePositionPublic(BaseModel):
    """The latest position the device sent while the alert was open (issue 15)."""

    lat: float
    lon: float
    accuracy_m: float | None = None
    at: datetime = Field(description="The device's fix time (UTC)")
    age_s: float = Field(description="Seconds between the fix and this response (the server's clock)")


class TimelineEntry(BaseModel):
    at: datetime
    kind: str
    text: str = Field(description="French, for the console and the report")
    source: Literal["event", "notification", "note"]
    detail: dict[str, Any] = Field(default_factory=dict)


class NotificationPublic(BaseModel):
    id: int
    contact_id: str
    contact_name: str
    phone: str
    channel: Channel
    purpose: str
    tier: int
    round: int
    status: str
    error: str | None
    attempts: int
    created_at: datetime | None
    updated_at: datetime | None


class NotePublic(BaseModel):
    id: int
    at: datetime
    author: str
    text: str


class NoteCreate(_In):
    text: Annotated[str, Field(min_length=1, max_length=2000)]


class AlertDetail(AlertSummary):
    practitioner: PractitionerPublic | None
    site: dict[str, Any] | None
    device: DevicePublic | None
    location: LocationPublic | None
    live_position: LivePositionPublic | None = None
    tier: int
    round: int
    timeline: list[TimelineEntry]
    notifications: list[NotificationPublic]
    notes: list[NotePublic]


class AuditEntryPublic(BaseModel):
    id: int
    at: datetime
    user_id: int | None
    username: str | None
    action: str
    target_kind: str | None
    target_id: str | None
    ip: str | None
    detail: dict[str, Any]


class StatsTotal(BaseModel):
    """A month's or a convention's total (the admin charts); counts under the threshold are "<N"."""

    label: str = Field(description="YYYY-MM (Europe/Paris), or the convention's name")
    alerts: int | str
    acknowledged: int | str
    false_alarms: int | str
    cancelled: int | str
    duress: int | str


class StatsRow(BaseModel):
    """One anonymised cell: no names, no addresses."""

    convention: str
    departement: str | None
    month: str = Field(description="YYYY-MM, Europe/Paris")
    place_type: str
    alerts: int | str = Field(description='A count, or "<N" under the small-count threshold')
    acknowledged: int | str
    false_alarms: int | str
    cancelled: int | str
    duress: int | str
    median_ack_s: float | None = Field(description="None when the cell is under the threshold")
    p90_ack_s: float | None


# -- the console's escalation view and overview map ---------------------------------------


class EscalationDelivery(BaseModel):
    channel: Channel
    round: int = Field(description="0 for the first run of the chain, then each repeat")
    status: str = Field(description="Delivery status of the notification (provider's or ours)")
    error: str | None


class EscalationContact(BaseModel):
    contact_id: str
    name: str
    unit_name: str | None
    phone: str
    channels: list[Channel]
    deliveries: list[EscalationDelivery]
    acknowledged: bool


class EscalationTierPublic(BaseModel):
    index: int = Field(description="0-based; the console shows index + 1")
    ack_timeout_s: int
    status: Literal["current", "alerted", "upcoming", "not_reached", "empty"]
    contacts: list[EscalationContact]


class EscalationNext(BaseModel):
    due_at: datetime = Field(description="When the current tier's timer fires (server time)")
    tier: int = Field(description="The tier alerted then (0-based)")
    round: int
    renotify: bool = Field(description="A re-notification of the last tier (the chain is run out)")


class EscalationPublic(BaseModel):
    """An alert's escalation: tiers, contacts, deliveries, who took it, and the next tier's due time.

    ``now`` is the server's clock when the view was computed: count down from
    ``next.due_at - now``, not from the browser's own clock.
    """

    alert_id: str
    state: str
    now: datetime
    tier: int
    round: int
    repeats: int
    running: bool = Field(description="Escalating: nobody has the alert, no operator took it in hand")
    exhausted: bool
    renotifying: bool
    acked_by: str | None
    acked_via: str | None = Field(description="sms, voice, console, link")
    taken_over_by: str | None
    tiers: list[EscalationTierPublic]
    next: EscalationNext | None


class OverviewAlert(BaseModel):
    id: str
    kind: str
    state: str
    practitioner_name: str | None
    site_name: str | None
    needs_attention: bool
    source: LocationSource
    description: str
    point: GeoPoint
    accuracy_m: float | None
    position_at: datetime = Field(description="When she was there (the fix's time, else the alert's)")
    live: bool = Field(default=False, description="The device's latest live position (sent since the alert)")


class OverviewVisit(BaseModel):
    id: str
    practitioner_name: str
    label: str
    point: GeoPoint
    position_at: datetime = Field(description="When the visit began: its address is declared, not tracked")
    ends_at: datetime
    overdue: bool
    phase: str


class OverviewPublic(BaseModel):
    """Open alerts and open declared visits of the user's territory that have a position."""

    now: datetime
    alerts: list[OverviewAlert]
    visits: list[OverviewVisit]
    without_position: int = Field(
        description="Open alerts and visits left off the map for want of a position"
    )
