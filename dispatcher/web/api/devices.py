"""Devices and their health. Keys and certificates are issued by ``vigie provision``, never here."""

from __future__ import annotations

import json
from datetime import datetime
from http import HTTPStatus

from fastapi import APIRouter, HTTPException

from dispatcher import audit
from dispatcher.alerting import texts
from dispatcher.domain import Device, Id
from dispatcher.fleet.dynsec_commands import revoke_commands
from dispatcher.store.base import NotFound
from dispatcher.web.api.deps import AdminUser, ClientIp, Ctx, UserAccess, not_found
from dispatcher.web.api.schemas import DeviceHealthPublic, DevicePublic, DeviceUpdate

router = APIRouter(prefix="/api/devices", tags=["devices"])


def _public(d: Device) -> DevicePublic:
    return DevicePublic.model_validate(d.model_dump())


@router.get("", response_model=list[DevicePublic])
async def list_devices(access: UserAccess) -> list[DevicePublic]:
    return [_public(d) for d in access.snapshot.devices.values() if access.sees_device(d)]


@router.get("/health", response_model=list[DeviceHealthPublic])
async def device_health(access: UserAccess, ctx: Ctx) -> list[DeviceHealthPublic]:
    """Every visible device with its last heartbeat, battery and offline/low-battery flags."""
    rows = {r["device_id"]: r for r in await ctx.store.device_health()}
    out = []
    for d in sorted(access.snapshot.devices.values(), key=lambda d: d.id):
        if not access.sees_device(d):
            continue
        row = rows.get(d.id, {})
        flags = set(json.loads(row.get("flags") or "[]"))
        seen = row.get("last_seen_at")
        out.append(
            DeviceHealthPublic(
                device_id=d.id,
                label=d.label,
                kind=d.kind,
                state=d.state,
                practitioner_id=d.practitioner_id,
                site_id=d.site_id,
                status=row.get("status"),
                last_seen_at=datetime.fromisoformat(seen) if seen else None,
                battery_pct=row.get("battery_pct"),
                signal_dbm=row.get("signal_dbm"),
                firmware=row.get("firmware"),
                offline="offline" in flags,
                low_battery="low_battery" in flags,
            )
        )
    return out


@router.get("/{device_id}", response_model=DevicePublic)
async def get_device(device_id: Id, access: UserAccess) -> DevicePublic:
    device = access.snapshot.devices.get(device_id)
    if device is None or not access.sees_device(device):
        raise not_found("balise")
    return _public(device)


@router.patch("/{device_id}", response_model=DevicePublic)
async def update_device(
    device_id: Id, body: DeviceUpdate, admin: AdminUser, ctx: Ctx, ip: ClientIp
) -> DevicePublic:
    """Relabel or rebind a device (practitioner, site, heartbeat interval)."""
    try:
        current = await ctx.store.get_device(device_id)
    except NotFound:
        raise not_found("balise") from None
    changes = body.model_dump(exclude_unset=True)
    try:
        updated = Device.model_validate({**current.model_dump(), **changes})
        await ctx.store.update_device(updated)
    except NotFound as exc:
        raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail=str(exc)) from None
    await ctx.cache.refresh()
    await ctx.audit.record(
        admin,
        audit.CONFIG_CHANGE,
        target_kind="device",
        target_id=device_id,
        ip=ip,
        change="update",
        fields=sorted(changes),
    )
    return _public(updated)


@router.post("/{device_id}/revoke", response_model=DevicePublic)
async def revoke_device(device_id: Id, admin: AdminUser, ctx: Ctx, ip: ClientIp) -> DevicePublic:
    """Refuse the device's signatures from now on, and revoke it at the broker.

    The store first (its messages are refused at once, on every instance), then
    the broker's dynamic-security plugin, over the dispatcher's session
    (dispatcher/fleet/broker_control.py): the broker disconnects it, refuses its
    password logins and everything it would publish, read or subscribe to.
    Certificate logins are refused by the CRL: also run ``vigie provision revoke``.
    If the broker does not confirm, the operator is alarmed and the answer is
    502, the store's revocation standing.
    """
    try:
        await ctx.store.revoke_device(device_id)
        device = await ctx.store.get_device(device_id)
    except NotFound:
        raise not_found("balise") from None
    await ctx.cache.refresh()
    await ctx.audit.record(
        admin, audit.CONFIG_CHANGE, target_kind="device", target_id=device_id, ip=ip, change="revoke"
    )
    if not await ctx.control.apply(revoke_commands(device_id), action="revoke", device_id=device_id):
        raise HTTPException(HTTPStatus.BAD_GATEWAY, detail=texts.REVOKE_UNCONFIRMED)
    return _public(device)
