"""The console's overview map: open alerts and open declared visits of the territory, with their positions.

An alert is placed at the device's latest live position when it sends one
(:meth:`Store.latest_alert_positions`, all in one read), else at the location resolved when it
arrived; a visit at its declared address.

Reading positions is audited like an alert's detail: one ``alert.location.read``
entry (``via: overview``, the alerts shown) and one ``visit.read`` per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from fastapi import APIRouter

from dispatcher import audit
from dispatcher.domain import GeoPoint, LocationSource
from dispatcher.live_alerts import LiveAlerts
from dispatcher.store.base import AlertHead, AlertQuery, AlertRecord, PositionFix
from dispatcher.store.rows import ROWS_PER_TURN
from dispatcher.visits import timer as vt
from dispatcher.visits.runner import UNFINISHED
from dispatcher.web.api import views
from dispatcher.web.api.deps import ClientIp, Ctx, StaffUser, UserAccess
from dispatcher.web.api.schemas import OverviewAlert, OverviewPublic, OverviewVisit

router = APIRouter(prefix="/api/overview", tags=["overview"])


def _names(record: AlertRecord, memory: LiveAlerts) -> dict[str, Any]:
    """Who and what the map labels the alert with: from the summary the console feeds built for
    this very version if there is one (decoding it costs a tenth of building it), else built."""
    held = memory.summary_at(record.id, record.version, False, now=time.monotonic())
    if held is not None:
        built = _decode_summary(held)
        return {k: built.get(k) for k in _NAMES}
    summary = views.summary(record)
    return {k: getattr(summary, k) for k in _NAMES}


_NAMES = ("practitioner_name", "site_name", "needs_attention")
_decode_summary = msgspec.json.Decoder(dict[str, Any]).decode


def _alert(record: AlertRecord, live: PositionFix | None, memory: LiveAlerts) -> OverviewAlert | None:
    """Where she is: the device's latest live fix if newer than the alert's location, else that location."""
    location: dict[str, Any] = (record.context or {}).get("location") or {}
    age = location.get("fix_age_s")
    located_at = record.received_at - timedelta(seconds=float(age or 0))
    common = {"id": record.id, "kind": record.kind, "state": record.state, **_names(record, memory)}
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

    The store is asked which version of each open alert it holds; the record
    is taken from this process's memory when it holds that version, and only
    the others are read, a page at a time; their positions come in one read.
    In a surge, 500 records read, decoded and summarised on the loop, and their
    positions read one by one, took a quarter of the dispatcher's CPU at one
    read every 2 s and held the alerts arriving meanwhile (docs/performance.md,
    "The overview map in a surge").
    """
    query = access.alert_query(AlertQuery(states=tuple(views.OPEN_STATES), limit=500))
    heads = await ctx.store.alert_heads(query)
    live = await ctx.store.latest_alert_positions([h.id for h in heads])
    memory = ctx.bus.alerts
    shown: list[OverviewAlert] = []
    unplaced = 0
    async for record in _records(ctx, heads):
        if not access.sees_alert(record):
            continue
        placed = _alert(record, live.get(record.id), memory)
        if placed is None:
            unplaced += 1
        else:
            shown.append(placed)
    return shown, unplaced


async def _records(ctx: Ctx, heads: list[AlertHead]) -> AsyncIterator[AlertRecord]:
    """The records of ``heads``, each at least as recent as its head: from memory, else read."""
    missing: list[str] = []
    for n, head in enumerate(heads, 1):
        record = ctx.bus.alerts.current(head.id, version=head.version, now=time.monotonic())
        if record is None:
            missing.append(head.id)
            continue
        yield record
        if n % ROWS_PER_TURN == 0:
            await asyncio.sleep(0)
    if missing:
        read = AlertQuery(ids=tuple(missing), limit=len(missing))
        async with contextlib.aclosing(ctx.store.alert_pages(read)) as pages:
            async for page in pages:
                for record in page:
                    yield record


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
