"""Two dispatcher processes behind one address: a console open on either shows everything live.

The shared subscription hands each alert to one instance; an operator whose
console WebSocket the load balancer put on the other one must still see it
appear, and a logout made through one instance must close the feeds open on
the other.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from dispatcher.store.base import NewUser
from dispatcher.web.auth import hash_password
from tests.scaleout.conftest import Cluster, Instance
from tests.scaleout.test_two_instances import provider_requests, send_rounds
from tests.support.feed import next_message

pytestmark = pytest.mark.faults

PASSWORD = "correct horse battery staple"
LIVE_S = 30.0  # a safety net on a loaded machine, not a goal (the console's speed is bench/'s business)
# Well under the feeds' 20-s ping, at which a feed also re-checks its session on its own.
LOGOUT_SEEN_S = 10.0


async def add_operator(cluster: Cluster) -> None:
    await cluster.store.add_user(
        NewUser(
            "op-herault", "Olivier Opérateur", hash_password(PASSWORD), "operator", conventions=("ssj-34",)
        )
    )


async def session_cookie(instance: Instance) -> str:
    async with httpx.AsyncClient(base_url=instance.url) as http:
        response = await http.post("/api/auth/login", json={"username": "op-herault", "password": PASSWORD})
        assert response.status_code == 200, response.text
        return f"vigie_session={response.cookies['vigie_session']}"


@asynccontextmanager
async def console(instance: Instance, cookie: str) -> AsyncIterator[ClientConnection]:
    url = instance.url.replace("http", "ws") + "/api/ws"
    async with websockets.connect(url, additional_headers={"Cookie": cookie}) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), LIVE_S))
        assert first["type"] == "snapshot"
        yield ws


async def alerts_pushed(ws: ClientConnection, wanted: set[str]) -> set[str]:
    """The ids of ``wanted`` that the feed pushed as live alert messages (not snapshots)."""
    seen: set[str] = set()

    async def read() -> None:
        while not wanted <= seen:
            message = await next_message(ws)
            if message["type"] == "alert":
                seen.add(message["alert"]["id"])

    with suppress(TimeoutError):  # what is missing by then is reported by the caller
        await asyncio.wait_for(read(), LIVE_S)
    return seen & wanted


async def test_a_console_on_either_instance_shows_every_alert_live(cluster: Cluster) -> None:
    await add_operator(cluster)
    await cluster.add_devices(4)
    first = await cluster.start_instance("d1")
    second = await cluster.start_instance("d2")
    cookie = await session_cookie(first)  # the session is in the shared store: valid on both
    async with console(first, cookie) as on_first, console(second, cookie) as on_second:
        ids = await asyncio.to_thread(send_rounds, cluster.devices, 3)
        wanted = set(ids)
        seen_first, seen_second = await asyncio.gather(
            alerts_pushed(on_first, wanted), alerts_pushed(on_second, wanted)
        )
    assert seen_first == wanted, f"missing on d1: {wanted - seen_first}\n{cluster.logs()}"
    assert seen_second == wanted, f"missing on d2: {wanted - seen_second}\n{cluster.logs()}"
    # Both instances took some of the alerts (the first tier goes out from the receiving one):
    # otherwise a console would have shown only its own instance's alerts and proved nothing.
    senders = {port for _, _, ref, port in provider_requests(cluster) if ref.split("/")[0] in wanted}
    assert senders == {first.http_port, second.http_port}, cluster.logs()


async def test_a_logout_through_one_instance_closes_the_console_open_on_the_other(
    cluster: Cluster,
) -> None:
    await add_operator(cluster)
    first = await cluster.start_instance("d1")
    second = await cluster.start_instance("d2")
    cookie = await session_cookie(first)
    async with console(second, cookie) as on_second:
        async with httpx.AsyncClient(base_url=first.url) as http:
            response = await http.post("/api/auth/logout", headers={"Cookie": cookie})
            assert response.status_code == 204

        async def until_closed() -> None:
            while True:
                await on_second.recv()

        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(until_closed(), LOGOUT_SEEN_S)
