"""The store interface: what the dispatcher needs from a database.

SQLite (:mod:`dispatcher.store.sqlite`) is the embedded default; a PostgreSQL
implementation fills the same protocol for multi-instance deployments.
Every method commits before it returns: callers rely on "returned" meaning
"durable" (above all :meth:`Store.insert_alert`, done before the MQTT ack).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from dispatcher.domain import Convention, Device, DeviceState, HomeVisit, Practitioner, Site
from protocol.replay import SequenceWindow


class StoreError(Exception):
    """Base class of store failures (translated from the driver's exceptions)."""


class NotFound(StoreError):
    """The referenced record does not exist."""


class AlreadyExists(StoreError):
    """A record with this id already exists."""


class StoreUnavailable(StoreError):
    """The database cannot be written now (disk full, locked, connection lost)."""


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """What the ingest path needs to verify a device's messages."""

    device_id: str
    hmac_key: bytes
    state: DeviceState


@dataclass(frozen=True, slots=True)
class NewAlert:
    """An accepted alert/test/cancel uplink, as persisted before the MQTT ack."""

    id: str
    device_id: str
    kind: str  # "alert" | "test"
    seq: int
    device_ts: datetime
    received_at: datetime
    gesture: str
    fix: dict[str, Any] | None  # the raw location carried by the device, if any
    raw: bytes  # the signed payload, kept as evidence


@dataclass(frozen=True, slots=True)
class InsertOutcome:
    """Result of an idempotent insert: ``created`` False means a re-send."""

    created: bool


@dataclass(frozen=True, slots=True)
class Timer:
    """A durable escalation timer: due at ``due_at``, owned by nobody until claimed."""

    id: int
    alert_id: str
    kind: str
    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


class DirectoryStore(Protocol):
    """Practitioners, sites, devices, home visits and conventions."""

    async def upsert_practitioner(self, practitioner: Practitioner) -> None: ...
    async def get_practitioner(self, practitioner_id: str) -> Practitioner: ...
    async def list_practitioners(self) -> Sequence[Practitioner]: ...

    async def upsert_site(self, site: Site) -> None: ...
    async def get_site(self, site_id: str) -> Site: ...
    async def list_sites(self) -> Sequence[Site]: ...

    async def add_device(self, device: Device, hmac_key: bytes) -> None:
        """Register a new device; raises AlreadyExists, NotFound (practitioner/site)."""

    async def update_device(self, device: Device) -> None: ...
    async def get_device(self, device_id: str) -> Device: ...
    async def list_devices(self) -> Sequence[Device]: ...
    async def revoke_device(self, device_id: str) -> None:
        """Mark revoked: its signatures are refused from now on."""

    async def device_credentials(self) -> Sequence[DeviceCredentials]:
        """Every device's key and state, for the ingest path's in-memory cache."""

    async def upsert_visit(self, visit: HomeVisit) -> None: ...
    async def delete_visit(self, visit_id: str) -> None: ...
    async def list_visits(self, practitioner_id: str | None = None) -> Sequence[HomeVisit]: ...

    async def upsert_convention(self, convention: Convention) -> None: ...
    async def list_conventions(self) -> Sequence[Convention]: ...


@dataclass(frozen=True, slots=True)
class NotificationSpec:
    """A notification the escalation decided to send (one contact, one channel)."""

    contact_id: str
    contact_name: str
    phone: str
    channel: str
    purpose: str
    tier: int
    round: int


@dataclass(frozen=True, slots=True)
class TimerSpec:
    """A timer to create, due at ``due_at`` (Unix seconds)."""

    kind: str
    due_at: float
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of an alert, written atomically with its consequences.

    ``expected_version`` is the version read before computing the change; the
    write fails with :class:`Conflict` if another writer got there first.
    """

    alert_id: str
    expected_version: int
    state: str
    escalation: dict[str, Any]
    notifications: tuple[NotificationSpec, ...] = ()
    timers: tuple[TimerSpec, ...] = ()
    cancel_timers: bool = False
    events: tuple[tuple[str, dict[str, Any]], ...] = ()
    context: dict[str, Any] | None = None


class Conflict(StoreError):
    """The alert changed since it was read (optimistic concurrency)."""


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert as stored, with its escalation state and context documents."""

    id: str
    device_id: str
    kind: str
    seq: int
    received_at: datetime
    gesture: str
    fix: dict[str, Any] | None
    state: str
    escalation: dict[str, Any] | None
    context: dict[str, Any] | None
    version: int


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """A notification row: what was (or is to be) sent, and what came of it."""

    id: int
    alert_id: str
    contact_id: str
    contact_name: str
    phone: str
    channel: str
    purpose: str
    tier: int
    round: int
    status: str
    provider_sid: str | None
    error: str | None
    attempts: int


class AlertStore(Protocol):
    """Alerts, their escalation, notifications, timers, health and audit trails."""

    async def close(self) -> None: ...

    async def replay_windows(self) -> dict[str, SequenceWindow]: ...
    async def save_replay_windows(self, windows: dict[str, SequenceWindow]) -> None: ...

    async def alert_exists(self, alert_id: str) -> bool: ...
    async def insert_alerts(
        self, batch: Sequence[tuple[NewAlert, SequenceWindow, Transition | None]]
    ) -> list[InsertOutcome]:
        """Persist accepted alerts in one durable transaction, idempotently by id."""

    async def apply_transition(self, transition: Transition) -> list[int]:
        """Write a transition (optimistic on ``expected_version``, else Conflict)."""

    async def get_alert(self, alert_id: str) -> AlertRecord: ...
    async def list_alerts(
        self, *, states: Sequence[str] | None = None, limit: int = 200
    ) -> list[AlertRecord]: ...
    async def unstarted_alerts(self) -> list[AlertRecord]: ...
    async def alert_events(self, alert_id: str) -> list[dict[str, Any]]: ...
    async def last_fix(self, device_id: str) -> dict[str, Any] | None: ...

    async def claim_notifications(
        self, owner: str, *, ids: Sequence[int] | None = None, lease_s: float = 30.0, now: float
    ) -> list[NotificationRecord]:
        """Atomically move pending rows to 'sending' for ``owner`` (never twice)."""

    async def record_notification(
        self, notification_id: int, *, status: str, provider_sid: str | None = None, error: str | None = None
    ) -> None: ...
    async def notification_by_sid(self, sid: str) -> NotificationRecord | None: ...
    async def notifications_for(self, alert_id: str) -> list[NotificationRecord]: ...
    async def abandoned_notifications(self, now: float) -> list[NotificationRecord]: ...
    async def active_alert_for_phone(self, phone: str, states: Sequence[str]) -> str | None: ...

    async def claim_due_timers(self, owner: str, *, now: float, lease_s: float = 30.0) -> list[Timer]:
        """Lease due timers (or those whose owner's lease ran out)."""

    async def delete_timer(self, timer_id: int) -> None: ...
    async def next_timer_due(self) -> float | None: ...

    async def record_rejections(self, rows: Sequence[tuple[str | None, str, str, str]]) -> None: ...
    async def rejection_counts(self) -> dict[str, int]: ...
    async def save_device_health(self, rows: Sequence[dict[str, Any]]) -> None: ...
    async def device_health(self) -> list[dict[str, Any]]: ...
    async def add_operator_event(
        self, kind: str, message: str, *, alert_id: str | None = None, device_id: str | None = None
    ) -> int: ...
    async def operator_events(self, limit: int = 100) -> list[dict[str, Any]]: ...


class Store(DirectoryStore, AlertStore, Protocol):
    """Everything the dispatcher persists; SQLite and PostgreSQL both implement it."""
