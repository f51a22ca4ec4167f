"""SSJ conventions and their contacts: admins write; operators read their own."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import APIRouter, HTTPException

from dispatcher import audit
from dispatcher.domain import Convention, Id
from dispatcher.web.api.deps import AdminUser, ClientIp, Ctx, StaffUser, UserAccess, not_found
from dispatcher.web.api.entry_yaml import add_yaml_routes

router = APIRouter(prefix="/api/conventions", tags=["conventions"])


@router.get("", response_model=list[Convention])
async def list_conventions(_: StaffUser, access: UserAccess) -> list[Convention]:
    return [c for c in access.snapshot.conventions if access.sees_convention(c.id)]


@router.get("/{convention_id}", response_model=Convention)
async def get_convention(convention_id: Id, _: StaffUser, access: UserAccess) -> Convention:
    for c in access.snapshot.conventions:
        if c.id == convention_id and access.sees_convention(c.id):
            return c
    raise not_found("convention")


@router.put("/{convention_id}", response_model=Convention)
async def put_convention(
    convention_id: Id, body: Convention, admin: AdminUser, ctx: Ctx, ip: ClientIp
) -> Convention:
    """Create or replace a convention (units, contacts, escalation chain)."""
    if body.id != convention_id:
        raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail="l'id du corps diffère de l'URL")
    existed = any(c.id == convention_id for c in ctx.cache.current.conventions)
    await ctx.store.upsert_convention(body)
    await ctx.cache.refresh()
    await ctx.audit.record(
        admin,
        audit.CONFIG_CHANGE,
        target_kind="convention",
        target_id=convention_id,
        ip=ip,
        change="update" if existed else "create",
    )
    return body


add_yaml_routes(
    router,
    "convention",
    "convention",
    lambda snapshot, cid: next((c for c in snapshot.conventions if c.id == cid), None),
    lambda ctx, entry: ctx.store.upsert_convention(entry),
)
