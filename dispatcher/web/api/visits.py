"""Home visits (visites à domicile), declared by the practitioner herself.

Operators have no access: a visit's address is read only through the alert
it locates (and that read is audited).
"""

from __future__ import annotations

import secrets
from http import HTTPStatus

from fastapi import APIRouter, Depends, HTTPException, status

from dispatcher import audit
from dispatcher.domain import Address, HomeVisit, Id
from dispatcher.store.base import NotFound
from dispatcher.visits.place import UnroutableVisit, place_visit_address
from dispatcher.web.api.deps import ClientIp, Ctx, CurrentUser, not_found, require
from dispatcher.web.api.schemas import VisitCreate, VisitPublic
from dispatcher.web.auth import Role, User

router = APIRouter(
    prefix="/api/visits",
    tags=["visits"],
    dependencies=[Depends(require(Role.ADMIN, Role.PRACTITIONER))],
)


def _public(v: HomeVisit) -> VisitPublic:
    return VisitPublic(**v.model_dump(), geocoded=v.address.point is not None)


def _owner(user: User, requested: str | None) -> str:
    if user.role is Role.PRACTITIONER:
        if requested not in (None, user.practitioner_id) or not user.practitioner_id:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="uniquement vos propres visites")
        return user.practitioner_id
    if requested is None:
        raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail="practitioner_id requis")
    return requested


async def _place(ctx: Ctx, address: Address) -> tuple[Address, str | None]:
    """Geocoded, else routed by its commune (with a warning); a visit nobody could find is refused (422)."""
    try:
        return await place_visit_address(address, ctx.geocoder, ctx.cache.communes)
    except UnroutableVisit as exc:
        loc = ["body", *exc.field.split(".")]
        detail = [{"loc": loc, "msg": exc.reason, "type": "value_error"}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from None


@router.get("", response_model=list[VisitPublic])
async def list_visits(user: CurrentUser, ctx: Ctx, ip: ClientIp) -> list[VisitPublic]:
    """Own visits for a practitioner, all for an admin (an admin's read is audited: addresses, door codes)."""
    owner = user.practitioner_id if user.role is Role.PRACTITIONER else None
    if user.role is Role.PRACTITIONER and owner is None:
        return []
    visits = await ctx.store.list_visits(owner)
    if user.role is Role.ADMIN:
        await ctx.audit.record(user, audit.VISIT_READ, target_kind="visit", ip=ip, count=len(visits))
    return [_public(v) for v in visits]


@router.post("", response_model=VisitPublic, status_code=status.HTTP_201_CREATED)
async def create_visit(body: VisitCreate, user: CurrentUser, ctx: Ctx, ip: ClientIp) -> VisitPublic:
    """Declare a visit: geocoded, else located by its commune (``geocoded`` false); else 422."""
    practitioner_id = _owner(user, body.practitioner_id)
    if practitioner_id not in ctx.cache.current.practitioners:
        raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail="praticien inconnu")
    address, place_warning = await _place(ctx, body.address.to_address())
    visit = HomeVisit(
        id=f"visit-{secrets.token_hex(6)}",
        practitioner_id=practitioner_id,
        address=address,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        note=body.note,
    )
    await ctx.store.upsert_visit(visit)
    await ctx.cache.refresh()  # an alert during this visit must find it right away
    await ctx.audit.record(
        user,
        audit.VISIT_CHANGE,
        target_kind="visit",
        target_id=visit.id,
        ip=ip,
        change="create",
        practitioner_id=practitioner_id,
    )
    warnings = [w for w in (ctx.visits.device_warning(practitioner_id), place_warning) if w]
    return _public(visit).model_copy(update={"warnings": warnings})


@router.delete("/{visit_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_visit(visit_id: Id, user: CurrentUser, ctx: Ctx, ip: ClientIp) -> None:
    visit = next((v for v in await ctx.store.list_visits() if v.id == visit_id), None)
    if visit is None or (user.role is Role.PRACTITIONER and visit.practitioner_id != user.practitioner_id):
        raise not_found("visite")
    try:
        await ctx.store.delete_visit(visit_id)
    except NotFound:
        raise not_found("visite") from None
    await ctx.cache.refresh()
    await ctx.audit.record(
        user, audit.VISIT_CHANGE, target_kind="visit", target_id=visit_id, ip=ip, change="delete"
    )
