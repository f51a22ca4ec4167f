"""Devices and their health. Keys and certificates are issued by ``vigie provision``, never here."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Container, Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response

from dispatcher import audit
from dispatcher.alerting import texts
from dispatcher.directory.snapshot import DirectorySnapshot, Listed
from dispatcher.domain import Device, Id
from dispatcher.fleet.dynsec_commands import revoke_commands
from dispatcher.store.base import NotFound
from dispatcher.web.api.access import Access
from dispatcher.web.api.deps import AdminUser, ClientIp, Ctx, UserAccess, not_found
from dispatcher.web.api.listing import Search, listed, matching
from dispatcher.web.api.schemas import DeviceHealthPublic, DevicePublic, DeviceUpdate
from dispatcher.web.auth import Role

router = APIRouter(prefix="/api/devices", tags=["devices"])
#: Devices listed at most by one read (its ``limit``, by default): a national fleet is 100,000.
PAGE = 1000
#: Devices checked against the user's territory per turn of the event loop.
_SCOPE_SLICE = 500  # ≈ 5 ms of territory tests on an idle core


def _public(d: Device) -> DevicePublic:
    return DevicePublic.model_validate(d.model_dump())


@router.get("", response_model=list[DevicePublic])
async def list_devices(
    access: UserAccess, response: Response, limit: Annotated[int, Query(ge=1, le=10_000)] = PAGE
) -> list[DevicePublic]:
    """The visible devices by id, ``limit`` at most; how many the user sees in all in ``X-Total-Count``."""
    visible = await _visible(access)
    response.headers["X-Total-Count"] = str(len(visible))
    return [_public(d) for d in visible[:limit]]


@router.get("/health", response_model=list[DeviceHealthPublic])
async def device_health(
    access: UserAccess,
    ctx: Ctx,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=10_000)] = PAGE,
    q: Search = None,
) -> list[DeviceHealthPublic]:
    """The visible devices with their last heartbeat, battery and offline/low-battery flags.

    The flagged ones first, then the others by id, ``limit`` at most; how many
    the user sees in all is in the ``X-Total-Count`` header. A national fleet's
    100,000 rows are neither read nor sent (each console asks again at every
    new alert): the flagged devices, then one page of rows, are. With ``q``,
    only the devices whose id, label, practitioner or site hold its words.
    """
    devices = access.snapshot.devices
    visible = await _visible(access)
    seen = _ids(access, visible)
    if q:
        visible = await _found(access, seen, q)
        seen = {d.id for d in visible}
    shown = [devices[i] for i in await ctx.store.flagged_devices() if i in seen][:limit]
    first = {d.id for d in shown}
    shown += itertools.islice((d for d in visible if d.id not in first), limit - len(shown))
    rows = {r["device_id"]: r for r in await ctx.store.device_health_of([d.id for d in shown])}
    response.headers["X-Total-Count"] = str(len(visible))
    return [_health(d, rows.get(d.id, {}), access.snapshot) for d in shown]


async def _visible(access: Access) -> Sequence[Device]:
    """The devices the user sees, by id: an operator's territory worked out once per snapshot."""
    snapshot = access.snapshot
    if access.user.role is Role.PRACTITIONER:
        hers = snapshot.practitioner_devices.get(access.user.practitioner_id or "", ())
        return sorted(hers, key=lambda d: d.id)
    if "devices_by_id" not in vars(snapshot):  # a new snapshot's first sort: 100,000 devices take
        await asyncio.to_thread(lambda: snapshot.devices_by_id)  # tens of ms, not held on the loop
    if access.is_admin:
        return snapshot.devices_by_id
    known = snapshot.territory_devices
    territory = access.convention_ids
    if territory not in known:
        known[territory] = await _territory(access, snapshot.devices_by_id)
    return known[territory]


async def _found(access: Access, seen: Container[str], q: str) -> list[Device]:
    """The visible devices (ids ``seen``) whose id, label, practitioner or site hold the words of ``q``."""
    listing: Listed[Device] = await listed(access.snapshot, "devices_listed")
    return await matching(listing, lambda d: d.id in seen, q)


def _ids(access: Access, visible: Sequence[Device]) -> Container[str]:
    """The ids of ``visible`` (:func:`_visible`'s), for tests of membership: an operator's made
    once per territory and snapshot."""
    snapshot = access.snapshot
    if access.is_admin:
        return snapshot.devices
    if access.user.role is Role.PRACTITIONER:
        return {d.id for d in visible}
    known = snapshot.territory_ids
    territory = access.convention_ids
    if territory not in known:
        known[territory] = frozenset(d.id for d in visible)
    return known[territory]


async def _territory(access: Access, devices: Sequence[Device]) -> tuple[Device, ...]:
    """The devices an operator sees; checked in slices, the event loop running between."""
    seen: list[Device] = []
    for start in range(0, len(devices), _SCOPE_SLICE):
        if start:
            await asyncio.sleep(0)  # alerts go through between slices
        seen += [d for d in devices[start : start + _SCOPE_SLICE] if access.sees_device(d)]
    return tuple(seen)


def _health(d: Device, row: dict[str, Any], snapshot: DirectorySnapshot) -> DeviceHealthPublic:
    flags = set(json.loads(row.get("flags") or "[]"))
    seen = row.get("last_seen_at")
    practitioner = snapshot.practitioners.get(d.practitioner_id or "")
    site = snapshot.sites.get(d.site_id or "")
    return DeviceHealthPublic(
        device_id=d.id,
        label=d.label,
        kind=d.kind,
        state=d.state,
        practitioner_id=d.practitioner_id,
        practitioner_name=practitioner.display_name if practitioner else None,
        site_id=d.site_id,
        site_name=site.name if site else None,
        status=row.get("status"),
        last_seen_at=datetime.fromisoformat(seen) if seen else None,
        battery_pct=row.get("battery_pct"),
        signal_dbm=row.get("signal_dbm"),
        firmware=row.get("firmware"),
        offline="offline" in flags,
        low_battery="low_battery" in flags,
    )


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
