"""Reconciliation of uncertain and stuck notifications with the provider's records (pure).

No I/O, no clock: the shell (:mod:`dispatcher.alerting.reconciler`) reads the rows and
the provider's records and carries out the decision.

The rule (docs/lifecycle.md, "Uncertain sends"): for a panic alert a rare
duplicate SMS or call is acceptable, a missing one is not. So:

* A row whose request may have left without our knowing its fate
  (``unknown``: a timeout after the request was written, or a process killed
  between the request and its commit) is looked up among the provider's
  records *to the same number*, created no earlier than the row (less a clock
  skew margin), and not already the record of another row. The row adopts
  a record only when the match is certain: exactly one such record, and no
  other row to that number whose fate is unknown or whose request is in
  flight. Otherwise the row is sent again — unless it is an alert
  notification whose alert no longer needs it (closed or acknowledged),
  which is dropped as ``canceled`` — and the records it could not tell
  apart are *disowned*: no later row may adopt them.
* The lookup waits ``settle_s`` after the row's last change: a request the
  provider is still processing must not be declared lost.
* A row that has the provider's SID but no final status for ``stuck_after_s``
  (a callback that hit a dead dispatcher) takes the status the provider
  reports for that SID; still in progress there, it waits for the next pass.

Why so strict: matching by number and time cannot tell two requests to the
same number apart (a police switchboard gets a call per alert). Adopting the
wrong record would mark one alert's call as made while it never left, and
bind a keypress to the wrong alert. Re-sending costs at most a duplicate
call or SMS, which the rule accepts. Invariants (tests/dispatcher/test_reconcile.py):

* a row adopts a record only if no other row could be its owner;
* a disowned record is never adopted afterwards (the shell counts it as taken);
* a row whose alert still needs it is never written off: adopted or re-sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "CLOCK_SKEW_S",
    "FINAL_STATUSES",
    "Adopt",
    "Decision",
    "Drop",
    "ProviderRecord",
    "Resend",
    "Uncertain",
    "Wait",
    "decide_lost",
    "decide_stuck",
]

#: Our clock and the provider's may disagree by this much.
CLOCK_SKEW_S = 60.0
#: Statuses after which the provider sends no more news about a message or call.
FINAL_STATUSES = frozenset(
    {"delivered", "undelivered", "failed", "canceled", "read", "completed", "busy", "no-answer"}
)
#: Alert states in which an alert notification is still wanted.
_NEEDS_ALERTS = frozenset({"received", "notifying", "duress"})


@dataclass(frozen=True, slots=True)
class Uncertain:
    """A notification row as the reconciliation sees it (times are Unix seconds)."""

    id: int
    channel: Literal["sms", "voice"]
    phone: str
    purpose: str
    status: str
    provider_sid: str | None
    created_at: float
    updated_at: float
    alert_state: str


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """A message or call as the provider lists it."""

    sid: str
    to: str
    status: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Adopt:
    """The provider has it: take its SID and status."""

    sid: str
    status: str


@dataclass(frozen=True, slots=True)
class Resend:
    """Not provably at the provider: send it (again).

    ``disowned``: records that may be this row's but cannot be told apart
    from another row's; nobody adopts them afterwards.
    """

    disowned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Drop:
    """Not provably at the provider, and no longer wanted (the alert is over or acknowledged)."""

    reason: str
    disowned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to decide yet; look again at the next pass."""

    reason: str


Decision: TypeAlias = Adopt | Resend | Drop | Wait


def decide_lost(
    row: Uncertain,
    records: Iterable[ProviderRecord],
    *,
    taken_sids: frozenset[str],
    rivals: int,
    now: float,
    settle_s: float,
) -> Decision:
    """Decide for a row without a provider SID (``unknown``): adopt, re-send, drop or wait.

    ``records``: the provider's records to ``row.phone`` on the row's channel;
    ``taken_sids``: those already stored on another notification, or disowned;
    ``rivals``: other rows to the same number and channel without a SID whose
    request is in flight or whose fate is unknown (each could own a record).
    """
    if now - row.updated_at < settle_s:
        return Wait("the provider may still be processing the request")
    earliest = row.created_at - CLOCK_SKEW_S
    candidates = sorted(
        (r for r in records if r.to == row.phone and r.sid not in taken_sids and r.created_at >= earliest),
        key=lambda r: (r.created_at, r.sid),
    )
    if len(candidates) == 1 and rivals == 0:
        return Adopt(candidates[0].sid, candidates[0].status)
    disowned = tuple(r.sid for r in candidates)
    if row.purpose == "alert" and row.alert_state not in _NEEDS_ALERTS:
        return Drop(f"alerte {row.alert_state} : plus nécessaire", disowned)
    return Resend(disowned)


def decide_stuck(row: Uncertain, record: ProviderRecord | None) -> Decision:
    """Decide for a row with a SID but no final status: adopt the provider's status, or wait."""
    if record is None:
        return Wait("the provider does not know this SID (yet)")
    if record.status in FINAL_STATUSES and record.status != row.status:
        return Adopt(record.sid, record.status)
    return Wait(f"still {record.status} at the provider")
