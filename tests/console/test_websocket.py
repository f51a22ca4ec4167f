"""The console's WebSocket: refused without a session or from another origin; live otherwise."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from broker_config.runner import DevBroker
from dispatcher.alerting.engine import ALARM_PROVIDER_DOWN, PROVIDER_BACK, PROVIDER_TOPIC
from dispatcher.store import open_store
from dispatcher.web.console.frames import messages_in
from protocol.topics import UplinkKind
from tests.api.conftest import PASSWORD, Served, add_users, serving
from tests.support.feed import next_message
from tests.support.system import running_system

# How long a push may take before the test gives up: a safety net for a loaded machine,
# not a goal (the console's speed is the benchmark's business, bench/).
LIVE_S = 30.0


async def _session_cookie(url: str, username: str) -> str:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200
        return f"vigie_session={response.cookies['vigie_session']}"


async def _close_code(url: str, headers: dict[str, str]) -> int | None:
    async with websockets.connect(url, additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        return ws.close_code


async def test_websocket_without_a_valid_session_is_closed_4401(served: Served) -> None:
    ws_url = served.url.replace("http", "ws") + "/api/ws"
    assert await _close_code(ws_url, {}) == 4401
    assert await _close_code(ws_url, {"Cookie": "vigie_session=forged"}) == 4401


async def test_websocket_from_another_origin_is_closed_1008(served: Served) -> None:
    cookie = await _session_cookie(served.url, "op-herault")
    ws_url = served.url.replace("http", "ws") + "/api/ws"
    assert await _close_code(ws_url, {"Cookie": cookie, "Origin": "https://evil.example"}) == 1008


async def test_websocket_pushes_new_alerts_in_scope_only(served: Served) -> None:
    ws_url = served.url.replace("http", "ws") + "/api/ws"
    herault = await websockets.connect(
        ws_url, additional_headers={"Cookie": await _session_cookie(served.url, "op-herault")}
    )
    gard = await websockets.connect(
        ws_url, additional_headers={"Cookie": await _session_cookie(served.url, "op-gard")}
    )
    try:
        assert json.loads(await herault.recv())["type"] == "snapshot"
        assert json.loads(await gard.recv()) == {
            "type": "snapshot",
            "user": "Gaëlle Gard",
            "alerts": [],
            "system": [],
            "alarms": [],
        }
        device = await served.system.add_device(
            "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
        )
        alert_id = await asyncio.to_thread(device.alert)

        async def first_alert_message() -> dict[str, object]:
            while True:
                message = await next_message(herault)
                if message["type"] == "alert":
                    return message

        message = await asyncio.wait_for(first_alert_message(), LIVE_S)
        assert message["alert"]["id"] == alert_id and message["alert"]["needs_attention"]  # type: ignore[index]
        assert "location" not in message["alert"]  # type: ignore[operator]
        # Every feed forwards the bus's events in order, and a visit event to everyone: once
        # Gard's feed has forwarded one published now, it has dealt with the alert's events.
        served.system.dispatcher.bus.publish("visit")
        while (seen := await asyncio.wait_for(next_message(gard), LIVE_S))["type"] != "visit":
            assert seen["type"] == "ping", f"Gard's operator was told of a Hérault alert: {seen}"
    finally:
        await herault.close()
        await gard.close()


@asynccontextmanager
async def _two_territories_feeds(served: Served) -> AsyncIterator[dict[str, Any]]:
    """Hérault's and Gard's operators' feeds, past their snapshots, Boutonnet's button registered."""
    ws_url = served.url.replace("http", "ws") + "/api/ws"
    await served.system.add_device("btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet")
    feeds = {}
    for username in ("op-herault", "op-gard"):
        cookie = await _session_cookie(served.url, username)
        feeds[username] = await websockets.connect(ws_url, additional_headers={"Cookie": cookie})
    try:
        for ws in feeds.values():
            assert json.loads(await ws.recv())["type"] == "snapshot"
        yield feeds
    finally:
        for ws in feeds.values():
            await ws.close()


async def test_an_alarm_about_a_device_reaches_its_operators_only_and_is_no_system_alarm(
    served: Served,
) -> None:
    """The broker refusing a device's revocation: its territory's consoles re-read their events;
    no console is told the whole system is down, and another territory hears nothing."""
    async with _two_territories_feeds(served) as feeds:
        await served.system.dispatcher.control.alarm("btn-boutonnet", "révocation non confirmée", "test")
        served.system.dispatcher.bus.publish("visit")  # every feed forwards it after the alarm
        herault, _ = await _messages_until(feeds["op-herault"], "visit")
        gard, _ = await _messages_until(feeds["op-gard"], "visit")
        assert [m["type"] for m in herault if m["type"] != "ping"] == ["events"]
        assert [m["type"] for m in gard if m["type"] != "ping"] == [], "another territory's device"


async def test_events_waiting_together_reach_a_console_as_one_frame_in_order_and_in_scope(
    served: Served,
) -> None:
    """A busy feed sends one frame per batch (dispatcher/web/console/frames.py); what it
    carries is still filtered by scope, and a lone message still travels as itself."""
    async with _two_territories_feeds(served) as feeds:
        bus = served.system.dispatcher.bus
        # In one turn of the loop: both wait in each feed's queue together.
        bus.publish("device_health", device_id="btn-boutonnet", flag="offline", raised=True)
        bus.publish("visit")

        async def frame_with_visit(ws: Any) -> dict[str, Any]:
            while True:
                frame: dict[str, Any] = json.loads(await ws.recv())
                if {"type": "visit"} in messages_in(frame):
                    return frame

        herault = await asyncio.wait_for(frame_with_visit(feeds["op-herault"]), LIVE_S)
        health = {"type": "health", "device_id": "btn-boutonnet", "flag": "offline", "raised": True}
        assert herault["type"] == "batch" and herault["messages"][-2:] == [health, {"type": "visit"}]
        gard = await asyncio.wait_for(frame_with_visit(feeds["op-gard"]), LIVE_S)
        assert gard == {"type": "visit"}, "another territory's device, and nothing to batch with"


async def test_a_provider_alarm_relayed_from_another_instance_is_cleared_by_this_ones_next_answer(
    served: Served,
) -> None:
    """Another instance raised "provider down" and died (or sends nothing now): this instance's
    next answer from the provider ends it, lest the banner stay on its consoles for good."""
    ws_url = served.url.replace("http", "ws") + "/api/ws"
    bus = served.system.dispatcher.bus
    # What the relay hands over from the instance that raised it (dispatcher/event_relay.py).
    down = f"{ALARM_PROVIDER_DOWN} (20003: instance voisine)"
    bus.deliver({"kind": "operator_alarm", "alert_id": None, "reason": down, "topic": PROVIDER_TOPIC})
    cookie = await _session_cookie(served.url, "op-herault")
    async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}) as herault:
        snapshot = json.loads(await herault.recv())
        assert snapshot["system"] == [{"topic": PROVIDER_TOPIC, "alarm": down}]
        device = await served.system.add_device(
            "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
        )
        await asyncio.to_thread(device.alert)  # its first tier is sent, and the provider answers
        _, cleared = await _messages_until(herault, "system")
        assert cleared == {"type": "system", "topic": PROVIDER_TOPIC, "cleared": PROVIDER_BACK}
    assert bus.system_alarms == {}
    ends = [e["message"] for e in await served.system.store.operator_events() if e["kind"] == "provider"]
    assert ends == [PROVIDER_BACK], "one end of the episode in the events list, stored before it was told"


async def test_an_instance_started_during_a_provider_outage_shows_it_and_ends_it_at_the_next_answer(
    broker: DevBroker, tmp_path: Path
) -> None:
    """The alarm was raised by this instance's previous life (or another instance) and never
    ended: the console of an instance started now shows it from its first snapshot."""
    down = f"{ALARM_PROVIDER_DOWN} (20003: avant le redémarrage)"
    earlier = await open_store(f"sqlite:///{tmp_path / 'vigie.db'}")
    await earlier.add_operator_event("alarm", "fournisseur injoignable (épisode clos)", topic=PROVIDER_TOPIC)
    await earlier.add_operator_event("provider", PROVIDER_BACK, topic=PROVIDER_TOPIC)
    await earlier.add_operator_event("alarm", down, topic=PROVIDER_TOPIC)
    await earlier.close()
    async with running_system(broker, tmp_path) as system:
        await add_users(system)
        async with serving(system) as url:
            cookie = await _session_cookie(url, "op-herault")
            ws_url = url.replace("http", "ws") + "/api/ws"
            async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}) as herault:
                snapshot = json.loads(await herault.recv())
                assert snapshot["system"] == [{"topic": PROVIDER_TOPIC, "alarm": down}], "only the open one"
                device = await system.add_device(
                    "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
                )
                await asyncio.to_thread(device.alert)
                _, cleared = await _messages_until(herault, "system")
                assert cleared["cleared"] == PROVIDER_BACK
            assert await system.store.open_system_alarms() == {}, "stored as ended too"


@asynccontextmanager
async def _herault_feed_with_an_alert(served: Served) -> AsyncIterator[tuple[Any, str]]:
    """Hérault's operator's feed, past its snapshot, and a real alert in its scope."""
    ws_url = served.url.replace("http", "ws") + "/api/ws"
    device = await served.system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    cookie = await _session_cookie(served.url, "op-herault")
    async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}) as herault:
        assert json.loads(await herault.recv())["type"] == "snapshot"
        yield herault, alert_id


async def _messages_until(ws: Any, kind: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The feed's messages before the first of ``kind``, and that one (within LIVE_S)."""

    async def read() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        before = []
        while (message := await next_message(ws))["type"] != kind:
            before.append(message)
        return before, message

    return await asyncio.wait_for(read(), LIVE_S)


