"""Accounts (admins only)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from http import HTTPStatus

from fastapi import APIRouter, HTTPException, Response, status

from dispatcher import audit
from dispatcher.events import ACCOUNT_EVENT
from dispatcher.store.base import NewUser, NotFound, UserRecord
from dispatcher.web.api.deps import AdminUser, ClientIp, Ctx, not_found
from dispatcher.web.api.listing import PAGE, Limit, Search
from dispatcher.web.api.schemas import UserCreate, UserPublic, UserUpdate
from dispatcher.web.auth import Role, User, hash_password

router = APIRouter(prefix="/api/users", tags=["users"])


def _public(r: UserRecord, ctx: Ctx) -> UserPublic:
    practitioner = ctx.cache.current.practitioners.get(r.practitioner_id or "")
    return UserPublic(
        id=r.id,
        username=r.username,
        display_name=r.display_name,
        role=Role(r.role),
        practitioner_id=r.practitioner_id,
        practitioner_name=practitioner.display_name if practitioner else None,
        conventions=list(r.conventions),
        disabled=r.disabled,
    )


def _check_role(record: UserRecord, admin: User, rescoped: bool) -> None:
    """The scope a role needs (as at creation) when role or scope change, and no admin locking herself out."""
    role = Role(record.role)
    if rescoped and role is Role.OPERATOR and not record.conventions:
        raise HTTPException(
            HTTPStatus.UNPROCESSABLE_ENTITY, detail="un opérateur a besoin d'au moins une convention"
        )
    if rescoped and role is Role.PRACTITIONER and not record.practitioner_id:
        raise HTTPException(
            HTTPStatus.UNPROCESSABLE_ENTITY, detail="un compte praticien a besoin d'un praticien"
        )
    if record.id == admin.id and (record.disabled or role is not Role.ADMIN):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail="vous ne pouvez ni désactiver votre propre compte ni changer son rôle",
        )


def _check_scope(ctx: Ctx, practitioner_id: str | None, conventions: list[str]) -> None:
    snapshot = ctx.cache.current
    if practitioner_id is not None and practitioner_id not in snapshot.practitioners:
        raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail="praticien inconnu")
    known = {c.id for c in snapshot.conventions}
    if unknown := sorted(set(conventions) - known):
        raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail=f"conventions inconnues : {unknown}")


@router.get("", response_model=list[UserPublic])
async def list_users(
    _: AdminUser, ctx: Ctx, response: Response, q: Search = None, limit: Limit = PAGE
) -> list[UserPublic]:
    """The accounts by username; with ``q``, those whose username, name or practitioner id hold
    its words (case ignored, accents as typed); ``limit`` at most, how many in all in
    ``X-Total-Count``: a national deployment has an account per practitioner."""
    users, total = await ctx.store.users_page(q.split() if q else (), limit)
    response.headers["X-Total-Count"] = str(total)
    return [_public(u, ctx) for u in users]


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, admin: AdminUser, ctx: Ctx, ip: ClientIp) -> UserPublic:
    """Create an account (409 if the username is taken)."""
    _check_scope(ctx, body.practitioner_id, body.conventions)
    password_hash = await asyncio.to_thread(hash_password, body.password)
    record = await ctx.store.add_user(
        NewUser(
            username=body.username,
            display_name=body.display_name,
            password_hash=password_hash,
            role=body.role.value,
            practitioner_id=body.practitioner_id,
            conventions=tuple(body.conventions),
        )
    )
    await ctx.audit.record(
        admin,
        audit.CONFIG_CHANGE,
        target_kind="user",
        target_id=str(record.id),
        ip=ip,
        change="create",
        username=record.username,
        role=record.role,
        conventions=list(record.conventions),
    )
    return _public(record, ctx)


@router.patch("/{user_id}", response_model=UserPublic)
async def update_user(user_id: int, body: UserUpdate, admin: AdminUser, ctx: Ctx, ip: ClientIp) -> UserPublic:
    """Rename, change password or scope, disable (a disabled account's sessions end at once)."""
    try:
        record = await ctx.store.get_user(user_id)
    except NotFound:
        raise not_found("utilisateur") from None
    changes = body.model_dump(exclude_unset=True, exclude={"password"})
    _check_scope(ctx, body.practitioner_id, body.conventions or [])
    updated = replace(
        record,
        display_name=body.display_name or record.display_name,
        role=body.role.value if body.role is not None else record.role,
        practitioner_id=changes.get("practitioner_id", record.practitioner_id),
        conventions=tuple(body.conventions) if body.conventions is not None else record.conventions,
        disabled=body.disabled if body.disabled is not None else record.disabled,
        password_hash=(
            await asyncio.to_thread(hash_password, body.password) if body.password else record.password_hash
        ),
    )
    _check_role(updated, admin, rescoped=bool({"role", "conventions", "practitioner_id"} & changes.keys()))
    await ctx.store.update_user(updated)
    if updated.disabled or body.password or updated.role != record.role:
        await ctx.store.delete_user_sessions(user_id)
    ctx.bus.publish(ACCOUNT_EVENT, user_id=user_id)  # open console feeds re-check their session and scope
    await ctx.audit.record(
        admin,
        audit.CONFIG_CHANGE,
        target_kind="user",
        target_id=str(user_id),
        ip=ip,
        change="update",
        fields=sorted(changes) + (["password"] if body.password else []),
        role=updated.role,
        conventions=list(updated.conventions),
        disabled=updated.disabled,
    )
    return _public(updated, ctx)
