"""What the operator's escalation view shows for one alert (pure): tiers, contacts, deliveries, next tier.

Events in, a view out, like :mod:`dispatcher.alerting.escalation`: the escalation
state, the alert's notifications and its pending timers are read by the API
shell (:mod:`dispatcher.web.api.escalations`) and handed over; nothing here reads
a clock or a store.

Invariants (tests/dispatcher/test_escalation_view.py):

* every tier of the plan is shown once, in order, with each of its recipients,
  even those not alerted yet; a contact the re-notification adds (the
  deployment's fallback) appears under the tier it was alerted with;
* only *alert* notifications count as deliveries of a tier (notices such as
  "pris en charge" are not an escalation step);
* a next step is given only while the escalation runs (nobody has the alert,
  no operator took it in hand, not closed) and a timer of the current
  position is pending; it names the position the escalation's own
  :func:`dispatcher.alerting.escalation.following_position` would enter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from dispatcher.alerting.escalation import following_position
from dispatcher.alerting.escalation_plan import Recipient
from dispatcher.alerting.escalation_state import EscalationState

__all__ = ["ContactLine", "DeliveryLine", "EscalationView", "NextStep", "Sent", "TierView", "Timer", "build"]

TierStatus = Literal["current", "alerted", "upcoming", "not_reached", "empty"]


@dataclass(frozen=True, slots=True)
class Sent:
    """One notification row, as far as the view needs it."""

    contact_id: str
    contact_name: str
    phone: str
    channel: str
    purpose: str
    tier: int
    round: int
    status: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Timer:
    """A pending acknowledgement timer of the alert: due at ``due_at`` (Unix seconds)."""

    due_at: float
    tier: int
    round: int


@dataclass(frozen=True, slots=True)
class DeliveryLine:
    channel: str
    round: int
    status: str
    error: str | None


@dataclass(frozen=True, slots=True)
class ContactLine:
    contact_id: str
    name: str
    unit_name: str | None
    phone: str
    channels: tuple[str, ...]
    deliveries: tuple[DeliveryLine, ...]
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class TierView:
    index: int
    ack_timeout_s: int
    status: TierStatus
    contacts: tuple[ContactLine, ...]


@dataclass(frozen=True, slots=True)
class NextStep:
    """When the current position's timer fires, and the position it alerts then."""

    due_at: float
    tier: int
    round: int
    renotify: bool


@dataclass(frozen=True, slots=True)
class EscalationView:
    tier: int
    round: int
    repeats: int
    running: bool
    exhausted: bool
    renotifying: bool
    acked_by: str | None
    acked_via: str | None
    taken_over_by: str | None
    tiers: tuple[TierView, ...]
    next: NextStep | None


def build(state: EscalationState, sent: Sequence[Sent], timers: Sequence[Timer]) -> EscalationView:
    """The view of ``state`` given the alert's notification rows and pending timers."""
    alerts = [s for s in sent if s.purpose == "alert"]
    plan = state.plan
    acker = state.acked_by
    tiers = tuple(
        TierView(
            index=i,
            ack_timeout_s=tier.ack_timeout_s,
            status=_status(state, i, bool(tier.recipients), any(s.tier == i for s in alerts)),
            contacts=_contacts(tier.recipients, [s for s in alerts if s.tier == i], acker),
        )
        for i, tier in enumerate(plan.tiers)
    )
    recipient = plan.recipient(acker) if acker else None
    return EscalationView(
        tier=state.tier,
        round=state.round,
        repeats=plan.repeats,
        running=state.escalating,
        exhausted=state.exhausted,
        renotifying=state.renotifying,
        acked_by=recipient.name if recipient else acker,
        acked_via=state.acked_via,
        taken_over_by=state.taken_over_by,
        tiers=tiers,
        next=_next(state, timers),
    )


def _status(state: EscalationState, index: int, has_recipients: bool, alerted: bool) -> TierStatus:
    if not has_recipients:
        return "empty"
    if state.escalating and index == state.tier:
        return "current"
    if alerted:
        return "alerted"
    return "upcoming" if state.escalating else "not_reached"


def _contacts(
    recipients: Sequence[Recipient], alerts: Sequence[Sent], acker: str | None
) -> tuple[ContactLine, ...]:
    lines = [
        ContactLine(
            contact_id=r.contact_id,
            name=r.name,
            unit_name=r.unit_name,
            phone=r.phone,
            channels=tuple(c.value for c in r.channels),
            deliveries=_deliveries(alerts, r.contact_id),
            acknowledged=r.contact_id == acker,
        )
        for r in recipients
    ]
    planned = {r.contact_id for r in recipients}
    extra: dict[str, Sent] = {}
    for s in alerts:  # alerted with this tier without being in it: the re-notification's fallback contact
        if s.contact_id not in planned:
            extra.setdefault(s.contact_id, s)
    lines += [
        ContactLine(
            contact_id=s.contact_id,
            name=s.contact_name,
            unit_name=None,
            phone=s.phone,
            channels=tuple(dict.fromkeys(a.channel for a in alerts if a.contact_id == s.contact_id)),
            deliveries=_deliveries(alerts, s.contact_id),
            acknowledged=s.contact_id == acker,
        )
        for s in extra.values()
    ]
    return tuple(lines)


def _deliveries(alerts: Sequence[Sent], contact_id: str) -> tuple[DeliveryLine, ...]:
    return tuple(
        DeliveryLine(channel=s.channel, round=s.round, status=s.status, error=s.error)
        for s in alerts
        if s.contact_id == contact_id
    )


def _next(state: EscalationState, timers: Sequence[Timer]) -> NextStep | None:
    if not state.escalating:
        return None
    current = [t for t in timers if (t.tier, t.round) == (state.tier, state.round)]
    if not current:
        return None
    position = following_position(state.plan, state.tier, state.round)
    if position is None:
        return None
    tier, round_ = position
    return NextStep(
        due_at=min(t.due_at for t in current), tier=tier, round=round_, renotify=round_ > state.plan.repeats
    )
