"""Operator events: alarms and device health changes, and the handling of an alarm that stays
on the consoles until an operator takes it in hand (a home visit's, when no alert could be raised).

Who sees an event: the users who see its alert, or its device; for an event scoped to
conventions (``scope``), their operators; for one about the whole system (a provider
down, no instance taking alerts: it names its ``topic``), every operator. Never a practitioner.
An event about none of these was written before migration 18, when a home visit's alarm had no
scope yet: it may name a practitioner of any territory, so only admins read it.
"""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from dispatcher import audit
from dispatcher.alerting import texts
from dispatcher.store.base import NotFound
from dispatcher.web.api.access import Access
from dispatcher.web.api.deps import ClientIp, Ctx, StaffUser, UserAccess, not_found
from dispatcher.web.api.schemas import OperatorEventPublic

router = APIRouter(prefix="/api/operator-events", tags=["operator events"])

#: The largest event id both stores can hold (a signed 64-bit integer).
MAX_EVENT_ID = 2**63 - 1
#: Event kind published on the bus when an alarm was handled (the consoles drop its banner).
HANDLED_EVENT = "operator_alarm_handled"


@router.get("", response_model=list[OperatorEventPublic])
async def operator_events(
    _: StaffUser, access: UserAccess, ctx: Ctx, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[OperatorEventPublic]:
    """Operator alarms and device health changes, newest first, within the user's scope."""
    return [public(e) for e in await ctx.store.operator_events(limit) if await visible(access, ctx, e)]


@router.post("/{event_id}/handled", response_model=OperatorEventPublic)
async def handle_alarm(
    event_id: Annotated[int, Path(ge=1, le=MAX_EVENT_ID)],
    staff: StaffUser,
    access: UserAccess,
    ctx: Ctx,
    ip: ClientIp,
) -> OperatorEventPublic:
    """Take an alarm that must be acted on in hand: off every console, and in the audit trail.

    404 for an event out of the user's scope as for an unknown one; 409 when it
    is not such an alarm, or when another operator took it first (it says who).
    """
    event = await ctx.store.operator_event(event_id)
    if event is None or not await visible(access, ctx, event):
        raise not_found("événement")
    if event.get("scope") is None:
        raise HTTPException(HTTPStatus.CONFLICT, detail=texts.EVENT_NOT_TO_HANDLE)
    if not await ctx.store.handle_operator_event(event_id, staff.username):
        taken = await ctx.store.operator_event(event_id)
        raise HTTPException(
            HTTPStatus.CONFLICT, detail=texts.alarm_already_handled((taken or event)["handled_by"])
        )
    await ctx.audit.record(
        staff, audit.OPERATOR_ALARM_HANDLED, target_kind="operator_event", target_id=str(event_id), ip=ip
    )
    ctx.bus.publish(HANDLED_EVENT, event_id=event_id, scope=event["scope"], by=staff.display_name)
    return public({**event, "handled_by": staff.username})


def public(event: dict[str, Any]) -> OperatorEventPublic:
    return OperatorEventPublic(
        id=event["id"],
        at=datetime.fromisoformat(event["at"]),
        kind=event["kind"],
        alert_id=event.get("alert_id"),
        device_id=event.get("device_id"),
        message=event["message"],
        must_act=event.get("scope") is not None,
        handled_by=event.get("handled_by"),
    )


async def visible(access: Access, ctx: Ctx, event: dict[str, Any]) -> bool:
    """Whether the user may read ``event`` (module docstring)."""
    alert_id, device_id, scope = event.get("alert_id"), event.get("device_id"), event.get("scope")
    if access.is_admin:
        return True
    if alert_id:
        try:
            return access.sees_alert(await ctx.store.get_alert(alert_id))
        except NotFound:
            return False
    if device_id:
        device = access.snapshot.devices.get(device_id)
        return device is not None and access.sees_device(device)
    if scope is not None:
        return access.sees_scope(scope)
    return event.get("topic") is not None  # the whole system's: every operator's (staff only reach here)
