"""Helpers of the web attacks: a hostile site on another port, logins, alerts from real devices."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from aiohttp import web

from broker_config.runner import free_port
from sandbox.fleet import SimulatedDevice
from tests.api.conftest import PASSWORD
from tests.support.system import System

CHEF_DE_POSTE = "+33639980101"  # commissariat de Montpellier, tier 1, SMS + voice


@dataclass
class HostileSite:
    """A page on another port of the same host: same *site* as the console, other *origin*."""

    url: str


def _form_page(target: str) -> str:
    """An HTML page that auto-submits an empty POST form to ``target`` (the classic CSRF)."""
    return (
        "<!doctype html><html><body>"
        f'<form id="f" method="POST" action="{html.escape(target)}">'
        '<input type="hidden" name="x" value="1"></form>'
        "<script>document.getElementById('f').submit()</script></body></html>"
    )


@asynccontextmanager
async def hostile_site() -> AsyncIterator[HostileSite]:
    """Serve ``/form?target=URL`` (auto-submitting form) and ``/blank`` on a free loopback port."""

    async def form(request: web.Request) -> web.Response:
        return web.Response(text=_form_page(request.query["target"]), content_type="text/html")

    async def blank(_request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>x</title>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/form", form)
    app.router.add_get("/blank", blank)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield HostileSite(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


@asynccontextmanager
async def logged_in(url: str, username: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client holding ``username``'s session cookie on the served app."""
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        yield client


async def raise_alert(system: System, device_id: str) -> tuple[SimulatedDevice, str]:
    """A real signed alert from a device of Dr Fabre's cabinet (routed to Montpellier's commissariat)."""
    device = system.devices.get(device_id) or await system.add_device(
        device_id, practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id)
    return device, alert_id


async def texted(system: System, number: str, alert_id: str) -> None:
    """Until ``number`` received the SMS of ``alert_id`` (it names the alert's reply code)."""
    from dispatcher.alerting.replycodes import reply_code

    code = reply_code(alert_id)
    await system.sandbox.wait_for(
        lambda: any(f"Repondez 1 {code} " in body for body in system.sent_to(number, "message")), within=10
    )


async def state_is(system: System, alert_id: str, expected: str, within: float = 10.0) -> None:
    async def reached() -> bool:
        return (await system.store.get_alert(alert_id)).state == expected

    await system.until(reached, within)
