"""Anonymised statistics export (CSV or JSON) for a territory."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from dispatcher import audit
from dispatcher.api.deps import ClientIp, Ctx, StaffUser, UserAccess
from dispatcher.api.schemas import StatsRow
from dispatcher.report import statistics, statistics_csv, suppress_small_counts
from dispatcher.store.base import AlertQuery

router = APIRouter(prefix="/api/stats", tags=["stats"])


@router.get(
    "",
    response_model=list[StatsRow],
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"}},
)
async def export_statistics(
    _: StaffUser,
    access: UserAccess,
    ctx: Ctx,
    ip: ClientIp,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    convention_id: Annotated[str | None, Query(max_length=64)] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    kind: Annotated[
        Literal["alert", "drill"], Query(description="real alerts, or the drills counted apart")
    ] = "alert",
) -> list[StatsRow] | Response:
    """Counts per convention, month and type of place, with acknowledgement times; no names, no addresses.

    Counts under ``VIGIE_API__STATS_MIN_COUNT`` are shown as ``"<N"`` (small-count suppression).
    """
    query = access.alert_query(
        AlertQuery(kinds=(kind,), since=since, until=until, limit=100_000), convention_id
    )
    records = [r for r in await ctx.store.search_alerts(query) if access.sees_alert(r)]
    times = await ctx.store.alert_event_times([r.id for r in records])
    rows = suppress_small_counts(
        statistics(records, times, access.snapshot.conventions), ctx.settings.api.stats_min_count
    )
    await ctx.audit.record(access.user, audit.STATS_EXPORT, ip=ip, format=format, rows=len(rows))
    if format == "csv":
        return Response(
            statistics_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="vigie-statistiques.csv"'},
        )
    return rows
