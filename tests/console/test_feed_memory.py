"""The console feed answers from this process's memory: what the store has, and nothing more for her.

The alert path hands each record it commits to the bus's view of recent alerts
(dispatcher/live_alerts.py) before it publishes the event, so a feed has no
store read to make: these tests check that what an operator is pushed is what
the store holds, that the memory the practitioner's feed answers from holds the
truth of a duress while she is shown a plain cancel, and that a feed that fell
behind ends with the store's state.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import websockets

from dispatcher.alerting import escalation as esc
from dispatcher.store.base import Transition
from dispatcher.web.api import views
from protocol.topics import UplinkKind
from tests.api.conftest import Served
from tests.console.test_websocket import LIVE_S, _herault_feed_with_an_alert, _messages_until, _session_cookie
from tests.support.feed import next_message

DURESS_PIN = "1357"  # Dr Fabre's duress code in the test directory (tests/api/test_duress_views.py)


async def _started(served: Served, alert_id: str) -> None:
    async def notifying() -> bool:
        return (await served.system.store.get_alert(alert_id)).escalation is not None

    await served.system.until(notifying, within=LIVE_S)


async def _push_of(ws: Any, alert_id: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first push about ``alert_id`` that is ``wanted`` (within LIVE_S)."""

    async def read() -> dict[str, Any]:
        while True:
            message = await next_message(ws)
            if message["type"] == "alert" and message["alert"]["id"] == alert_id and wanted(message):
                return message

    return await asyncio.wait_for(read(), LIVE_S)


async def test_an_operator_is_pushed_the_new_state_that_memory_already_holds(served: Served) -> None:
    system = served.system
    async with _herault_feed_with_an_alert(served) as (herault, alert_id):
        await _started(served, alert_id)
        assert await system.dispatcher.engine.handle(
            alert_id, esc.Acknowledged(by="Opératrice de test", via="console")
        )
        stored = await system.store.get_alert(alert_id)
        # Before any feed asked for it, this process's memory holds exactly what the store has:
        # the feeds need no store read to push it.
        assert system.dispatcher.bus.alerts.current(alert_id, now=time.monotonic()) == stored
        pushed = await _push_of(herault, alert_id, lambda m: m["alert"]["state"] == "acknowledged")
        assert pushed["alert"] == views.summary(stored).model_dump(mode="json")
        assert pushed["alert"]["acked_by"] == "Opératrice de test" and not pushed["alert"]["needs_attention"]


async def test_her_console_is_pushed_a_duress_as_a_cancel_though_memory_holds_the_truth(
    served: Served,
) -> None:
    system = served.system
    bus = system.dispatcher.bus
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    ws_url = served.url.replace("http", "ws") + "/api/ws"
    her_cookie = await _session_cookie(served.url, "dr-fabre")
    op_cookie = await _session_cookie(served.url, "op-herault")
    async with (
        websockets.connect(ws_url, additional_headers={"Cookie": her_cookie}) as her,
        websockets.connect(ws_url, additional_headers={"Cookie": op_cookie}) as operator,
    ):
        assert json.loads(await her.recv())["type"] == "snapshot"
        assert json.loads(await operator.recv())["type"] == "snapshot"
        forced = await asyncio.to_thread(device.alert)
        await asyncio.to_thread(device.wait_downlink, "received", forced)
        await _started(served, forced)
        await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=forced, pin=DURESS_PIN)
        await asyncio.to_thread(device.wait_downlink, "cancelled", forced)

        # Operators are alarmed and see the duress; the memory both feeds answer from holds it.
        alarmed = await _push_of(operator, forced, lambda m: bool(m.get("alarm")))
        assert alarmed["alert"]["duress"]
        truth = bus.alerts.current(forced, now=time.monotonic())
        assert truth is not None and truth.escalation is not None and truth.escalation["duress"]
        assert truth == await system.store.get_alert(forced)

        # Every event about it is published by now: a visit event published after them is
        # forwarded after them, so her feed has answered all of them once it forwards it.
        bus.publish("visit")
        seen, _ = await _messages_until(her, "visit")
        pushes = [m for m in seen if m["type"] == "alert" and m["alert"]["id"] == forced]
        assert pushes, "her console was never told of her alert"
        for message in pushes:
            assert "alarm" not in message and message["alert"]["alarm"] is None
            assert not message["alert"]["duress"]
        assert pushes[-1]["alert"]["state"] == "cancelled" and not pushes[-1]["alert"]["needs_attention"]
        assert "contrainte" not in json.dumps(seen).lower()


