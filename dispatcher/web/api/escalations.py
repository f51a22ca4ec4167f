"""An alert's escalation as the operator console shows it: tiers, deliveries, the next tier's due time.

The I/O shell of :mod:`dispatcher.alerting.escalation_view`: reads the alert, its
notifications and its pending timers, and stamps the answer with the
server's clock so that the console counts down from the server's time.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from dispatcher.alerting import escalation_view as ev
from dispatcher.alerting.escalation_state import EscalationState
from dispatcher.web.api.alerts import visible_alert
from dispatcher.web.api.deps import Ctx, StaffUser, UserAccess
from dispatcher.web.api.schemas import EscalationPublic

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


@router.get(
    "/{alert_id}/escalation",
    response_model=EscalationPublic,
    responses={404: {"description": "No such alert, or not in your scope"}},
)
async def get_escalation(alert_id: str, staff: StaffUser, ctx: Ctx, access: UserAccess) -> EscalationPublic:
    """Tiers of the plan, each contact's deliveries, who acknowledged and how, when the next tier goes.

    Operators and admins only: what the escalation does after a duress is never the practitioner's to see.
    """
    record = await visible_alert(ctx, access, alert_id)
    now = datetime.now(UTC)
    if not record.escalation:  # not started yet (its first transition is being written)
        return EscalationPublic(
            alert_id=record.id, state=record.state, now=now, tier=0, round=0, repeats=0, running=False,
            exhausted=False, renotifying=False, acked_by=None, acked_via=None, taken_over_by=None,
            tiers=[], next=None,
        )  # fmt: skip
    state = EscalationState.from_json(record.escalation)
    sent = [
        ev.Sent(
            n.contact_id, n.contact_name, n.phone, n.channel, n.purpose, n.tier, n.round, n.status, n.error
        )
        for n in await ctx.store.notifications_for(record.id)
    ]
    timers = [
        ev.Timer(t.due_at.timestamp(), int(t.payload.get("tier", -1)), int(t.payload.get("round", -1)))
        for t in await ctx.store.alert_timers(record.id)
        if t.kind == "ack_timeout"
    ]
    view: dict[str, Any] = dataclasses.asdict(ev.build(state, sent, timers))
    return EscalationPublic.model_validate({**view, "alert_id": record.id, "state": record.state, "now": now})
