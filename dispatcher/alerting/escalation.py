"""The alert lifecycle as a pure state machine: events in, commands out.

No I/O, no clock, no randomness: :func:`start` and :func:`step` take a state
and an event and return the next state and the commands the engine must carry
out (send an SMS, arm a durable timer, send a downlink to the device, ...).
The engine persists the new state (optimistic concurrency on ``version``)
*before* executing the commands, so a crash between the two at worst repeats
commands, never loses them; every event handler is therefore idempotent with
respect to replays (a timer that fires twice, a duplicate status callback).

Lifecycle::

    received -> notifying -> acknowledged -> resolved
                   |   \\-> cancelled | false_alarm
                   \\-> duress (cancelled with the duress PIN: escalation goes on)

Escalation walks *positions* ``(round, tier)`` in strictly increasing order:
every tier of round 0, then every tier again for each repeat. Because a
position is never re-entered, a responder is alerted at most once per channel
per position, which bounds the number of alert notifications per period.

When the chain is run out it is *exhausted* (one operator alarm), but an open
alert is never left without a timer: the last non-empty tier is alerted again
at positions ``(last tier, repeats + 1)``, ``(last tier, repeats + 2)``...,
one every ``plan.renotify_s`` seconds, until someone acknowledges, an operator
takes over, or the alert is closed. Re-notification rounds only move on their
timer (never on delivery failures), so a number that always fails cannot make
them spin. Delivery failures are *answers about a contact* (undelivered,
failed number, no-answer, busy); a provider that cannot be reached is not
one: the delivery layer retries it and never feeds it to :func:`step`.

Invariants (tested as properties in tests/dispatcher/test_escalation.py and
test_messages.py):

* a stand-down (``cancelled``, ``false_alarm``, ``resolved``) is its own
  purpose, never ``alert``, and reaches every contact already alerted —
  the acknowledging one included (a closing skips whoever closed it) — by
  SMS, or by a call when SMS is not one of their channels;
* once under duress, every notification carries ``duress=True``, no
  stand-down is ever sent again (no cancel undoes it, an operator cannot
  mark it a false alarm: it can only be resolved), and the device only
  ever hears ``cancelled``;
* an operator alarm (duress, exhausted, nobody to alert) stays in ``alarm``
  until a human has the alert (an acknowledgement, an operator taking it in
  hand), whatever the state; it is never set on a closed alert;
* after a duress cancel, ``cover`` holds the state a normal cancel would have left:
  what the practitioner's own views show until an operator resolves it;
* a test alert reaches nobody but the practitioner; a drill (a test on a
  convention that consented) runs the real chain, marked as a drill by the
  texts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal, TypeAlias

from dispatcher.alerting.escalation_plan import (
    EscalationPlan,
    PlanTier,
    Recipient,
)
from dispatcher.alerting.escalation_state import (
    CHAIN_KINDS,
    ESCALATING_STATES,
    TERMINAL_STATES,
    Delivery,
    EscalationState,
)
from dispatcher.domain import AlertKind, AlertState, Channel, DownlinkKind

__all__ = [
    "PRACTITIONER_CONTACT_ID",
    "TERMINAL_STATES",
    "AckTimeout",
    "Acknowledged",
    "CancelTimers",
    "Cancelled",
    "Command",
    "DeliveryFailed",
    "EscalationPlan",
    "EscalationState",
    "Event",
    "MarkedFalseAlarm",
    "Notify",
    "NotifyPurpose",
    "OperatorTookOver",
    "PlanTier",
    "PushConsole",
    "RaiseOperatorAlarm",
    "Recipient",
    "Resolved",
    "SendDownlink",
    "StartTimer",
    "following_position",
    "start",
    "step",
]

NotifyPurpose = Literal[
    "alert", "cancelled", "false_alarm", "resolved", "duress_notice", "ack_notice", "test"
]
#: Messages that tell responders to stand down (never after a duress).
STAND_DOWNS: frozenset[NotifyPurpose] = frozenset({"cancelled", "false_alarm", "resolved"})
AckVia = Literal["sms", "voice", "console", "link"]  # link: the responder page (dispatcher/web/responder)

ALARM_EXHAUSTED = "escalade épuisée : le dernier palier est relancé jusqu'à une prise en charge"
ALARM_DURESS = "annulation sous contrainte"
ALARM_NO_RECIPIENT = (
    "aucun destinataire (pas de convention SSJ ou convention vide) : prise en charge manuelle"
)
ALARM_DURESS_AFTER_END = "annulation sous contrainte sur une alerte déjà close"

#: Contact id of the practitioner herself in the Notify of a test alert.
PRACTITIONER_CONTACT_ID = "practitioner"

# ---------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """The acknowledgement timer of position (tier, round) fired."""

    tier: int
    round: int


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """A human took the alert: a responder replied/pressed 1, or an operator clicked."""

    by: str  # contact id, or the operator's name for the console
    via: AckVia


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The device cancelled the alert with the normal PIN, or with the duress PIN."""

    duress: bool