async def test_a_console_that_fell_behind_ends_with_the_state_the_store_has(served: Served) -> None:
    system = served.system
    bus = system.dispatcher.bus
    async with _herault_feed_with_an_alert(served) as (herault, alert_id):
        await _started(served, alert_id)
        assert await system.dispatcher.engine.handle(alert_id, esc.OperatorTookOver(by="Opératrice de test"))
        # The change's own event, then more events than the feed's queue holds, in one turn of
        # the loop: they cannot be compacted (one per device), the feed loses them and resyncs.
        for i in range(1500):
            bus.publish("device_health", device_id=f"btn-inconnu-{i}", flag="offline", raised=True)
        bus.publish("visit")
        seen, _ = await _messages_until(herault, "visit")
        assert "snapshot" in [m["type"] for m in seen]

        said: dict[str, Any] | None = None  # the last thing the feed said of the alert
        for message in seen:
            if message["type"] == "snapshot":
                said = next((a for a in message["alerts"] if a["id"] == alert_id), said)
            elif message["type"] == "alert" and message["alert"]["id"] == alert_id:
                said = message["alert"]
        stored = await system.store.get_alert(alert_id)
        assert said == views.summary(stored).model_dump(mode="json")
        assert said is not None and said["taken_over_by"] == "Opératrice de test"


async def _snapshot_alerts(url: str, username: str) -> dict[str, dict[str, Any]]:
    ws_url = url.replace("http", "ws") + "/api/ws"
    cookie = await _session_cookie(url, username)
    async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}) as ws:
        message = json.loads(await asyncio.wait_for(ws.recv(), LIVE_S))
        assert message["type"] == "snapshot"
        return {a["id"]: a for a in message["alerts"]}


async def test_a_console_opening_is_sent_the_version_the_store_holds_not_an_older_one_memory_holds(
    served: Served,
) -> None:
    # A snapshot takes from memory the summaries built for the very version the store holds.
    # An alert changed by another writer (another instance, on PostgreSQL) is read again.
    system = served.system
    async with _herault_feed_with_an_alert(served) as (herault, alert_id):
        await _started(served, alert_id)
        await _push_of(herault, alert_id, lambda m: m["alert"]["state"] == "notifying")
        held = await system.store.get_alert(alert_id)
        assert system.dispatcher.bus.alerts.summary_at(
            alert_id, held.version, False, now=time.monotonic()
        ), "the feed's push left its summary in memory"
        assert (await _snapshot_alerts(served.url, "op-herault"))[alert_id] == views.summary(
            held
        ).model_dump(mode="json")

        # Another writer moves the alert on, without this process's memory being told.
        await system.store.apply_transition(
            Transition(
                alert_id=alert_id,
                expected_version=held.version,
                state="acknowledged",
                escalation=held.escalation,
            )
        )
        stored = await system.store.get_alert(alert_id)
        shown = (await _snapshot_alerts(served.url, "op-herault"))[alert_id]
        assert shown == views.summary(stored).model_dump(mode="json")
        assert shown["state"] == "acknowledged"
        # And what it read is kept for the next console: the same version, from memory.
        assert system.dispatcher.bus.alerts.summary_at(alert_id, stored.version, False, now=time.monotonic())
        assert (await _snapshot_alerts(served.url, "op-herault"))[alert_id] == shown
        # Gard's operator is not sent it, held or not.
        assert alert_id not in await _snapshot_alerts(served.url, "op-gard")
