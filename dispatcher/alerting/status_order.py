"""Which status a notification row keeps when outcomes and provider callbacks race.

The provider's answer to our request (its SID, status 'queued') and its
status callbacks ('sent', 'delivered'...) arrive by separate paths, and the
provider does not order its callbacks: an answer held up on the network, or
a 'sent' callback retried late, may land after a later status. Stored as it
came, the row would go back to 'queued' or 'sent' and stay there until the
reconciliation, the timeline saying a delivered alert was not.

Invariants (tests/dispatcher/test_status_order.py):

* a provider status never replaces a later one (rank below);
* while the row is still ours - claimed for sending ('sending' or
  'retry_wait' under a lease), 'pending' or 'unknown' - whatever the send or
  the provider says replaces it;
* our own outcomes ('unknown'...) never replace a provider status;
* a SID given is always kept, whether or not its status is.

Twilio also has a 'sending' status. A row claimed by us is 'sending' *under a
lease*; outcomes and callbacks clear the lease, so a stored 'sending' without
one is the provider's, and in a recorded outcome 'sending' is always the
provider's (our claims are written elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

__all__ = ["Outcome", "Row", "Writes", "admits", "rank", "settle", "writes"]

#: Messages and calls together (one column): accepted/scheduled < queued < sending/initiated
#: < sent/ringing < in-progress < a final status < read.
_RANKS: Mapping[str, int] = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 2,
    "sending": 3,
    "initiated": 3,
    "sent": 4,
    "ringing": 4,
    "in-progress": 5,
    "answered": 5,
    "delivered": 7,
    "undelivered": 7,
    "failed": 7,
    "canceled": 7,
    "completed": 7,
    "busy": 7,
    "no-answer": 7,
    "read": 8,
}
#: A status the provider may add one day: news, but never over a final one.
_UNRANKED = 6
#: Ours, before the provider's word: every outcome and status replaces them.
_OURS = frozenset({"pending", "retry_wait", "unknown"})


@dataclass(frozen=True, slots=True)
class Row:
    """A notification's status as stored; ``leased``: claimed by an instance for sending."""

    status: str
    provider_sid: str | None
    error: str | None
    leased: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """One thing to record: the send's outcome or a provider status callback."""

    id: int
    status: str
    provider_sid: str | None
    error: str | None


def rank(status: str) -> int:
    """Position of a provider status in a message's or call's life (0: ours, not the provider's)."""
    if status in _OURS:
        return 0
    return _RANKS.get(status, _UNRANKED)


def admits(row: Row, status: str) -> bool:
    """Whether ``status`` may replace the row's: it is ours still, or ``status`` is not earlier."""
    if row.leased or row.status in _OURS:
        return True
    return rank(status) >= rank(row.status)


def settle(current: Mapping[int, Row], outcomes: Iterable[Outcome]) -> dict[int, Row]:
    """The rows after ``outcomes`` (applied in order), for the ids in ``current`` that they touch.

    A status refused leaves status, error and lease as they were; its SID is
    still taken. An id missing from ``current`` (no such row) is skipped.
    """
    after: dict[int, Row] = {}
    for outcome in outcomes:
        row = after.get(outcome.id) or current.get(outcome.id)
        if row is None:
            continue
        sid = outcome.provider_sid or row.provider_sid
        if admits(row, outcome.status):
            after[outcome.id] = Row(outcome.status, sid, outcome.error, leased=False)
        else:
            after[outcome.id] = replace(row, provider_sid=sid)
    return after


@dataclass(frozen=True, slots=True)
class Writes:
    """What a store writes for a batch of outcomes, in one transaction."""

    #: (id, row): status, error and SID recorded, lease released, ``updated_at`` is now.
    recorded: list[tuple[int, Row]]
    #: (id, SID): the status was refused (or unchanged); the row only gains its SID.
    sids: list[tuple[int, str]]


def writes(current: Mapping[int, Row], outcomes: Iterable[Outcome]) -> Writes:
    """The writes that take ``current`` to :func:`settle`'s rows (nothing for a row left as it was)."""
    recorded: list[tuple[int, Row]] = []
    sids: list[tuple[int, str]] = []
    for nid, after in sorted(settle(current, outcomes).items()):
        before = current[nid]
        if (after.status, after.error, after.leased) != (before.status, before.error, before.leased):
            recorded.append((nid, after))
        elif after.provider_sid is not None and after.provider_sid != before.provider_sid:
            sids.append((nid, after.provider_sid))
    return Writes(recorded, sids)
