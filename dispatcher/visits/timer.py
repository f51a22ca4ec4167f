"""The home-visit timer as a pure state machine: events in, commands out.

A practitioner declares a visit with an expected duration. Until she checks
out ("Je suis sortie", or an OK by SMS), the visit is *open*. When the expected
end passes she gets a discreet check ("Tout va bien ?"); if nothing comes
back within the grace period, a real alert is raised with the visit as its
location and "visite non clôturée" as its reason. A duress answer looks like
an OK to anyone watching (same reply, same page) and raises the alert at once.

No I/O, no clock, no randomness: every event carries ``now`` (Unix seconds).
The shell (:mod:`dispatcher.visits.runner`) persists the new state, with its
single due time, *before* executing the commands; a state is one row, so any
instance resumes a visit after a crash by claiming its due row.

Invariants (tested as properties in tests/dispatcher/test_visit_timer.py):

1. A visit that is not finished has exactly one due time (the expected end,
   then the check deadline); a finished one (closed or escalated) has none.
2. Time alone never closes a visit: from *open* or *checking*, the only way
   to *closed* is her own answer (page or SMS); the timer only moves towards
   the alert.
3. At most one alert per visit: *closed* and *escalated* are terminal, and
   only a transition into *escalated* emits :class:`RaiseAlert`.
4. A duress answer and an OK give the same :attr:`VisitTimerState.public_phase`
   and the same :class:`Reply`; only the duress one raises an alert.
5. A timer firing early or twice (crash between firing and saving) changes
   nothing: the machine compares ``now`` with its own due time.
6. Extending moves the due time forward, never back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, TypeAlias

__all__ = [
    "REASON",
    "CheckOut",
    "Command",
    "Event",
    "Extend",
    "Phase",
    "RaiseAlert",
    "Record",
    "Reply",
    "SendCheck",
    "SyncVisit",
    "TimerFired",
    "VisitTimerState",
    "start",
    "step",
]

Phase = Literal["open", "checking", "closed", "escalated"]
Via = Literal["page", "sms"]

#: The reason every message of an alert raised by the timer carries.
REASON = "visite non clôturée"
_FINISHED: frozenset[Phase] = frozenset({"closed", "escalated"})
_JSON_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class VisitTimerState:
    """Everything the machine knows about one visit's timer (persisted as JSON).

    ``duress`` is known to operators only: what the practitioner (or someone
    holding her phone) sees is :attr:`public_phase`.
    """

    visit_id: str
    practitioner_id: str
    phase: Phase
    started_at: float
    ends_at: float  # the expected end, moved by extensions
    grace_s: int
    check_deadline: float | None = None
    closed_at: float | None = None
    closed_via: Via | None = None
    escalated_at: float | None = None
    duress: bool = False
    extensions: int = 0
    version: int = 1

    @property
    def finished(self) -> bool:
        return self.phase in _FINISHED

    @property
    def due_at(self) -> float | None:
        """When the timer must be fed :class:`TimerFired` next (None: never again)."""
        if self.phase == "open":
            return self.ends_at
        if self.phase == "checking":
            return self.check_deadline
        return None

    @property
    def public_phase(self) -> Phase:
        """What her page shows: a visit closed under duress looks like any closed visit."""
        return "closed" if self.duress else self.phase

    def overdue(self, now: float) -> bool:
        """Past its expected end and not closed (operators see it highlighted)."""
        return not self.finished and now >= self.ends_at

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict; :meth:`from_json` gives back an equal state."""
        return {
            "schema": _JSON_SCHEMA,
            "visit_id": self.visit_id,
            "practitioner_id": self.practitioner_id,
            "phase": self.phase,
            "started_at": self.started_at,
            "ends_at": self.ends_at,
            "grace_s": self.grace_s,
            "check_deadline": self.check_deadline,
            "closed_at": self.closed_at,
            "closed_via": self.closed_via,
            "escalated_at": self.escalated_at,
            "duress": self.duress,
            "extensions": self.extensions,
            "version": self.version,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VisitTimerState:
        """Rebuild a state written by :meth:`to_json`; raises ValueError/KeyError on bad data."""
        if data.get("schema") != _JSON_SCHEMA:
            raise ValueError(f"unsupported visit timer schema: {data.get('schema')!r}")
        phase = str(data["phase"])
        if phase not in ("open", "checking", "closed", "escalated"):
            raise ValueError(f"unknown visit timer phase {phase!r}")
        via = data["closed_via"]
        if via not in (None, "page", "sms"):
            raise ValueError(f"unknown check-out channel {via!r}")
        return cls(
            visit_id=str(data["visit_id"]),
            practitioner_id=str(data["practitioner_id"]),
            phase=phase,  # type: ignore[arg-type]  # checked just above
            started_at=float(data["started_at"]),
            ends_at=float(data["ends_at"]),
            grace_s=int(data["grace_s"]),
            check_deadline=_opt_float(data["check_deadline"]),
            closed_at=_opt_float(data["closed_at"]),
            closed_via=via,
            escalated_at=_opt_float(data["escalated_at"]),
            duress=bool(data["duress"]),
            extensions=int(data["extensions"]),
            version=int(data["version"]),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


# ---------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The row's due time came (possibly early, or twice, after a crash)."""

    now: float


@dataclass(frozen=True, slots=True)
class Extend:
    """She needs more time: the expected end moves ``by_s`` past the later of now and the old end."""

    now: float
    by_s: int


@dataclass(frozen=True, slots=True)
class CheckOut:
    """She is out: "Je suis sortie" on the page, or OK to the check SMS (``duress`` False)."""

    now: float
    via: Via
    duress: bool = False


Event: TypeAlias = TimerFired | Extend | CheckOut


# ---------------------------------------------------------------------------
# Commands


@dataclass(frozen=True, slots=True)
class SendCheck:
    """Text her the discreet check ("Tout va bien ?"); she has until ``deadline`` to answer."""

    deadline: float


@dataclass(frozen=True, slots=True)
class RaiseAlert:
    """A real alert located at the visit, through the normal escalation."""

    reason: str
    duress: bool


@dataclass(frozen=True, slots=True)
class SyncVisit:
    """Mirror the state onto the visit record that locates her alerts (end, check-out time)."""

    ends_at: float
    checked_out_at: float | None


@dataclass(frozen=True, slots=True)
class Record:
    """Something operators and the audit log must see (``visit.extend``, ``visit.checkout``...)."""

    action: str
    detail: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer her (same text for an OK and a duress: nothing must tell them apart)."""

    text: str


Command: TypeAlias = SendCheck | RaiseAlert | SyncVisit | Record | Reply
Transition: TypeAlias = tuple[VisitTimerState, list[Command]]

CLOSED_REPLY = "Vigie : merci, visite cloturee."


# ---------------------------------------------------------------------------
# Public API


def start(visit_id: str, practitioner_id: str, *, now: float, duration_s: int, grace_s: int) -> Transition:
    """A freshly declared visit: open until ``now + duration_s``."""
    if duration_s <= 0 or grace_s <= 0:
        raise ValueError("duration and grace period must be positive")
    state = VisitTimerState(
        visit_id=visit_id,
        practitioner_id=practitioner_id,
        phase="open",
        started_at=now,
        ends_at=now + duration_s,
        grace_s=grace_s,
    )
    return state, [Record("visit.open", (("duration_s", str(duration_s)),))]


def step(state: VisitTimerState, event: Event) -> Transition:
    """Apply one event. Never raises; an event that makes no sense now changes nothing."""
    if state.finished:
        return state, []
    match event:
        case TimerFired():
            return _on_timer(state, event)
        case Extend():
            return _on_extend(state, event)
        case CheckOut():
            return _on_checkout(state, event)
    return state, []  # pragma: no cover - unreachable with a well-typed event


def _changed(old: VisitTimerState, new: VisitTimerState, commands: list[Command]) -> Transition:
    return replace(new, version=old.version + 1), commands


def _on_timer(state: VisitTimerState, event: TimerFired) -> Transition:
    due = state.due_at
    if due is None or event.now < due:
        return state, []  # early, or a stale duplicate of an already handled fire
    if state.phase == "open":
        deadline = event.now + state.grace_s
        new = replace(state, phase="checking", check_deadline=deadline)
        return _changed(state, new, [SendCheck(deadline), Record("visit.check_sent")])
    new = replace(state, phase="escalated", escalated_at=event.now)
    return _changed(state, new, [RaiseAlert(REASON, duress=False), Record("visit.escalate")])


def _on_extend(state: VisitTimerState, event: Extend) -> Transition:
    if event.by_s <= 0:
        return state, []
    ends_at = max(state.ends_at, event.now) + event.by_s
    new = replace(state, phase="open", ends_at=ends_at, check_deadline=None, extensions=state.extensions + 1)
    return _changed(
        state,
        new,
        [SyncVisit(ends_at, None), Record("visit.extend", (("by_s", str(event.by_s)),))],
    )


def _on_checkout(state: VisitTimerState, event: CheckOut) -> Transition:
    new = replace(state, phase="closed", closed_at=event.now, closed_via=event.via)
    commands: list[Command]
    if event.duress:
        # Closed for anyone looking at her phone; escalated for the operators. The
        # visit record is left as it is: it keeps locating her alerts (overrun).
        new = replace(new, phase="escalated", escalated_at=event.now, duress=True)
        commands = [RaiseAlert(REASON, duress=True), Record("visit.escalate", (("duress", "true"),))]
    else:
        commands = [SyncVisit(state.ends_at, event.now), Record("visit.checkout", (("via", event.via),))]
    if event.via == "sms":
        commands.append(Reply(CLOSED_REPLY))
    return _changed(state, new, commands)
