"""The console's WebSocket: refused without a session or from another origin; live otherwise."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.api.conftest import PASSWORD, Served

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
        assert json.loads(await gard.recv()) == {"type": "snapshot", "user": "Gaëlle Gard", "alerts": []}
        device = await served.system.add_device(
            "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
        )
        alert_id = await asyncio.to_thread(device.alert)

        async def first_alert_message() -> dict[str, object]:
            while True:
                message = json.loads(await herault.recv())
                if message["type"] == "alert":
                    return message

        message = await asyncio.wait_for(first_alert_message(), LIVE_S)
        assert message["alert"]["id"] == alert_id and message["alert"]["needs_attention"]  # type: ignore[index]
        assert "location" not in message["alert"]  # type: ignore[operator]
        # Every feed forwards the bus's events in order, and a visit event to everyone: once
        # Gard's feed has forwarded one published now, it has dealt with the alert's events.
        served.system.dispatcher.bus.publish("visit")
        while (seen := json.loads(await asyncio.wait_for(gard.recv(), LIVE_S)))["type"] != "visit":
            assert seen["type"] == "ping", f"Gard's operator was told of a Hérault alert: {seen}"
    finally:
        await herault.close()
        await gard.close()


async def test_a_console_that_fell_behind_is_sent_a_fresh_snapshot_with_the_alert_it_missed(
    served: Served,
) -> None:
    ws_url = served.url.replace("http", "ws") + "/api/ws"
    device = await served.system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    herault = await websockets.connect(
        ws_url, additional_headers={"Cookie": await _session_cookie(served.url, "op-herault")}
    )
    try:
        assert json.loads(await herault.recv())["type"] == "snapshot"
        bus = served.system.dispatcher.bus
        # More events than a feed's queue holds, published in one turn of the loop (the feed
        # cannot read in between), the alert's own event last: it is the one that overflows.
        for i in range(1000):
            bus.publish("device_health", device_id=f"btn-inconnu-{i}", flag="offline", raised=True)
        bus.publish("notification", alert_id=alert_id)

        async def a_fresh_snapshot() -> list[dict[str, object]]:
            # Pushes of the alert's own later events (its callbacks) may come first; without a
            # re-read, the overflowed event is lost and no snapshot ever comes.
            message = json.loads(await herault.recv())
            while message["type"] != "snapshot":
                message = json.loads(await herault.recv())
            return message["alerts"]  # type: ignore[no-any-return]

        alerts = await asyncio.wait_for(a_fresh_snapshot(), LIVE_S)
        assert alert_id in [a["id"] for a in alerts]
    finally:
        await herault.close()