@dataclass(frozen=True, slots=True)
class Resolved:
    """An operator (or the acknowledging responder) closed the incident."""

    by: str


@dataclass(frozen=True, slots=True)
class MarkedFalseAlarm:
    """An operator established that there was no danger."""

    by: str


@dataclass(frozen=True, slots=True)
class DeliveryFailed:
    """The provider reported failed/undelivered/no-answer/busy for one notification.

    ``tier``/``round`` are those of the :class:`Notify` command, when the engine
    kept them with the provider message; they let a late callback from an earlier
    position be told apart from a failure of the current one. ``purpose`` too:
    only a failed *alert* counts towards the fallback and early escalation (a
    failed "pris en charge" notice must not move anything).
    """

    contact_id: str
    channel: Channel
    tier: int | None = None
    round: int | None = None
    purpose: NotifyPurpose = "alert"


@dataclass(frozen=True, slots=True)
class OperatorTookOver:
    """An operator handles the alert by hand: automatic escalation stops, the alert stays open."""

    by: str


Event: TypeAlias = (
    AckTimeout | Acknowledged | Cancelled | Resolved | MarkedFalseAlarm | DeliveryFailed | OperatorTookOver
)


# ---------------------------------------------------------------------------
# Commands


@dataclass(frozen=True, slots=True)
class Notify:
    """Send one message (SMS) or place one call (voice) to a recipient.

    ``duress``: decided after a duress, the message must say the danger is
    confirmed. ``actor``: who acknowledged / closed, as the message names
    them (None: the practitioner herself, for a cancel).
    """

    recipient: Recipient
    channel: Channel
    purpose: NotifyPurpose
    tier: int
    round: int
    duress: bool = False
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Arm a durable timer; when due, feed ``AckTimeout(tier, round)`` back to :func:`step`."""

    delay_s: int
    tier: int
    round: int
    kind: Literal["ack_timeout"] = "ack_timeout"


@dataclass(frozen=True, slots=True)
class CancelTimers:
    """Delete every pending timer of the alert (a stale one firing anyway is harmless)."""


@dataclass(frozen=True, slots=True)
class SendDownlink:
    """Feedback to the device ("received" is sent by the engine itself after persisting)."""

    kind: DownlinkKind


@dataclass(frozen=True, slots=True)
class RaiseOperatorAlarm:
    """Something needs a human operator now (loud on the console)."""

    reason: str


@dataclass(frozen=True, slots=True)
class PushConsole:
    """The alert changed: refresh the live console."""


Command: TypeAlias = Notify | StartTimer | CancelTimers | SendDownlink | RaiseOperatorAlarm | PushConsole
Transition: TypeAlias = tuple[EscalationState, list[Command]]


# ---------------------------------------------------------------------------
# Positions: (tier, round) walked in increasing (round, tier) order, empty tiers skipped


def _positions_after(plan: EscalationPlan, tier: int, round_: int) -> Iterable[tuple[int, int]]:
    for r in range(round_, plan.repeats + 1):
        first = tier + 1 if r == round_ else 0
        for t in range(first, len(plan.tiers)):
            if plan.tiers[t].recipients:
                yield t, r


def _next_position(plan: EscalationPlan, tier: int, round_: int) -> tuple[int, int] | None:
    return next(iter(_positions_after(plan, tier, round_)), None)


def _next_or_renotify(plan: EscalationPlan, tier: int, round_: int) -> tuple[int, int] | None:
    """The next planned position, else the next re-notification round of the last tier.

    None only when the plan has no recipient at all.
    """
    planned = _next_position(plan, tier, round_)
    if planned is not None:
        return planned
    non_empty = [t for t, plan_tier in enumerate(plan.tiers) if plan_tier.recipients]
    return (non_empty[-1], max(round_, plan.repeats) + 1) if non_empty else None


def following_position(plan: EscalationPlan, tier: int, round_: int) -> tuple[int, int] | None:
    """The position ``(tier, round)`` alerted when the timer of ``(tier, round)`` fires (None: no recipient).

    A round past ``plan.repeats`` is a re-notification of the last tier.
    """
    return _next_or_renotify(plan, tier, round_)


def _first_position(plan: EscalationPlan) -> tuple[int, int] | None:
    return _next_position(plan, -1, 0)


def _alert_notifications(
    recipients: Iterable[Recipient], tier: int, round_: int, *, duress: bool
) -> list[Notify]:
    return [Notify(r, ch, "alert", tier, round_, duress=duress) for r in recipients for ch in r.channels]


def _enter(state: EscalationState, position: tuple[int, int] | None) -> Transition:
    """Alert every recipient of ``position`` on every channel and arm its timer.

    A position past the planned rounds is a re-notification: its timer is the
    plan's re-notification period, and the first one raises the "exhausted"
    alarm. None (no recipient anywhere) leaves the alert to the operators.
    """
    if position is None:
        return replace(state, exhausted=True, alarm=ALARM_EXHAUSTED), [RaiseOperatorAlarm(ALARM_EXHAUSTED)]
    tier, round_ = position
    plan_tier = state.plan.tiers[tier]
    recipients = _renotified(state.plan, tier) if round_ > state.plan.repeats else plan_tier.recipients
    notifies = _alert_notifications(recipients, tier, round_, duress=state.duress)
    new = replace(
        state,
        tier=tier,
        round=round_,
        notified=_merge(state.notified, (r.contact_id for r in recipients)),
        sent=tuple((n.recipient.contact_id, n.channel) for n in notifies),
        failed=(),
    )
    if round_ > state.plan.repeats:
        renotify: list[Command] = [*notifies, StartTimer(state.plan.renotify_s, tier, round_)]
        if state.exhausted:
            return new, renotify
        return replace(new, exhausted=True, alarm=ALARM_EXHAUSTED), [
            *renotify,
            RaiseOperatorAlarm(ALARM_EXHAUSTED),
        ]
    return new, [*notifies, StartTimer(plan_tier.ack_timeout_s, tier, round_)]


def _renotified(plan: EscalationPlan, tier: int) -> tuple[Recipient, ...]:
    """Who a re-notification alerts: the last tier, and the deployment's fallback contact."""
    recipients = plan.tiers[tier].recipients
    also = plan.renotify_also
    if also is None or any(r.contact_id == also.contact_id for r in recipients):
        return recipients
    return (*recipients, also)


