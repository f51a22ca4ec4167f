"""The console's overview map: open alerts and open declared visits of the territory, with their positions.

An alert is placed at the device's latest live position when it sends one
(:meth:`Store.latest_alert_positions`, all in one read), else at the location resolved when it
arrived; a visit at its declared address.

Reading positions is audited like an alert's detail: one ``alert.location.read``
entry (``via: overview``, the alerts shown) and one ``visit.read`` per request.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter

from dispatcher import audit
from dispatcher.domain import GeoPoint, LocationSource
from dispatcher.store.base import AlertQuery, AlertRecord, PositionFix
from dispatcher.visits import timer as vt
from dispatcher.visits.runner import UNFINISHED
from dispatcher.web.api import views
from dispatcher.web.api.deps import ClientIp, Ctx, StaffUser, UserAccess
from dispatcher.web.api.schemas import OverviewAlert, OverviewPublic, OverviewVisit

router = APIRouter(prefix="/api/overview", tags=["overview"])


def _alert(record: AlertRecord, live: PositionFix | None) -> OverviewAlert | None:
    """Where she is: the device's latest live fix if newer than the alert's location, else that location."""
    location: dict[str, Any] = (record.context or {}).get("location") or {}
    age = location.get("fix_age_s")
    located_at = record.received_at - timedelta(seconds=float(age or 0))
    summary = views.summary(record)
    common = {
        "id": record.id,
        "kind": record.kind,
        "state": record.state,
        "practitioner_name": summary.practitioner_name,
        "site_name": summary.site_name,
        "needs_attention": summary.needs_attention,
    }
    if live is not None and (not location.get("point") or live.at > located_at):
        return OverviewAlert(
            **common,
            source=LocationSource.GPS,
            description="position en direct de la balise",
            point=GeoPoint(lat=live.lat, lon=live.lon),
            accuracy_m=live.accuracy_m,
            position_at=live.at,
            live=True,
        )
    if not location.get("point"):
        return None
    return OverviewAlert(
        **common,
        source=location["source"],
        description=str(location.get("description") or ""),
        point=location["point"],
        accuracy_m=location.get("accuracy_m"),
        position_at=located_at,
    )


async def _alerts(ctx: Ctx, access: UserAccess) -> tuple[list[OverviewAlert], int]:
    """The open alerts in scope, placed; and how many could not be.

    Read a page at a time, each record let go once placed (as a console's
    snapshot), and their positions in one read: in a surge, 500 records held
    at once and 500 position reads one after the other held the alerts
    arriving meanwhile (docs/performance.md, "The overview map in a surge").
    Positions are read first, for the alerts open then; one opened since is
    placed where it was located on arrival.
    """
    query = access.alert_query(AlertQuery(states=tuple(views.OPEN_STATES), limit=500))
    live = await ctx.store.latest_alert_positions([h.id for h in await ctx.store.alert_heads(query)])
    shown: list[OverviewAlert] = []
    unplaced = 0
    async with contextlib.aclosing(ctx.store.alert_pages(query)) as pages:
        async for page in pages:
            for record in page:
                if not access.sees_alert(record):
                    continue
                placed = _alert(record, live.get(record.id))
                if placed is None:
                    unplaced += 1
                else:
                    shown.append(placed)
    return shown, unplaced


async def _visits(ctx: Ctx, access: UserAccess, now: float) -> tuple[list[OverviewVisit], int]:
    visits = {v.id: v for v in await ctx.store.list_visits()}
    shown, unplaced = [], 0
    for record in await ctx.store.list_visit_timers(phases=UNFINISHED, limit=500):
        visit = visits.get(record.visit_id)
        if visit is None or not (
            access.is_admin
            or access.address_convention(visit.address, LocationSource.HOME_VISIT) in access.convention_ids
        ):
            continue
        if visit.address.point is None:
            unplaced += 1
            continue
        state = vt.VisitTimerState.from_json(record.state)
        practitioner = access.snapshot.practitioners.get(record.practitioner_id)
        shown.append(
            OverviewVisit(
                id=visit.id,
                practitioner_name=practitioner.display_name if practitioner else record.practitioner_id,
                label=visit.address.label,
                point=visit.address.point,
                position_at=datetime.fromtimestamp(state.started_at, UTC),
                ends_at=datetime.fromtimestamp(state.ends_at, UTC),
                overdue=state.overdue(now),
                phase=state.phase,
            )
        )
    return shown, unplaced


@router.get("", response_model=OverviewPublic)
async def overview(staff: StaffUser, access: UserAccess, ctx: Ctx, ip: ClientIp) -> OverviewPublic:
    """Open alerts and open visits with a position, in the user's territory (all for an admin)."""
    now = time.time()
    alerts, alerts_unplaced = await _alerts(ctx, access)
    visits, visits_unplaced = await _visits(ctx, access, now)
    await ctx.audit.record(
        staff,
        audit.ALERT_LOCATION_READ,
        target_kind="alert",
        ip=ip,
        via="overview",
        alerts=[a.id for a in alerts],
    )
    await ctx.audit.record(
        staff, audit.VISIT_READ, target_kind="visit", ip=ip, via="overview", count=len(visits)
    )
    return OverviewPublic(
        now=datetime.fromtimestamp(now, UTC),
        alerts=alerts,
        visits=visits,
        without_position=alerts_unplaced + visits_unplaced,
    )
