"""A decision of the escalation, as the one write that makes it durable.

The state machine (:mod:`dispatcher.alerting.escalation`) says what to do;
this turns its new state and commands into a :class:`Transition`: the state,
the notification rows to create, the timers to arm or cancel, the timeline's
events (operator alarms among them), the alert's context on its first
transition and the responder links minted with the decision. The store
commits it in one transaction, before any command is executed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from dispatcher.alerting import escalation as esc
from dispatcher.alerting.responder_links import ResponderLinks
from dispatcher.domain import AlertContext
from dispatcher.store.base import NotificationSpec, TimerSpec, Transition

# The PIN hashes stay in the directory: a copy in every alert would outlive a PIN change
# and hand an offline-crackable hash to whoever reads an alert row or a backup.
_PIN_HASHES: dict[str, Any] = {
    "practitioner": {"cancel_pin_hash", "duress_pin_hash"},
    "site": {"cancel_pin_hash", "duress_pin_hash"},  # a site's staff PINs (desk buttons)
}


def transition_for(
    version: int,
    state: esc.EscalationState,
    commands: Sequence[esc.Command],
    events: list[tuple[str, dict[str, Any]]],
    *,
    context: AlertContext | None = None,
    links: ResponderLinks | None = None,
) -> Transition:
    """The write that moves the alert from ``version`` to ``state`` and records ``commands``."""
    now = time.time()
    notifications = tuple(
        NotificationSpec(
            contact_id=c.recipient.contact_id,
            contact_name=c.recipient.name,
            phone=c.recipient.phone,
            channel=c.channel.value,
            purpose=c.purpose,
            tier=c.tier,
            round=c.round,
            duress=c.duress,
            actor=c.actor,
        )
        for c in commands
        if isinstance(c, esc.Notify)
    )
    timers = tuple(
        TimerSpec(kind=c.kind, due_at=now + c.delay_s, payload={"tier": c.tier, "round": c.round})
        for c in commands
        if isinstance(c, esc.StartTimer)
    )
    alarms = [
        ("operator_alarm", {"reason": c.reason}) for c in commands if isinstance(c, esc.RaiseOperatorAlarm)
    ]
    return Transition(
        alert_id=state.alert_id,
        expected_version=version,
        state=state.state.value,
        escalation=state.to_json(),
        notifications=notifications,
        timers=timers,
        cancel_timers=any(isinstance(c, esc.CancelTimers) for c in commands),
        events=tuple(events + alarms),
        context=context.model_dump(mode="json", exclude=_PIN_HASHES) if context else None,
        links=links.plan(state.alert_id, commands) if links is not None else (),
    )