def _merge(seen: tuple[str, ...], more: Iterable[str]) -> tuple[str, ...]:
    out = list(seen)
    for c in more:
        if c not in out:
            out.append(c)
    return tuple(out)


def _changed(old: EscalationState, new: EscalationState, commands: list[Command]) -> Transition:
    """Stamp a state change: next version, and a console refresh."""
    return replace(new, version=old.version + 1), [*commands, PushConsole()]


def _unchanged(state: EscalationState, commands: list[Command] | None = None) -> Transition:
    return state, commands or []


# ---------------------------------------------------------------------------
# Notices to people already alerted


def _notice_channel(recipient: Recipient, purpose: NotifyPurpose) -> Channel | None:
    """SMS when possible; a voice-only contact is called for notices that change what they do."""
    if Channel.SMS in recipient.channels:
        return Channel.SMS
    changes_what_they_do = purpose in STAND_DOWNS or purpose == "duress_notice"
    if changes_what_they_do and Channel.VOICE in recipient.channels:
        return Channel.VOICE
    return None


def _notices(
    state: EscalationState,
    purpose: NotifyPurpose,
    *,
    exclude: str | None = None,
    actor: str | None = None,
) -> list[Command]:
    commands: list[Command] = []
    for contact_id in state.notified:
        recipient = state.plan.recipient(contact_id)
        if contact_id == exclude or recipient is None:
            continue
        channel = _notice_channel(recipient, purpose)
        if channel is not None:
            commands.append(
                Notify(recipient, channel, purpose, state.tier, state.round, duress=state.duress, actor=actor)
            )
    return commands