async def test_a_console_that_fell_behind_is_sent_a_fresh_snapshot_with_the_alert_it_missed(
    served: Served,
) -> None:
    async with _herault_feed_with_an_alert(served) as (herault, alert_id):
        bus = served.system.dispatcher.bus
        # More events than a feed's queue holds, published in one turn of the loop (the feed
        # cannot read in between), the alert's own event last: it is the one that overflows.
        for i in range(1000):
            bus.publish("device_health", device_id=f"btn-inconnu-{i}", flag="offline", raised=True)
        bus.publish("notification", alert_id=alert_id)

        # Pushes of the alert's own later events (its callbacks) may come first; without a
        # re-read, the overflowed event is lost and no snapshot ever comes.
        _, snapshot = await _messages_until(herault, "snapshot")
        assert alert_id in [a["id"] for a in snapshot["alerts"]]


async def test_a_console_behind_on_one_alerts_events_is_pushed_that_alert_not_a_whole_snapshot(
    served: Served,
) -> None:
    async with _herault_feed_with_an_alert(served) as (herault, alert_id):
        bus = served.system.dispatcher.bus
        # Twice what its queue holds, in one turn of the loop, all about one alert: they
        # compact to one event, so the feed answers with that alert (a whole snapshot
        # would cost the loop every open alert's summary while the feed is already behind).
        for _ in range(2000):
            bus.publish("notification", alert_id=alert_id)
        bus.publish("visit")

        seen, _ = await _messages_until(herault, "visit")
        assert [m["type"] for m in seen if m["type"] == "snapshot"] == []
        assert alert_id in [m["alert"]["id"] for m in seen if m["type"] == "alert"]


