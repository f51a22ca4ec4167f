"""Where the aggressor may look: her API and console views of a duress alert equal those of a cancel.

Two real alerts from her cabinet's button: one cancelled with her PIN, one with her
duress PIN — after which the escalation goes on, a responder takes it by SMS
and operators are alarmed. Until an operator resolves it, everything she can
read about the second is what she reads about the first (ids and times aside).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from dispatcher.store.base import AlertRecord
from dispatcher.web.api import views
from protocol.topics import UplinkKind
from tests.api.conftest import Api, Served
from tests.console.test_websocket import _session_cookie
from tests.support.records import alert_record

CHEF_DE_POSTE = "+33639980101"
VOLATILE = {"id", "received_at", "at", "created_at", "updated_at", "event_id", "notification_id", "seq"}


def same_shape(value: Any) -> Any:
    """Drop what differs between any two alerts (ids, times, sequence numbers); keep what she reads."""
    if isinstance(value, dict):
        return {k: same_shape(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [same_shape(v) for v in value]
    return value


async def settled(api_system: Any, alert_id: str) -> None:
    """Every request of the alert has reached its final status at the provider."""

    async def done() -> bool:
        rows = await api_system.store.notifications_for(alert_id)
        return bool(rows) and all(n.status in ("delivered", "completed") for n in rows)

    await api_system.until(done, within=30)


async def cancelled_and_duress(system: Any, alert_from: Any) -> tuple[str, str]:
    device, plain = await alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    await settled(system, plain)
    await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=plain, pin="2468")
    await asyncio.to_thread(device.wait_downlink, "cancelled", plain)
    await settled(system, plain)

    _, forced = await alert_from("btn-boutonnet", "dr-claire-fabre", "cabinet-boutonnet")
    await settled(system, forced)
    await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=forced, pin="1357")
    await asyncio.to_thread(device.wait_downlink, "cancelled", forced)
    # What follows a duress and a cancel never has: a responder takes it, others are told.
    assert (await system.sandbox.reply(CHEF_DE_POSTE, "1")).status == 200

    async def acknowledged() -> bool:
        return (await system.store.get_alert(forced)).state == "acknowledged"

    await system.until(acknowledged)
    await settled(system, forced)
    return plain, forced


async def test_her_api_views_of_a_duress_equal_those_of_a_cancel(api: Api) -> None:
    plain, forced = await cancelled_and_duress(api.system, api.alert_from)
    fabre = await api.as_user("dr-fabre")
    listed = {a["id"]: a for a in (await fabre.get("/api/alerts")).json()}
    assert same_shape(listed[forced]) == same_shape(listed[plain])
    assert listed[forced]["state"] == "cancelled" and not listed[forced]["duress"]
    detail = {i: (await fabre.get(f"/api/alerts/{i}")).json() for i in (plain, forced)}
    assert same_shape(detail[forced]) == same_shape(detail[plain])
    timeline = {i: (await fabre.get(f"/api/alerts/{i}/timeline")).json() for i in (plain, forced)}
    assert same_shape(timeline[forced]) == same_shape(timeline[plain])
    assert "contrainte" not in json.dumps(detail[forced]).lower()

    # Operators see the truth at once; once an operator resolved it, so does she.
    operator = await api.as_user("op-herault")
    truth = (await operator.get(f"/api/alerts/{forced}")).json()
    assert truth["duress"] and truth["state"] == "acknowledged"
    assert any("Code de contrainte" in e["text"] for e in truth["timeline"])
    assert (await operator.post(f"/api/alerts/{forced}/resolve")).status_code == 200
    after = (await fabre.get(f"/api/alerts/{forced}")).json()
    assert after["duress"] and after["state"] == "resolved"


async def test_her_console_feed_shows_a_duress_as_a_cancel(served: Served) -> None:
    system = served.system

    async def alert_from(device_id: str, practitioner: str, site: str) -> tuple[Any, str]:
        device = system.devices.get(device_id) or await system.add_device(
            device_id, practitioner=practitioner, site=site
        )
        alert_id = await asyncio.to_thread(device.alert)
        await asyncio.to_thread(device.wait_downlink, "received", alert_id)
        return device, alert_id

    plain, forced = await cancelled_and_duress(system, alert_from)
    ws_url = served.url.replace("http", "ws") + "/api/ws"
    cookie = await _session_cookie(served.url, "dr-fabre")
    async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}) as ws:
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), 5))
        alerts = {a["id"]: a for a in snapshot["alerts"]}
        assert same_shape(alerts[forced]) == same_shape(alerts[plain])
        assert not alerts[forced]["needs_attention"] and alerts[forced]["alarm"] is None


def record(state: str, escalation: dict[str, Any]) -> AlertRecord:
    return alert_record(state=state, escalation=escalation, version=3)


def test_the_one_rule_of_what_she_may_see() -> None:
    cover = {"state": "cancelled", "duress": False, "acked_by": None}
    forced = record("duress", {"duress": True, "cover": cover, "alarm": "annulation sous contrainte"})
    assert views.practitioner_record(forced).state == "cancelled"
    assert views.practitioner_record(forced).escalation == cover
    assert not views.summary(forced, as_practitioner=True).duress
    assert views.summary(forced).duress and views.summary(forced).needs_attention  # operators: the truth
    resolved = record("resolved", {"duress": True, "cover": cover})
    assert views.practitioner_record(resolved) is resolved  # resolved by an operator: the truth
    # Raised under duress (a visit check answered with her duress code): nothing to pass for; hidden.
    raised = record("duress", {"duress": True})
    assert views.hidden_from_practitioner(raised) and not views.hidden_from_practitioner(forced)
    assert not views.hidden_from_practitioner(record("notifying", {"duress": False}))
