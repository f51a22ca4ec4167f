"""The store interface: what the dispatcher needs from a database.

SQLite (:mod:`dispatcher.store.sqlite`) is the embedded default; a PostgreSQL
implementation fills the same protocol for multi-instance deployments.
Every method commits before it returns: callers rely on "returned" meaning
"durable" (above all :meth:`Store.insert_alert`, done before the MQTT ack).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
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


@dataclass(frozen=True)
class DirectoryDelta:
    """The directory rows changed between two versions, each as it is now (None: deleted).

    A row changed again after the later version may already show that change:
    it is listed again by the next delta, so applying deltas in order converges.
    """

    practitioners: Mapping[str, Practitioner | None] = field(default_factory=dict)
    sites: Mapping[str, Site | None] = field(default_factory=dict)
    conventions: Mapping[str, Convention | None] = field(default_factory=dict)
    visits: Mapping[str, HomeVisit | None] = field(default_factory=dict)
    devices: Mapping[str, Device | None] = field(default_factory=dict)
    credentials: Mapping[str, DeviceCredentials | None] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """How many rows changed (a device's document and credentials count once)."""
        return sum(map(len, (self.practitioners, self.sites, self.conventions, self.visits, self.devices)))


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


def server_alert(alert_id: str, device_id: str, *, kind: str, gesture: str, at: datetime) -> NewAlert:
    """An alert the dispatcher raises itself (visit timer, test from her page): no uplink behind it."""
    return NewAlert(
        id=alert_id,
        device_id=device_id,
        kind=kind,
        seq=-1,
        device_ts=at,
        received_at=at,
        gesture=gesture,
        fix=None,
        raw=b"",
    )


@dataclass(frozen=True, slots=True)
class InsertOutcome:
    """Result of an idempotent insert: ``created`` False means a re-send.

    ``claimed``: the first transition's notifications, already leased to the
    inserting instance when :meth:`Store.insert_alerts` was given a
    :class:`Lease` (as :meth:`Store.claim_notifications` returns them: as
    they were before the claim).
    """

    created: bool
    claimed: tuple[NotificationRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim on notification rows: ``owner`` sends them, others may take over after ``until``."""

    owner: str
    until: float  # Unix seconds


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

    async def directory_version(self) -> int:
        """A counter that moves on every directory change, by any process (triggers).

        Replay windows and last fixes, updated by every alert, do not move it:
        the in-memory snapshot polls it and reloads only when it moved.
        """

    async def directory_delta(self, since: int, upto: int) -> DirectoryDelta | None:
        """The rows changed after version ``since`` up to ``upto``, read by their ids.

        None when the change log cannot say: it was pruned past ``since``, or
        too many rows changed (a bulk import) for a delta to beat a full read.
        """

    async def prune_directory_changes(self, keep: int) -> int:
        """Forget the change log but for its last ``keep`` versions; the rows deleted."""

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
    duress: bool = False  # decided after a duress: the message says the danger is confirmed
    actor: str | None = None  # who acknowledged / closed, as the message names them


@dataclass(frozen=True, slots=True)
class TimerSpec:
    """A timer to create, due at ``due_at`` (Unix seconds)."""

    kind: str
    due_at: float
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """A responder link minted with a decision: the SHA-256 of its token, never the token."""

    contact_id: str
    token_hash: str


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
    links: tuple[LinkSpec, ...] = ()  # responder links of the SMS it decides (alerting/responder_links.py)


class Conflict(StoreError):
    """The alert changed since it was read (optimistic concurrency)."""


@dataclass(frozen=True, slots=True)
class FlagChange:
    """A device's flags as the health leader just decided them, with the operator event saying why."""

    device_id: str
    flags: str  # JSON list, e.g. '["offline"]'
    kind: str  # the operator event's kind: "offline", "offline_cleared", "low_battery"...
    message: str


@dataclass(frozen=True, slots=True)
class AlertHead:
    """Which version of an alert the store holds, and when it was received (:meth:`Store.alert_heads`)."""

    id: str
    version: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What the anonymised statistics count of an alert (:meth:`Store.alert_facts`).

    No name, no address, no position: the few fields of its documents a count
    needs, and who may see it (its convention, territory, practitioner).
    """

    id: str
    kind: str
    received_at: datetime
    state: str
    convention_name: str | None
    operator_scope: tuple[str, ...]
    practitioner_id: str | None
    location_source: str | None
    site_kind: str | None
    duress: bool
    acknowledged_at: datetime | None  # the first 'Acknowledged' event's time


@dataclass(frozen=True, slots=True, weakref_slot=True)  # (weakref: dispatcher.live_alerts)
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
    duress: bool = False
    actor: str | None = None


def claimed_record(notification_id: int, alert_id: str, spec: NotificationSpec) -> NotificationRecord:
    """A notification created claimed, as a claim returns it: as it was before ('pending', 0 attempts)."""
    return NotificationRecord(
        id=notification_id,
        alert_id=alert_id,
        contact_id=spec.contact_id,
        contact_name=spec.contact_name,
        phone=spec.phone,
        channel=spec.channel,
        purpose=spec.purpose,
        tier=spec.tier,
        round=spec.round,
        status="pending",
        provider_sid=None,
        error=None,
        attempts=0,
        duress=spec.duress,
        actor=spec.actor,
    )


#: Provider statuses after which more news is expected (a callback, or the reconciliation).
PROVIDER_PENDING_STATUSES = ("queued", "accepted", "scheduled", "sent", "initiated", "ringing", "in-progress")


@dataclass(frozen=True, slots=True)
class ReconcileRow:
    """A notification whose fate must be checked with the provider, with what the check needs."""

    notification: NotificationRecord
    created_at: datetime
    updated_at: datetime  # last change: claim, attempt, outcome or callback
    alert_state: str


class AlertStore(Protocol):
    """Alerts, their escalation, notifications, timers, health and audit trails."""

    async def close(self) -> None: ...

    async def replay_windows(self) -> dict[str, SequenceWindow]: ...
    async def save_replay_windows(self, windows: dict[str, SequenceWindow]) -> None: ...

    async def admit_sequence(self, device_id: str, seq: int) -> bool:
        """Admit ``seq`` into the device's stored replay window, atomically; False if it was not fresh.

        For messages whose replay matters and that are rare (cancels): a sequence
        number used on any instance, and saved there, is refused here.
        False as well for a device that does not exist.
        """

    async def deployment_secret(self, name: str, candidate: str) -> str:
        """The secret ``name`` of this deployment: ``candidate`` if it had none yet, else the stored one.

        Every instance on the store gets the same answer (first writer wins), so
        a value only the dispatchers know needs no configuration (e.g. the MQTT
        share-group name that devices must not be able to join).
        """

    async def alert_exists(self, alert_id: str) -> bool: ...
    async def insert_alerts(
        self,
        batch: Sequence[tuple[NewAlert, SequenceWindow, Transition | None]],
        *,
        lease: Lease | None = None,
    ) -> list[InsertOutcome]:
        """Persist accepted alerts in one durable transaction, idempotently by id.

        With ``lease``, the first transitions' notifications are created
        already claimed ('sending', leased) and returned in each outcome's
        ``claimed``: the inserting instance sends them without a second
        transaction; crash recovery or another instance takes them over once
        the lease has run out, as after any claim.
        """

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
    async def record_notifications(self, rows: Sequence[tuple[int, str, str | None, str | None]]) -> None:
        """Send outcomes and provider statuses ``(id, status, provider_sid, error)``, in order, atomically.

        A status never goes back (:func:`dispatcher.alerting.status_order.settle`): a
        row still ours (claimed, 'pending', 'unknown') takes any; a provider status
        is replaced only by one not earlier ('queued' never undoes 'delivered');
        a SID given is always kept. Unlike :meth:`record_notification`, which
        sets what it is told (crash recovery resets rows with it).
        """

    async def mark_notification(
        self, notification_id: int, *, status: str, owner: str, lease_until: float, error: str | None
    ) -> None: ...
    async def abandoned_notifications(
        self, now: float, owner: str | None = None
    ) -> list[NotificationRecord]: ...
    async def active_alert_for_phone(self, phone: str, states: Sequence[str]) -> str | None: ...
    async def notifications_to_reconcile(
        self, *, stuck_before: datetime, limit: int = 200
    ) -> list[ReconcileRow]:
        """Rows 'unknown', and rows in :data:`PROVIDER_PENDING_STATUSES` unchanged since ``stuck_before``.

        Oldest change first.
        """

    async def settle_notification(
        self,
        notification_id: int,
        *,
        expected: str,
        status: str,
        provider_sid: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Set status (and SID, error) only if the row is still ``expected``; True if it was.

        Compare-and-set: two instances reconciling the same row settle it once.
        """

    async def open_alerts_for_phone(self, phone: str, states: Sequence[str]) -> list[str]:
        """Alerts in ``states`` that sent ``phone`` an alert notification, most recent first."""

    async def claim_inbound_message(self, sid: str, at: datetime) -> bool:
        """Remember a provider message id; False when it was already seen (a replayed webhook)."""

    async def forget_inbound_messages(self, before: datetime) -> int:
        """Forget the provider message ids claimed before ``before``; how many (retention)."""

    async def notifications_in_doubt(self, channel: str, phone: str) -> list[int]:
        """Rows to ``phone`` on ``channel`` without a provider SID, in flight ('sending') or 'unknown'."""

    async def disown_provider_records(self, sids: Sequence[str], at: datetime) -> None:
        """Remember provider records no row may adopt (the reconciliation could not attribute them)."""

    async def disowned_provider_records(self, sids: Sequence[str]) -> set[str]:
        """Those of ``sids`` that were disowned."""

    async def claim_due_timers(self, owner: str, *, now: float, lease_s: float = 30.0) -> list[Timer]:
        """Lease due timers (or those whose owner's lease ran out)."""

    async def delete_timer(self, timer_id: int) -> None: ...
    async def next_timer_due(self) -> float | None: ...
    async def alert_timers(self, alert_id: str) -> list[Timer]:
        """The alert's pending timers, earliest first (leased ones included): the console's countdown."""

    async def record_rejections(self, rows: Sequence[tuple[str | None, str, str, str]]) -> None: ...
    async def rejection_counts(self) -> dict[str, int]: ...
    async def merge_device_health(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Merge observations (a heartbeat: ``last_seen_at``, ``hb_seq``, readings; a
        ``status``/``status_at``) of any instance; return the stored rows of the devices whose
        heartbeat was refused.

        A row's heartbeat part (``hb_seq`` not None) is taken only if its
        ``hb_seq`` is above the stored one, and ``last_seen_at`` only moves
        forward; otherwise it is refused (a replay of a heartbeat another
        instance merged, or one merged late) and changes nothing. Of two
        statuses the later ``status_at`` wins; ``flags`` are left as they are.
        Every merged row gets a new ``rev``, larger than any before it, and
        ``merged_by`` (the row's ``merged_by``) when both its heartbeat and its
        status won, so that the row is exactly that instance's view; NULL otherwise.
        """

    async def device_health(self, *, after_rev: int = 0, not_by: str | None = None) -> list[dict[str, Any]]:
        """Health rows (with ``flags`` and ``rev``) whose ``rev`` is above ``after_rev``, but for those
        that are exactly the view of instance ``not_by`` (it knows them already)."""

    async def device_health_of(self, device_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The health rows (as :meth:`device_health`'s) of these devices only, sorted by device id:
        a page of the devices' table, not the 100,000 rows of a national fleet."""

    async def flagged_devices(self) -> list[str]:
        """The devices with a flag raised (offline, low battery), sorted: a few among 100,000."""

    async def device_last_seen(self, device_ids: Sequence[str]) -> dict[str, datetime]:
        """When each of ``device_ids`` was last heard (timezone-aware), read for these devices only;
        a device never heard (or unknown) is absent."""

    async def record_health_changes(self, changes: Sequence[FlagChange]) -> list[int]:
        """Set each device's flags and add its operator event, all in one transaction; the events' ids.

        One transaction for a whole pass: when a mobile network fails, thousands
        of devices go silent at once, and one commit each would hold the pass
        (and the next merges) for as many disk syncs.
        """

    async def hold_lease(self, name: str, owner: str, *, now: float, lease_s: float) -> bool:
        """Take or renew the lease ``name`` until ``now + lease_s``; False while another owner holds it."""

    async def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up (if ``owner`` holds it) so that another instance takes it at once."""

    async def lease_holders(self, prefix: str, *, now: float) -> list[str]:
        """Owners of the leases whose name starts with ``prefix`` and which run at ``now``, sorted.

        One lease per instance under a common prefix says which instances are
        alive and doing something (``alert-taker/``: taking alerts).
        """

    async def add_operator_event(
        self,
        kind: str,
        message: str,
        *,
        alert_id: str | None = None,
        device_id: str | None = None,
        scope: Sequence[str] | None = None,
        topic: str | None = None,
    ) -> int:
        """Store an operator event; its id.

        ``scope``: the names of the conventions whose operators see it, for an
        event about neither an alert nor a device (a home visit's alarm). An
        event with none of the three is about the whole system; ``topic`` names
        a system alarm's episode ("provider", "alert_takers"), raised (kind
        "alarm") or ended (any other kind).
        """

    async def operator_events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest events, newest first; ``scope`` is a list or None."""

    async def handle_operator_event(self, event_id: int, by: str) -> bool:
        """Mark the event handled by ``by``; False if it is unknown or was already handled."""

    async def operator_event(self, event_id: int) -> dict[str, Any] | None:
        """One event as :meth:`operator_events` gives it; None if unknown."""

    async def open_system_alarms(self) -> dict[str, str]:
        """Topic → text of the system alarms whose latest event raised them (none ended them
        since): what an instance starting mid-episode shows its consoles."""

    async def open_scoped_alarms(self, limit: int = 100) -> list[dict[str, Any]]:
        """Alarms scoped to conventions that nobody has handled yet, newest first: a home
        visit's alarm stays on the consoles until an operator takes it in hand."""


# -- access control, audit, notes, retention (REST API and console) ----------------

#: What a purged alert's location says instead of the address (RGPD retention).
PURGED_LOCATION = "localisation effacée (durée de conservation écoulée)"


@dataclass(frozen=True, slots=True)
class NewUser:
    """An account to create; ``password_hash`` is an argon2 hash, never a password."""

    username: str
    display_name: str
    password_hash: str
    role: str  # "admin" | "operator" | "practitioner"
    practitioner_id: str | None = None
    conventions: tuple[str, ...] = ()  # convention ids an operator is scoped to



def contains_pattern(word: str) -> str:
    """A LIKE pattern matching text that contains ``word`` literally (``%`` and ``_`` escaped
    with a backslash: ``ESCAPE '\\'``)."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"

@dataclass(frozen=True, slots=True)
class UserRecord:
    """A stored account."""

    id: int
    username: str
    display_name: str
    password_hash: str
    role: str
    practitioner_id: str | None
    conventions: tuple[str, ...]
    disabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the append-only audit log (who did or read what, when, from where)."""

    id: int
    at: datetime
    user_id: int | None
    username: str | None
    action: str  # e.g. "alert.location.read", "alert.acknowledge", "user.create"
    target_kind: str | None
    target_id: str | None
    ip: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Filters of :meth:`AccessStore.search_alerts`; every given filter must hold.

    ``convention_names`` None means "any, routed or not"; a tuple restricts to
    alerts routed to one of these conventions, or with one of them in
    ``context.operator_scope`` (an empty tuple matches nothing).
    Alerts are matched on ``context.convention_name`` and
    ``context.practitioner.id`` (JSON paths; ``context->>'…'`` in PostgreSQL).
    """

    states: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    convention_names: tuple[str, ...] | None = None
    practitioner_id: str | None = None
    #: None: any practitioner; a tuple: one of them (empty: nothing) — the console's name search.
    practitioner_ids: tuple[str, ...] | None = None
    device_id: str | None = None
    #: None: any alert; a tuple: one of these alerts (empty: nothing).
    ids: tuple[str, ...] | None = None
    since: datetime | None = None  # received_at >= since
    until: datetime | None = None  # received_at < until
    limit: int = 100


@dataclass(frozen=True, slots=True)
class NoteRecord:
    """A free-text note an operator or the practitioner added to an alert."""

    id: int
    alert_id: str
    at: datetime
    user_id: int | None
    author: str
    text: str


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one retention pass erased."""

    alerts: int = 0  # alerts whose fix, signed payload and location were erased
    visits: int = 0  # home visits (address, door code) deleted
    last_fixes: int = 0  # devices' last known positions erased
    positions: int = 0  # live positions of those alerts (and older ones) deleted
    sessions: int = 0  # expired sessions deleted
    login_failures: int = 0  # old failed-login records deleted
    inbound_messages: int = 0  # ids of received SMS forgotten (see dispatcher/retention.py)

    def __str__(self) -> str:
        # For logs and the CLI: counts, not a Python repr.
        return ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__)


class AccessStore(Protocol):
    """Accounts, sessions, login throttling, audit log, notes, alert search and retention.

    Plain rows, one transaction per method, like the rest of the store; the
    SQLite schema is migration 2 of :mod:`dispatcher.store.schema`.
    """

    async def add_user(self, user: NewUser) -> UserRecord:
        """Create an account; raises AlreadyExists if the username is taken."""

    async def get_user(self, user_id: int) -> UserRecord:
        """Raises NotFound."""

    async def get_user_by_name(self, username: str) -> UserRecord | None: ...
    async def list_users(self) -> list[UserRecord]: ...
    async def users_page(self, words: Sequence[str], limit: int) -> tuple[list[UserRecord], int]:
        """The first ``limit`` accounts by username whose username, name or practitioner id hold
        every one of ``words`` (case ignored, accents not), and how many there are in all: a
        national deployment has an account per practitioner, 100,000 of them."""
    async def update_user(self, user: UserRecord) -> None:
        """Overwrite display name, password hash, role, practitioner, conventions, disabled."""

    async def create_session(self, token_hash: str, user_id: int, expires_at: datetime) -> None: ...
    async def session_user(self, token_hash: str, now: datetime) -> UserRecord | None:
        """The enabled user of an unexpired session, else None."""

    async def delete_session(self, token_hash: str) -> None: ...
    async def delete_user_sessions(self, user_id: int) -> int: ...

    async def record_login_failure(self, username: str, ip: str, at: datetime) -> None: ...
    async def count_login_failures(self, username: str, ip: str, since: datetime) -> int: ...
    async def clear_login_failures(self, username: str, ip: str) -> None: ...

    async def take_pin_try(self, device_id: str, *, burst: float, refill_per_s: float, now: datetime) -> bool:
        """Take one of ``device_id``'s cancel PIN tries; False (nothing taken) when none is left.

        A token bucket in the store, so that every instance draws on the same
        tries (:class:`dispatcher.alerting.cancels.PinGuard`): ``burst`` at most,
        refilled at ``refill_per_s``, created full; atomic (one statement). A
        ``now`` earlier than the last try (clocks of two instances) adds nothing.
        """

    async def begin_quarantine(self, device_id: str, until: datetime) -> bool:
        """Record ``device_id`` cut off at the broker until ``until``; True only if it was not already
        (exactly one instance starts an episode)."""

    async def quarantines(self) -> list[tuple[str, datetime]]:
        """Every quarantined device with the end of its quarantine, soonest first."""

    async def end_quarantine(self, device_id: str) -> bool:
        """Forget ``device_id``'s quarantine; True only for the caller that removed it."""

    async def append_audit(
        self,
        *,
        action: str,
        user_id: int | None,
        username: str | None,
        target_kind: str | None = None,
        target_id: str | None = None,
        ip: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Append one entry (there is no way to change or delete one)."""

    async def list_audit(
        self,
        *,
        action: str | None = None,
        target_kind: str | None = None,
        target_id: str | None = None,
        user_id: int | None = None,
        before_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Most recent first; ``since`` inclusive, ``until`` exclusive."""

    async def search_alerts(self, query: AlertQuery) -> list[AlertRecord]:
        """Alerts matching ``query``, most recent first."""

    def alert_pages(self, query: AlertQuery) -> AsyncGenerator[Iterator[AlertRecord], None]:
        """:meth:`search_alerts`' alerts a page at a time, for reads of thousands.

        Each page makes its records one by one, as it is iterated: the caller
        keeps what it needs of each and lets go of it. Thousands held at once
        (each a tree of dicts) made the garbage collector walk them all, on the
        event loop (docs/performance.md, "A console opening in a surge"). Close
        it (``contextlib.aclosing``) if you stop early.
        """

    async def alert_heads(self, query: AlertQuery) -> list[AlertHead]:
        """:meth:`search_alerts`' alerts as their id, version and time only, in the same order.

        Without their documents: a few bytes a row instead of ≈ 5 KB, for a
        reader who holds most of them in memory already (a console's snapshot
        takes the summaries held by :class:`dispatcher.live_alerts.LiveAlerts`
        and reads only the others' records).
        """

    async def alert_facts(self, query: AlertQuery) -> list[AlertFacts]:
        """:meth:`search_alerts`' alerts as the facts the statistics count, in the same order.

        Read by the database from the documents, with each alert's first
        acknowledgement: tens of thousands of alerts in one read of a few
        columns, instead of their whole records (≈ 5 KB each) and their events.
        """

    async def add_note(self, alert_id: str, *, user_id: int | None, author: str, text: str) -> NoteRecord:
        """Raises NotFound if the alert does not exist."""

    async def notes_for(self, alert_id: str) -> list[NoteRecord]: ...
    async def notification_times(self, alert_id: str) -> dict[int, tuple[datetime, datetime]]:
        """For each notification of the alert: (created_at, updated_at = last status change)."""

    async def alert_event_times(self, alert_ids: Sequence[str]) -> dict[str, dict[str, datetime]]:
        """For each alert, the first time of each event kind ('received', 'Acknowledged', ...)."""

    async def purge_locations(self, cutoff: datetime, *, now: datetime) -> PurgeReport:
        """Erase location data older than ``cutoff`` (RGPD retention); idempotent.

        Alerts received before ``cutoff``: device fix and signed payload
        erased, ``context.location`` reduced to source/INSEE/département with
        :data:`PURGED_LOCATION` as description, 'located' events likewise,
        ``location_purged_at`` set, and their live positions
        (:class:`PositionFix`) deleted. Devices whose last fix is older: erased.
        Home visits that ended before ``cutoff``: deleted. Also deletes
        sessions expired at ``now`` and login failures older than a day.
        """


# -- home-visit timers and practitioners' incident reports (issue 14) ---------------


@dataclass(frozen=True, slots=True)
class VisitTimerRecord:
    """A visit timer row: the pure state (:mod:`dispatcher.visits.timer`) and its due time."""

    visit_id: str
    practitioner_id: str
    phase: str
    due_at: float | None
    state: dict[str, Any]
    version: int
    alert_id: str | None


@dataclass(frozen=True, slots=True)
class SideTextRecord:
    """A visit's own SMS (its check, the text to the fallback contact) in the durable outbox.

    Written with the visit timer's transaction that decided it, so that a crash
    between that commit and the request cannot lose it. ``status`` is 'pending'
    (never attempted, or provably not taken by the provider: safe to send) or
    'sending' (a request may have left: after a crash its fate is unknown, and it
    is not repeated). A row is deleted once the provider answered for good, or
    once its window ``not_after`` (epoch seconds) is past. ``key`` identifies this
    send (a visit may have several checks); ``reference`` names it to the provider.
    """

    key: str
    reference: str
    phone: str
    body: str
    what: str  # how the log names it: "visite v-1 : SMS de vérification"
    not_after: float
    status: str = "pending"
    lease_owner: str | None = None
    lease_until: float | None = None


@dataclass(frozen=True, slots=True)
class StepAlarm:
    """An operator alarm a visit timer's step decides (her alert could not be raised),
    scoped to the conventions whose operators would have seen the alert."""

    message: str
    scope: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VisitTimerWrite:
    """One atomic write of a visit timer, with what must change with it.

    ``expected_version`` 0 creates the row (AlreadyExists if it exists), else
    the row must still be at that version (Conflict otherwise); the write also
    releases any lease. ``visit`` is upserted with it; ``alert`` (a server-raised
    alert, inserted without touching any device's replay window) is inserted
    with its first escalation ``first`` and recorded as the timer's alert;
    ``texts`` join the outbox (:class:`SideTextRecord`); ``alarm`` becomes an
    operator event of kind 'alarm' (its id is what the write returns).
    """

    visit_id: str
    practitioner_id: str
    phase: str
    due_at: float | None
    state: dict[str, Any]
    expected_version: int
    visit: HomeVisit | None = None
    alert: NewAlert | None = None
    first: Transition | None = None
    texts: tuple[SideTextRecord, ...] = ()
    alarm: StepAlarm | None = None


@dataclass(frozen=True, slots=True)
class IncidentReportRecord:
    """The practitioner's *fiche de signalement* of one alert, as last saved."""

    alert_id: str
    doc: dict[str, Any]
    author: str
    user_id: int | None
    updated_at: datetime


class VisitStore(Protocol):
    """Durable visit timers (any instance resumes them) and incident reports."""

    async def write_visit_timer(self, write: VisitTimerWrite) -> int | None:
        """The id of the operator event ``write.alarm`` became; None without one."""
    async def get_visit_timer(self, visit_id: str) -> VisitTimerRecord:
        """Raises NotFound."""

    async def list_visit_timers(
        self, *, practitioner_id: str | None = None, phases: Sequence[str] = (), limit: int = 100
    ) -> list[VisitTimerRecord]:
        """Most recently declared first."""

    async def claim_due_visit_timers(
        self, owner: str, *, now: float, lease_s: float = 30.0
    ) -> list[VisitTimerRecord]:
        """Lease the rows due at ``now`` (or whose owner's lease ran out)."""

    async def next_visit_timer_due(self) -> float | None: ...
    async def claim_side_texts(
        self, owner: str, *, now: float, lease_s: float, own_before: float | None = None
    ) -> list[SideTextRecord]:
        """Lease the outbox rows nobody holds (no lease, or its owner's ran out), oldest first;
        with ``own_before`` (epoch seconds), also those leased to ``owner`` and written before
        then: its own, left by its previous run."""

    async def mark_side_text(self, key: str, status: str, *, owner: str, lease_until: float) -> None:
        """Set a row's status ('pending' or 'sending') and renew its lease to ``owner``."""

    async def drop_side_text(self, key: str) -> None:
        """Delete a row (answered for good, or past its window); nothing if it is gone."""

    async def save_incident_report(
        self, alert_id: str, doc: dict[str, Any], *, user_id: int | None, author: str
    ) -> None:
        """Insert or replace the report of ``alert_id`` (NotFound if no such alert)."""

    async def get_incident_report(self, alert_id: str) -> IncidentReportRecord | None: ...
    async def insert_server_alert(self, alert: NewAlert, first: Transition) -> None:
        """An alert the dispatcher raises itself (a device test from her page): no replay window."""


@dataclass(frozen=True, slots=True)
class CommuneRecord:
    """One commune's contour as stored: INSEE code, name, département, WKB (WGS84 lon/lat)."""

    code: str
    nom: str
    departement: str
    wkb: bytes


class GeoStore(Protocol):
    """Commune contours (routing of GPS fixes, offline) and last known positions from heartbeats."""

    async def replace_communes(self, departements: Sequence[str], communes: Sequence[CommuneRecord]) -> int:
        """In ONE transaction: delete the communes of ``departements``, insert ``communes``,
        move :meth:`communes_version`. Returns the number of communes now stored."""

    async def list_communes(self) -> list[CommuneRecord]: ...
    async def communes_version(self) -> int:
        """A counter moved by every :meth:`replace_communes` (the in-memory index polls it)."""

    async def save_last_fixes(self, fixes: dict[str, dict[str, Any]]) -> None:
        """Devices' last known positions (from heartbeats); a newer stored fix is kept."""


# -- live positions during an open alert (issue 15) ----------------------------------


@dataclass(frozen=True, slots=True)
class PositionFix:
    """One position the device sent while its alert was open.

    ``at`` is the device's fix time (UTC), ``received_at`` when the dispatcher
    got it. Personal data: erased by :meth:`AccessStore.purge_locations` with
    the alert's other location data; reads by humans are audited by the caller.
    """

    lat: float
    lon: float
    accuracy_m: float | None
    at: datetime
    received_at: datetime


class PositionStore(Protocol):
    """The positions of open alerts, for the responders' page and the console."""

    async def record_alert_position(self, alert_id: str, fix: PositionFix) -> None:
        """Keep ``fix`` for ``alert_id`` (NotFound if there is no such alert).

        Does not check that the alert is open: the ingest does. Not a hot-path
        write: it yields to the alert path's transactions, and on SQLite it is
        durable against a crash but may be lost with the last seconds before a
        power loss (the next fix replaces it anyway).
        """

    async def latest_alert_position(self, alert_id: str) -> PositionFix | None:
        """The fix with the latest ``at`` (then the last received), or None (none, or purged)."""

    async def latest_alert_positions(self, alert_ids: Sequence[str]) -> dict[str, PositionFix]:
        """:meth:`latest_alert_position` of each alert that has one, in one read (the overview map:
        hundreds of open alerts, one store read each held the alerts arriving meanwhile)."""


@dataclass(frozen=True, slots=True)
class ResponderLink:
    """A stored responder link, with what decides whether it still opens: its alert's state.

    ``alert_updated_at`` is the alert's last change: for a closed alert, when it closed.
    """

    token_hash: str
    alert_id: str
    contact_id: str
    created_at: datetime
    alert_state: str
    alert_updated_at: datetime


class ResponderStore(Protocol):
    """Responder links (``/r/<token>``): hashes only; written with a transition or on their own."""

    async def add_responder_link(self, alert_id: str, link: LinkSpec) -> None:
        """Store one link of ``alert_id`` (NotFound if no such alert; a known hash is kept as is)."""

    async def responder_link(self, token_hash: str) -> ResponderLink | None:
        """The link with this hash, with its alert's state; None when there is none."""


class Store(
    DirectoryStore, AlertStore, AccessStore, VisitStore, GeoStore, PositionStore, ResponderStore, Protocol
):
    """Everything the dispatcher persists; SQLite and PostgreSQL both implement it."""
