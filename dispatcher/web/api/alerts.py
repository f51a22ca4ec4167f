"""Alerts: list, detail with the full timeline, actions, notes and the incident report."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import HTMLResponse

from dispatcher import audit
from dispatcher.alerting import escalation as esc
from dispatcher.domain import AlertKind, AlertState
from dispatcher.store.base import AlertQuery, AlertRecord, NotFound
from dispatcher.web.api import alert_filters as filters
from dispatcher.web.api import views
from dispatcher.web.api.deps import ClientIp, Ctx, CurrentUser, StaffUser, UserAccess, not_found
from dispatcher.web.api.listing import listed
from dispatcher.web.api.schemas import AlertDetail, AlertSummary, NoteCreate, NotePublic, TimelineEntry
from dispatcher.web.auth import Role, User
from dispatcher.web.report import REPORT_CSP, REPORTABLE_STATES, fiche_html

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

_404: dict[int | str, dict[str, Any]] = {404: {"description": "No such alert, or not in your scope"}}
_409: dict[int | str, dict[str, Any]] = {
    409: {"description": "The alert is already in a state where this action changes nothing"}
}


async def visible_alert(ctx: Ctx, access: UserAccess, alert_id: str) -> AlertRecord:
    """The alert if it exists and the user may see it; the same 404 otherwise."""
    try:
        record = await ctx.store.get_alert(alert_id)
    except NotFound:
        raise not_found("alerte") from None
    if not access.sees_alert(record) or (_hers(access.user) and views.hidden_from_practitioner(record)):
        raise not_found("alerte")
    return record


@router.get("", response_model=list[AlertSummary], responses={422: {"description": "Invalid filter"}})
async def list_alerts(
    ctx: Ctx,
    access: UserAccess,
    state: Annotated[
        list[AlertState] | None, Query(description="received, notifying, acknowledged, ...")
    ] = None,
    kind: Annotated[list[AlertKind] | None, Query(description="alert, test or drill")] = None,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    date_from: Annotated[date | None, Query(description="First day, Europe/Paris")] = None,
    date_to: Annotated[date | None, Query(description="Last day (included), Europe/Paris")] = None,
    practitioner: Annotated[
        str | None, Query(min_length=2, max_length=100, description="Words of her name, accents ignored")
    ] = None,
    practitioner_id: Annotated[str | None, Query(max_length=64)] = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    convention_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertSummary]:
    """Most recent first, within the user's scope; every given filter must hold."""
    if date_from and date_to and date_to < date_from:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"type": "value_error", "loc": ["query", "date_to"], "msg": "date_to avant date_from"}],
        )
    first_day, after_last_day = filters.paris_day_bounds(date_from, date_to)
    named = (
        filters.practitioners_named(await listed(access.snapshot, "practitioners_listed"), practitioner)
        if practitioner
        else None
    )
    query = AlertQuery(
        states=tuple(s.value for s in state or ()),
        kinds=tuple(k.value for k in kind or ()),
        practitioner_id=practitioner_id,
        practitioner_ids=named,
        device_id=device_id,
        since=filters.later(since, first_day),
        until=filters.earlier(until, after_last_day),
        limit=limit,
    )
    records = await ctx.store.search_alerts(access.alert_query(query, convention_id))
    mine = _hers(access.user)
    shown = [r for r in records if access.sees_alert(r) and not (mine and views.hidden_from_practitioner(r))]
    return [views.summary(r, as_practitioner=mine) for r in shown]


@router.get("/{alert_id}", response_model=AlertDetail, responses=_404)
async def get_alert(alert_id: str, ctx: Ctx, access: UserAccess, ip: ClientIp) -> AlertDetail:
    """Practitioner, location, escalation timeline, notifications and notes (the read is audited)."""
    record = await visible_alert(ctx, access, alert_id)
    await ctx.audit.record(
        access.user, audit.ALERT_LOCATION_READ, target_kind="alert", target_id=alert_id, ip=ip
    )
    return await views.detail(ctx.store, record, as_practitioner=_hers(access.user))


@router.get("/{alert_id}/timeline", response_model=list[TimelineEntry], responses=_404)
async def get_timeline(alert_id: str, ctx: Ctx, access: UserAccess, ip: ClientIp) -> list[TimelineEntry]:
    """Events, notifications and their delivery, notes — in time order."""
    record = await visible_alert(ctx, access, alert_id)
    await ctx.audit.record(
        access.user, audit.ALERT_LOCATION_READ, target_kind="alert", target_id=alert_id, ip=ip, via="timeline"
    )
    return (await views.detail(ctx.store, record, as_practitioner=_hers(access.user))).timeline


