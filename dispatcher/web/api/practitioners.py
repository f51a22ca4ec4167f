"""Practitioners: admins write; operators read those of their territory; a practitioner reads herself."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Response, status

from dispatcher import audit
from dispatcher.directory.loader import hash_pin
from dispatcher.directory.snapshot import Listed
from dispatcher.domain import Id, Practitioner
from dispatcher.store.base import NotFound
from dispatcher.web.api.deps import AdminUser, ClientIp, Ctx, UserAccess, not_found
from dispatcher.web.api.entry_yaml import add_yaml_routes
from dispatcher.web.api.listing import PAGE, Limit, Search, listed, page
from dispatcher.web.api.schemas import PractitionerCreate, PractitionerPublic, PractitionerWrite

router = APIRouter(prefix="/api/practitioners", tags=["practitioners"])


async def _to_domain(pid: str, body: PractitionerWrite, current: Practitioner | None) -> Practitioner:
    data = body.model_dump(exclude={"cancel_pin", "duress_pin"})
    data["cancel_pin_hash"] = current.cancel_pin_hash if current else None
    data["duress_pin_hash"] = current.duress_pin_hash if current else None
    if body.cancel_pin is not None:
        data["cancel_pin_hash"] = await asyncio.to_thread(hash_pin, body.cancel_pin)
    if body.duress_pin is not None:
        data["duress_pin_hash"] = await asyncio.to_thread(hash_pin, body.duress_pin)
    return Practitioner.model_validate({"id": pid, **data})


@router.get("", response_model=list[PractitionerPublic])
async def list_practitioners(
    access: UserAccess, response: Response, q: Search = None, limit: Limit = PAGE
) -> list[PractitionerPublic]:
    """The visible practitioners by id; with ``q``, those whose names, id or RPPS hold its words;
    ``limit`` at most, how many in all in ``X-Total-Count`` (:mod:`dispatcher.web.api.listing`)."""
    rows: Listed[Practitioner] = await listed(access.snapshot, "practitioners_listed")
    found = await page(rows, lambda p: access.sees_practitioner(p.id), q=q, limit=limit, response=response)
    return [PractitionerPublic.of(p) for p in found]


@router.get("/{practitioner_id}", response_model=PractitionerPublic)
async def get_practitioner(practitioner_id: Id, access: UserAccess, ctx: Ctx) -> PractitionerPublic:
    if not access.sees_practitioner(practitioner_id):
        raise not_found("praticien")
    try:
        return PractitionerPublic.of(await ctx.store.get_practitioner(practitioner_id))
    except NotFound:
        raise not_found("praticien") from None


@router.post("", response_model=PractitionerPublic, status_code=status.HTTP_201_CREATED)
async def create_practitioner(
    body: PractitionerCreate, admin: AdminUser, ctx: Ctx, ip: ClientIp
) -> PractitionerPublic:
    if body.id in ctx.cache.current.practitioners:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="ce praticien existe déjà")
    practitioner = await _to_domain(body.id, body, None)
    await ctx.store.upsert_practitioner(practitioner)
    await ctx.cache.refresh()
    await ctx.audit.record(
        admin, audit.CONFIG_CHANGE, target_kind="practitioner", target_id=body.id, ip=ip, change="create"
    )
    return PractitionerPublic.of(practitioner)


@router.put("/{practitioner_id}", response_model=PractitionerPublic)
async def update_practitioner(
    practitioner_id: Id, body: PractitionerWrite, admin: AdminUser, ctx: Ctx, ip: ClientIp
) -> PractitionerPublic:
    """Replace a practitioner; omitted PINs keep their current hashes."""
    try:
        current = await ctx.store.get_practitioner(practitioner_id)
    except NotFound:
        raise not_found("praticien") from None
    practitioner = await _to_domain(practitioner_id, body, current)
    await ctx.store.upsert_practitioner(practitioner)
    await ctx.cache.refresh()
    await ctx.audit.record(
        admin,
        audit.CONFIG_CHANGE,
        target_kind="practitioner",
        target_id=practitioner_id,
        ip=ip,
        change="update",
        pins_changed=bool(body.cancel_pin or body.duress_pin),
    )
    return PractitionerPublic.of(practitioner)


add_yaml_routes(
    router,
    "practitioner",
    "praticien",
    lambda snapshot, pid: snapshot.practitioners.get(pid),
    lambda ctx, entry: ctx.store.upsert_practitioner(entry),
)