def _name_of(state: EscalationState, by: str) -> str:
    """A contact id becomes the contact's name; an operator's name stays as it is."""
    recipient = state.plan.recipient(by)
    return recipient.name if recipient else by


def _downlink(state: EscalationState, kind: DownlinkKind) -> list[Command]:
    # After a duress cancel the device must keep believing the alert is over:
    # anything but "cancelled" could give her away to the aggressor.
    if state.duress and kind != "cancelled":
        return []
    return [SendDownlink(kind)]


# ---------------------------------------------------------------------------
# Public API


def start(
    alert_id: str, kind: AlertKind, plan: EscalationPlan | None, *, practitioner_phone: str | None
) -> Transition:
    """The first transition of a freshly persisted alert.

    A real alert alerts the whole first tier at once and arms its timer; with
    no recipient at all it raises an operator alarm and stays NOTIFYING so that
    operators can still acknowledge and resolve it. A test alert never reaches
    a responder: the practitioner gets an SMS and the "acknowledged" feedback.
    """
    plan = plan or EscalationPlan()
    state = EscalationState(alert_id=alert_id, kind=kind, state=AlertState.NOTIFYING, plan=plan)
    if kind is AlertKind.TEST:
        return _start_test(state, practitioner_phone)
    if plan.is_empty:
        unrouted = replace(state, exhausted=True, alarm=ALARM_NO_RECIPIENT)
        return unrouted, [RaiseOperatorAlarm(ALARM_NO_RECIPIENT), PushConsole()]
    new, commands = _enter(state, _first_position(plan))
    return new, [*commands, PushConsole()]


def _start_test(state: EscalationState, practitioner_phone: str | None) -> Transition:
    commands: list[Command] = []
    if practitioner_phone is not None:
        me = Recipient(
            contact_id="practitioner", name="praticien", phone=practitioner_phone, channels=(Channel.SMS,)
        )
        commands.append(Notify(me, Channel.SMS, "test", 0, 0))
    commands += [SendDownlink("acknowledged"), PushConsole()]
    return replace(state, state=AlertState.RESOLVED, exhausted=True), commands


def step(state: EscalationState, event: Event) -> Transition:
    """Apply one event. Never raises; an event that makes no sense now changes nothing."""
    match event:
        case AckTimeout():
            return _on_ack_timeout(state, event)
        case Acknowledged():
            return _on_acknowledged(state, event)
        case Cancelled():
            return _on_cancelled(state, event)
        case Resolved():
            return _on_closed(state, AlertState.RESOLVED, event.by)
        case MarkedFalseAlarm():
            return _on_closed(state, AlertState.FALSE_ALARM, event.by)
        case DeliveryFailed():
            return _on_delivery_failed(state, event)
        case OperatorTookOver():
            return _on_operator_took_over(state, event)
    return _unchanged(state)  # pragma: no cover - unreachable with a well-typed event


def _on_ack_timeout(state: EscalationState, event: AckTimeout) -> Transition:
    # Timers may fire twice (crash between firing and deleting) or after the
    # escalation moved on: only the current position's timer moves it.
    if not state.escalating or (event.tier, event.round) != (state.tier, state.round):
        return _unchanged(state)
    new, commands = _enter(state, _next_or_renotify(state.plan, state.tier, state.round))
    return _changed(state, new, commands)


def _on_acknowledged(state: EscalationState, event: Acknowledged) -> Transition:
    if state.kind not in CHAIN_KINDS or state.state not in ESCALATING_STATES or state.acked_by is not None:
        return _unchanged(state)
    # A human has it: the alarms raised so far are answered (a later duress raises its own).
    new = replace(state, state=AlertState.ACKNOWLEDGED, acked_by=event.by, acked_via=event.via, alarm=None)
    if state.plan.recipient(event.by) is not None:
        # Whoever took it is in the audience of every later notice (a cancel must reach them).
        new = replace(new, notified=_merge(new.notified, [event.by]))
    commands: list[Command] = [
        CancelTimers(),
        *_downlink(new, "acknowledged"),
        *_notices(new, "ack_notice", exclude=event.by, actor=_name_of(state, event.by)),
    ]
    return _changed(state, new, commands)