async def _act(
    ctx: Ctx, access: UserAccess, user: User, ip: str, alert_id: str, event: esc.Event, action: str
) -> AlertSummary:
    await visible_alert(ctx, access, alert_id)
    changed = await ctx.engine.handle(
        alert_id, event, {"by": _by(user), "user_id": user.id, "via": "console"}
    )
    if not changed:
        state = (await ctx.store.get_alert(alert_id)).state
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"sans effet : l'alerte est « {state} »")
    await ctx.audit.record(user, action, target_kind="alert", target_id=alert_id, ip=ip)
    # The engine pushes to consoles only for some transitions; every console must see this one.
    ctx.bus.publish("alert", alert_id=alert_id)
    return views.summary(await ctx.store.get_alert(alert_id))


def _hers(user: User) -> bool:
    """A practitioner sees her alerts through :func:`views.practitioner_record` (duress = cancel)."""
    return user.role is Role.PRACTITIONER


def _by(user: User) -> str:
    return f"{user.display_name} (opérateur Vigie)"


@router.post("/{alert_id}/acknowledge", response_model=AlertSummary, responses={**_404, **_409})
async def acknowledge(
    alert_id: str, user: StaffUser, ctx: Ctx, access: UserAccess, ip: ClientIp
) -> AlertSummary:
    """Someone takes the alert: escalation stops, the device feels 'acknowledged'."""
    event = esc.Acknowledged(by=_by(user), via="console")
    return await _act(ctx, access, user, ip, alert_id, event, audit.ALERT_ACKNOWLEDGE)


@router.post("/{alert_id}/take-over", response_model=AlertSummary, responses={**_404, **_409})
async def take_over(
    alert_id: str, user: StaffUser, ctx: Ctx, access: UserAccess, ip: ClientIp
) -> AlertSummary:
    """Handle by hand (e.g. calling the police directly): automatic escalation stops."""
    event = esc.OperatorTookOver(by=_by(user))
    return await _act(ctx, access, user, ip, alert_id, event, audit.ALERT_TAKE_OVER)


@router.post("/{alert_id}/resolve", response_model=AlertSummary, responses={**_404, **_409})
async def resolve(alert_id: str, user: StaffUser, ctx: Ctx, access: UserAccess, ip: ClientIp) -> AlertSummary:
    """The incident is over."""
    event = esc.Resolved(by=_by(user))
    return await _act(ctx, access, user, ip, alert_id, event, audit.ALERT_RESOLVE)


@router.post("/{alert_id}/false-alarm", response_model=AlertSummary, responses={**_404, **_409})
async def false_alarm(
    alert_id: str, user: StaffUser, ctx: Ctx, access: UserAccess, ip: ClientIp
) -> AlertSummary:
    """Not a real alert: those already notified are told."""
    event = esc.MarkedFalseAlarm(by=_by(user))
    return await _act(ctx, access, user, ip, alert_id, event, audit.ALERT_FALSE_ALARM)


@router.post(
    "/{alert_id}/notes", response_model=NotePublic, status_code=status.HTTP_201_CREATED, responses=_404
)
async def add_note(
    alert_id: str, body: NoteCreate, user: CurrentUser, ctx: Ctx, access: UserAccess, ip: ClientIp
) -> NotePublic:
    """Add a note to the alert's timeline (operators, and the practitioner on her own alerts)."""
    await visible_alert(ctx, access, alert_id)
    note = await ctx.store.add_note(alert_id, user_id=user.id, author=user.display_name, text=body.text)
    await ctx.audit.record(user, audit.ALERT_NOTE, target_kind="alert", target_id=alert_id, ip=ip)
    ctx.bus.publish("alert", alert_id=alert_id)
    return NotePublic(id=note.id, at=note.at, author=note.author, text=note.text)


@router.get(
    "/{alert_id}/report",
    response_class=HTMLResponse,
    responses={**_404, 409: {"description": "The alert is not closed yet"}},
)
async def report(alert_id: str, ctx: Ctx, access: UserAccess, ip: ClientIp) -> HTMLResponse:
    """Printable pre-filled *fiche de signalement* (Ordre / ONVS) for a closed alert."""
    record = await visible_alert(ctx, access, alert_id)
    if record.state not in REPORTABLE_STATES:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="fiche disponible une fois l'alerte clôturée")
    await ctx.audit.record(access.user, audit.ALERT_REPORT, target_kind="alert", target_id=alert_id, ip=ip)
    headers = {"Content-Security-Policy": REPORT_CSP, "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
    return HTMLResponse(fiche_html(await views.detail(ctx.store, record)), headers=headers)
