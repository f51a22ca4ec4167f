"""Her alerts and her *fiche de signalement* (form, saved and audited, PDF download).

:func:`practitioner_view` is the one place that decides what she may see of
an alert: a duress is shown as a plain cancel until an operator resolved it
(someone may be holding her phone), and an alert raised by a duress answer
to a visit check is not shown at all until then (she "answered OK").
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from dispatcher import audit
from dispatcher.domain import Id
from dispatcher.store.base import AlertQuery, AlertRecord, NotFound
from dispatcher.web.api import views
from dispatcher.web.api.deps import ClientIp, Ctx, CurrentUser, not_found, require
from dispatcher.web.api.views import contact_name
from dispatcher.web.auth import Role, User
from dispatcher.web.practitioner.pdf import ReportFacts, report_pdf
from dispatcher.web.practitioner.schemas import MyAlert, ReportForm, ReportView
from dispatcher.web.practitioner.visits import practitioner_of
from dispatcher.web.report import _PLACE, place_type

router = APIRouter(
    prefix="/api/me/alerts", tags=["practitioner"], dependencies=[Depends(require(Role.PRACTITIONER))]
)
REPORT_SAVE = "alert.report.save"
CLOSED = frozenset({"resolved", "false_alarm", "cancelled"})
OUTCOME_FR = {
    "resolved": "clôturée",
    "false_alarm": "fausse alerte",
    "cancelled": "annulée",
    "acknowledged": "prise en charge",
    "notifying": "en cours",
    "received": "reçue",
}


def practitioner_view(record: AlertRecord, times: dict[str, Any] | None = None) -> MyAlert | None:
    """Her alert as she may see it, or None when it must not appear (yet).

    The duress rules are the messages engineer's (:mod:`dispatcher.web.api.views`):
    a duress reads as the cancel it pretends to be until an operator resolved
    it, and an alert raised by a duress answer to a visit check is not shown.
    """
    if views.hidden_from_practitioner(record):
        return None
    covered = views.hides_duress(record)
    record = views.practitioner_record(record)
    esc, ctx = record.escalation or {}, record.context or {}
    times = times or {}
    acked_at, received_at = times.get("Acknowledged"), times.get("received")
    ack_s = (acked_at - received_at).total_seconds() if acked_at and received_at and not covered else None
    location = ctx.get("location") or {}
    address = location.get("address") or {}
    return MyAlert(
        id=record.id,
        received_at=record.received_at,
        state=record.state,
        reason=ctx.get("reason"),
        place=address.get("label") or location.get("description"),
        acknowledged_by=contact_name(record, esc.get("acked_by")),
        time_to_ack_s=ack_s,
        report_available=not covered and record.state in CLOSED,
        report_saved=False,
    )


async def _own_alert(ctx: Ctx, user: User, alert_id: str) -> tuple[AlertRecord, MyAlert]:
    """Her alert, seen through :func:`practitioner_view`; 404 otherwise."""
    try:
        record = await ctx.store.get_alert(alert_id)
    except NotFound:
        raise not_found("alerte") from None
    practitioner = (record.context or {}).get("practitioner") or {}
    if practitioner.get("id") != practitioner_of(user) or record.kind != "alert":
        raise not_found("alerte")
    times = (await ctx.store.alert_event_times([alert_id])).get(alert_id, {})
    view = practitioner_view(record, times)
    if view is None:
        raise not_found("alerte")
    return record, view


@router.get("", response_model=list[MyAlert])
async def my_alerts(
    user: CurrentUser, ctx: Ctx, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[MyAlert]:
    """Her alerts, most recent first (tests are on her devices' page)."""
    query = AlertQuery(kinds=("alert",), practitioner_id=practitioner_of(user), limit=limit)
    records = await ctx.store.search_alerts(query)
    times = await ctx.store.alert_event_times([r.id for r in records])
    out = []
    for record in records:
        view = practitioner_view(record, times.get(record.id))
        if view is not None:
            saved = view.report_available and await ctx.store.get_incident_report(record.id) is not None
            out.append(view.model_copy(update={"report_saved": saved}))
    return out


async def _reportable(ctx: Ctx, user: User, alert_id: str) -> tuple[AlertRecord, MyAlert]:
    record, view = await _own_alert(ctx, user, alert_id)
    if not view.report_available:
        raise not_found("fiche")
    return record, view


@router.get("/{alert_id}/report", response_model=ReportView)
async def get_report(alert_id: Id, user: CurrentUser, ctx: Ctx) -> ReportView:
    """The fiche as last saved (an empty form before the first save)."""
    await _reportable(ctx, user, alert_id)
    saved = await ctx.store.get_incident_report(alert_id)
    if saved is None:
        return ReportView(alert_id=alert_id, form=ReportForm(), saved_at=None)
    return ReportView(alert_id=alert_id, form=ReportForm.model_validate(saved.doc), saved_at=saved.updated_at)


@router.put("/{alert_id}/report", response_model=ReportView)
async def save_report(
    alert_id: Id, body: ReportForm, user: CurrentUser, ctx: Ctx, ip: ClientIp
) -> ReportView:
    """Save the fiche (audited; the text itself is not copied into the audit log)."""
    await _reportable(ctx, user, alert_id)
    await ctx.store.save_incident_report(
        alert_id, body.model_dump(mode="json"), user_id=user.id, author=user.display_name
    )
    await ctx.audit.record(user, REPORT_SAVE, target_kind="alert", target_id=alert_id, ip=ip)
    return await get_report(alert_id, user, ctx)


def _facts(record: AlertRecord, view: MyAlert) -> ReportFacts:
    ctx, esc = record.context or {}, record.escalation or {}
    practitioner = ctx.get("practitioner") or {}
    location = ctx.get("location") or {}
    site = ctx.get("site") or {}
    units: list[str] = []
    plan = esc.get("plan") or {}
    notified = set(esc.get("notified") or [])
    for tier in plan.get("tiers", []):
        for r in tier.get("recipients", []):
            name = r.get("unit_name") or r.get("name")
            if r.get("contact_id") in notified and name and name not in units:
                units.append(name)
    return ReportFacts(
        alert_id=record.id,
        practitioner=f"Dr {practitioner.get('first_name', '')} {practitioner.get('last_name', '')}".strip(),
        profession=practitioner.get("profession", ""),
        rpps=practitioner.get("rpps", ""),
        received_at=record.received_at,
        place=view.place or "inconnu",
        place_kind=_PLACE.get(place_type(location.get("source"), site.get("kind")), "Inconnu"),
        convention=ctx.get("convention_name"),
        units_alerted=tuple(units),
        acknowledged_by=view.acknowledged_by,
        time_to_ack_s=view.time_to_ack_s,
        outcome=OUTCOME_FR.get(view.state, view.state) + (f" ({view.reason})" if view.reason else ""),
    )


@router.get("/{alert_id}/report.pdf")
async def report_as_pdf(alert_id: Id, user: CurrentUser, ctx: Ctx, ip: ClientIp) -> Response:
    """The fiche as a PDF: no contact's number, no technical event; with the time to acknowledge."""
    record, view = await _reportable(ctx, user, alert_id)
    saved = await ctx.store.get_incident_report(alert_id)
    form = ReportForm.model_validate(saved.doc) if saved else ReportForm()
    pdf = report_pdf(_facts(record, view), form)
    await ctx.audit.record(
        user, audit.ALERT_REPORT, target_kind="alert", target_id=alert_id, ip=ip, format="pdf"
    )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="fiche-signalement-{alert_id}.pdf"'},
    )