def _on_cancelled(state: EscalationState, event: Cancelled) -> Transition:
    # Whatever happened before, the device gets the normal "cancelled" answer,
    # so that a forced cancel looks exactly like a real one.
    if state.kind not in CHAIN_KINDS or state.terminal:
        alarm: list[Command] = [RaiseOperatorAlarm(ALARM_DURESS_AFTER_END)] if event.duress else []
        return _unchanged(state, [SendDownlink("cancelled"), *alarm])
    if state.duress:
        # Once under duress, no cancel from the device can stand the responders down.
        return _unchanged(state, [SendDownlink("cancelled")])
    if event.duress:
        # What a normal cancel would have left, kept for the views the aggressor may see.
        cover = replace(state, state=AlertState.CANCELLED, version=state.version + 1)
        new = replace(state, state=AlertState.DURESS, duress=True, alarm=ALARM_DURESS, cover=cover)
        commands: list[Command] = [
            SendDownlink("cancelled"),
            *_notices(new, "duress_notice"),
            RaiseOperatorAlarm(ALARM_DURESS),
        ]
        return _changed(state, new, commands)
    new = replace(state, state=AlertState.CANCELLED, alarm=None)
    return _changed(state, new, [CancelTimers(), SendDownlink("cancelled"), *_notices(new, "cancelled")])


def _on_closed(state: EscalationState, target: AlertState, by: str) -> Transition:
    """Resolved or marked as a false alarm by an operator (or resolved by the acknowledging responder).

    A duress alert is never a false alarm: the practitioner was forced to
    cancel, whatever she says afterwards; operators resolve it.
    """
    false_alarm = target is AlertState.FALSE_ALARM
    if (
        state.kind not in CHAIN_KINDS
        or state.terminal
        or state.state is AlertState.RECEIVED
        or (false_alarm and state.duress)
    ):
        return _unchanged(state)
    new = replace(state, state=target, closed_by=by, alarm=None)
    purpose: NotifyPurpose = "false_alarm" if false_alarm else "resolved"
    commands: list[Command] = [CancelTimers(), *_notices(new, purpose, exclude=by, actor=_name_of(state, by))]
    commands += _downlink(new, "resolved")
    return _changed(state, new, commands)


def _on_delivery_failed(state: EscalationState, event: DeliveryFailed) -> Transition:
    delivery: Delivery = (event.contact_id, event.channel)
    late = (event.tier is not None and event.tier != state.tier) or (
        event.round is not None and event.round != state.round
    )
    irrelevant = event.purpose != "alert" or delivery not in state.sent or delivery in state.failed
    if not state.escalating or late or irrelevant:
        # Not a failure of the current position (a notice, or a late callback): show it, change nothing.
        return _unchanged(state, [PushConsole()])
    new = replace(state, failed=(*state.failed, delivery))
    commands: list[Command] = []
    fallback = _fallback_channel(new, event.contact_id)
    if fallback is not None:
        tier_recipients = state.plan.tiers[state.tier].recipients
        target = next(r for r in tier_recipients if r.contact_id == event.contact_id)
        commands.append(Notify(target, fallback, "alert", state.tier, state.round, duress=state.duress))
        new = replace(new, sent=(*new.sent, (event.contact_id, fallback)))
    if set(new.sent) <= set(new.failed) and not state.renotifying:
        # Nobody of this tier can be reached: do not wait for the timeout. (A
        # re-notification waits for its period: a dead number must not make it spin.)
        new, advance = _enter(new, _next_or_renotify(new.plan, new.tier, new.round))
        commands += advance
    return _changed(state, new, commands)


def _fallback_channel(state: EscalationState, contact_id: str) -> Channel | None:
    """A channel of this contact not yet used at the current position."""
    for r in state.plan.tiers[state.tier].recipients:
        if r.contact_id == contact_id:
            for ch in r.channels:
                if (contact_id, ch) not in state.sent:
                    return ch
    return None


def _on_operator_took_over(state: EscalationState, event: OperatorTookOver) -> Transition:
    """An operator handles it by hand; also how an alarm (duress after an acknowledgement...) is answered."""
    # Also accepted once the escalation is exhausted: that is when operators step in.
    chain = state.kind in CHAIN_KINDS and not state.terminal
    untaken = state.state in ESCALATING_STATES and state.acked_by is None and state.taken_over_by is None
    if not chain or not (untaken or state.alarm is not None):
        return _unchanged(state)
    new = replace(state, taken_over_by=state.taken_over_by or event.by, alarm=None)
    return _changed(state, new, [CancelTimers()])
