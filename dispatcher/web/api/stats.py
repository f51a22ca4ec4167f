"""Anonymised statistics export (CSV or JSON) for a territory: cells, and totals for the admin charts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from dispatcher import audit
from dispatcher.store.base import AlertQuery
from dispatcher.web.api.access import Access
from dispatcher.web.api.deps import ClientIp, Ctx, StaffUser, UserAccess
from dispatcher.web.api.schemas import StatsRow, StatsTotal
from dispatcher.web.report import statistics, statistics_csv, suppress_small_counts
from dispatcher.web.stats_totals import totals

router = APIRouter(prefix="/api/stats", tags=["stats"])

Since = Annotated[datetime | None, Query()]
Until = Annotated[datetime | None, Query()]
ConventionId = Annotated[str | None, Query(max_length=64)]
Format = Annotated[Literal["json", "csv"], Query()]
Kind = Annotated[Literal["alert", "drill"], Query(description="real alerts, or the drills counted apart")]
_CSV_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"}
}
_BY_FR = {"month": "mois", "convention": "convention"}


@router.get("", response_model=list[StatsRow], responses=_CSV_DOC)
async def export_statistics(
    _: StaffUser,
    access: UserAccess,
    ctx: Ctx,
    ip: ClientIp,
    since: Since = None,
    until: Until = None,
    convention_id: ConventionId = None,
    format: Format = "json",
    kind: Kind = "alert",
) -> list[StatsRow] | Response:
    """Counts per convention, month and type of place, with acknowledgement times; no names, no addresses.

    Counts under ``VIGIE_API__STATS_MIN_COUNT`` are shown as ``"<N"`` (small-count suppression).
    """
    raw = await _cells(access, ctx, since, until, convention_id, kind)
    rows = suppress_small_counts(raw, ctx.settings.api.stats_min_count)
    await ctx.audit.record(access.user, audit.STATS_EXPORT, ip=ip, format=format, rows=len(rows))
    if format == "csv":
        return _csv(rows, StatsRow, "vigie-statistiques.csv")
    return rows


@router.get("/totals", response_model=list[StatsTotal], responses=_CSV_DOC)
async def statistics_totals(
    _: StaffUser,
    access: UserAccess,
    ctx: Ctx,
    ip: ClientIp,
    by: Annotated[Literal["month", "convention"], Query()] = "month",
    since: Since = None,
    until: Until = None,
    convention_id: ConventionId = None,
    format: Format = "json",
    kind: Kind = "alert",
) -> list[StatsTotal] | Response:
    """Totals per month or per convention (the admin charts), each suppressed under the threshold.

    A total is summed from the exact cells first: two hidden cells of 3 make a visible 6.
    """
    raw = await _cells(access, ctx, since, until, convention_id, kind)
    out = [
        StatsTotal.model_validate(t, from_attributes=True)
        for t in totals(raw, by, ctx.settings.api.stats_min_count)
    ]
    await ctx.audit.record(access.user, audit.STATS_EXPORT, ip=ip, format=format, by=by, rows=len(out))
    if format == "csv":
        return _csv(out, StatsTotal, f"vigie-statistiques-par-{_BY_FR[by]}.csv")
    return out


async def _cells(
    access: Access,
    ctx: Ctx,
    since: datetime | None,
    until: datetime | None,
    convention_id: str | None,
    kind: str,
) -> list[StatsRow]:
    """The unsuppressed cells of the user's territory (never sent out as such)."""
    query = access.alert_query(
        AlertQuery(kinds=(kind,), since=since, until=until, limit=100_000), convention_id
    )
    facts = [f for f in await ctx.store.alert_facts(query) if access.sees_facts(f)]
    return statistics(facts, access.snapshot.conventions)


def _csv(rows: list[StatsRow] | list[StatsTotal], model: type[BaseModel], filename: str) -> Response:
    return Response(
        statistics_csv(rows, model),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
