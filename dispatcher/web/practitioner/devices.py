"""Her devices: online state, battery, last heartbeat, last test; "Tester ma balise".

The test is a real test alert filed under the device and run through the
chain: routing, the escalation's test path (an SMS to her phone, nothing to
any responder), the provider, and the "acknowledged" downlink that makes the
device vibrate. Her page polls the result for a few seconds.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, status

from dispatcher.domain import AlertKind, Device, DeviceState, Id
from dispatcher.store.base import AlertQuery, NotFound, server_alert
from dispatcher.web.api.deps import ClientIp, Ctx, CurrentUser, not_found, require
from dispatcher.web.auth import Role, User
from dispatcher.web.practitioner.schemas import MyDevice, TestResult, TestStarted
from dispatcher.web.practitioner.visits import practitioner_of

router = APIRouter(
    prefix="/api/me/devices", tags=["practitioner"], dependencies=[Depends(require(Role.PRACTITIONER))]
)
DEVICE_TEST = "device.test"
TEST_KINDS = (AlertKind.TEST.value, AlertKind.DRILL.value)


def _own_device(ctx: Ctx, user: User, device_id: str) -> Device:
    device = ctx.cache.current.devices.get(device_id)
    if device is None or device.practitioner_id != practitioner_of(user):
        raise not_found("balise")
    return device


def _online(row: dict[str, Any]) -> bool | None:
    if not row:
        return None
    flags = set(json.loads(row.get("flags") or "[]"))
    return row.get("status") == "online" and "offline" not in flags


@router.get("", response_model=list[MyDevice])
async def my_devices(user: CurrentUser, ctx: Ctx) -> list[MyDevice]:
    """Each of her devices with its health and its last test."""
    me = practitioner_of(user)
    health = {r["device_id"]: r for r in await ctx.store.device_health()}
    out = []
    for device in sorted(ctx.cache.current.devices.values(), key=lambda d: d.id):
        if device.practitioner_id != me or device.state is not DeviceState.ACTIVE:
            continue
        row = health.get(device.id, {})
        tests = await ctx.store.search_alerts(AlertQuery(kinds=TEST_KINDS, device_id=device.id, limit=1))
        seen = row.get("last_seen_at")
        out.append(
            MyDevice(
                id=device.id,
                label=device.label or device.id,
                kind=device.kind.value,
                online=_online(row),
                battery_pct=row.get("battery_pct"),
                last_seen_at=datetime.fromisoformat(seen) if seen else None,
                last_test_at=tests[0].received_at if tests else None,
                last_test_alert=tests[0].id if tests else None,
            )
        )
    return out


@router.post("/{device_id}/test", response_model=TestStarted, status_code=status.HTTP_202_ACCEPTED)
async def test_device(device_id: Id, user: CurrentUser, ctx: Ctx, ip: ClientIp) -> TestStarted:
    """'Tester ma balise': a test alert through the whole chain, never to a responder."""
    device = _own_device(ctx, user, device_id)
    now = datetime.now(UTC)
    alert = server_alert(
        f"test-{secrets.token_hex(8)}", device.id, kind=AlertKind.TEST.value, gesture="page_test", at=now
    )
    planned = ctx.engine.plan(alert)
    await ctx.store.insert_server_alert(alert, planned.transition)
    await ctx.engine.after_commit(planned)
    await ctx.audit.record(
        user, DEVICE_TEST, target_kind="device", target_id=device.id, ip=ip, alert_id=alert.id
    )
    return TestStarted(alert_id=alert.id)


@router.get("/{device_id}/tests/{alert_id}", response_model=TestResult)
async def test_result(device_id: Id, alert_id: Id, user: CurrentUser, ctx: Ctx) -> TestResult:
    """Where the test is: her SMS's provider status, the device's feedback."""
    device = _own_device(ctx, user, device_id)
    try:
        record = await ctx.store.get_alert(alert_id)
    except NotFound:
        raise not_found("test") from None
    if record.device_id != device.id or record.kind not in TEST_KINDS:
        raise not_found("test")
    # A test texts her; a drill (her convention consents) runs the real chain: its first SMS.
    sms = [n for n in await ctx.store.notifications_for(alert_id) if n.channel == "sms"]
    sms_status = sms[0].status if sms else None
    health = {r["device_id"]: r for r in await ctx.store.device_health()}
    feedback = record.state in ("resolved", "acknowledged")
    return TestResult(
        alert_id=alert_id,
        received_at=record.received_at,
        state=record.state,
        sms_status=sms_status,
        device_feedback=feedback,
        device_online=_online(health.get(device.id, {})),
        done=feedback and (sms_status in ("delivered", "failed", "undelivered") or not sms),
    )
