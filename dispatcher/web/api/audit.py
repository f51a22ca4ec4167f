"""The audit log, read-only, for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from dispatcher.web.api.deps import AdminUser, Ctx
from dispatcher.web.api.schemas import AuditEntryPublic

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("", response_model=list[AuditEntryPublic])
async def list_audit(
    _: AdminUser,
    ctx: Ctx,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target_kind: Annotated[str | None, Query(max_length=32)] = None,
    target_id: Annotated[str | None, Query(max_length=100)] = None,
    user_id: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    before_id: Annotated[int | None, Query(ge=0, le=2**62, description="page: ids below this")] = None,
    since: Annotated[datetime | None, Query(description="from this instant (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="up to this instant (exclusive)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntryPublic]:
    """Newest first; there is deliberately no way to change or delete an entry."""
    entries = await ctx.store.list_audit(
        action=action,
        target_kind=target_kind,
        target_id=target_id,
        user_id=user_id,
        before_id=before_id,
        since=since,
        until=until,
        limit=limit,
    )
    return [AuditEntryPublic.model_validate(e, from_attributes=True) for e in entries]