async def _snapshot_ids(url: str, username: str) -> list[str]:
    ws_url = url.replace("http", "ws") + "/api/ws"
    cookie = await _session_cookie(url, username)
    async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}) as ws:
        message = json.loads(await asyncio.wait_for(ws.recv(), LIVE_S))
        assert message["type"] == "snapshot"
        return [a["id"] for a in message["alerts"]]


async def test_an_open_alert_stays_in_the_snapshot_however_many_alerts_came_after_it(
    broker: DevBroker, tmp_path: Path
) -> None:
    # The page replaces its list with each snapshot (on connecting, and when its feed fell
    # behind a burst): an open alert older than the most recent ones must still be in it.
    async with running_system(broker, tmp_path) as system:
        await add_users(system)
        async with serving(system, api_updates={"console_recent_alerts": 1}) as url:
            device = await system.add_device(
                "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
            )
            still_open = await asyncio.to_thread(device.alert)
            await asyncio.to_thread(device.wait_downlink, "received", still_open)
            newer = await asyncio.to_thread(device.alert)
            await asyncio.to_thread(device.wait_downlink, "received", newer)
            await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=newer, pin="2468")
            await asyncio.to_thread(device.wait_downlink, "cancelled", newer)

            assert await _snapshot_ids(url, "op-herault") == [newer, still_open]
            assert await _snapshot_ids(url, "admin") == [newer, still_open]
            # Her own console keeps to the most recent: which of hers are still open could
            # tell a duress (the chain goes on) from the cancel it passes for.
            assert await _snapshot_ids(url, "dr-fabre") == [newer]
