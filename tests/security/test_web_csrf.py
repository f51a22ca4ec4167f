"""Finding 5: cross-site request forgery from a page on another port of the same host.

``SameSite=Strict`` does not help there: another port is the same *site*, so
Chromium sends the console's cookie with the forged request. Before the fix a
form auto-submitted by such a page acknowledged an alert and, against an
admin, revoked a device.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from playwright.async_api import Browser, Response, expect

from dispatcher.domain import DeviceState
from dispatcher.web.auth import SESSION_COOKIE
from tests.api.conftest import Served
from tests.console.test_browser import login
from tests.security.web import hostile_site, raise_alert, state_is

pytestmark = [pytest.mark.attacks, pytest.mark.browser]


def _at(url: str) -> Callable[[Response], bool]:
    return lambda response: response.url == url


async def test_hostile_page_on_another_port_cannot_act_but_the_console_can(
    browser: Browser, served: Served
) -> None:
    system = served.system
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    console = await context.new_page()
    await login(console, served, "admin")
    device, alert_id = await raise_alert(system, "btn-boutonnet")
    await expect(console.locator("#d-title")).to_have_text("Dr Claire Fabre", timeout=5000)
    cookies = [c["name"] for c in await context.cookies(served.url)]
    assert SESSION_COOKIE in cookies

    targets = [f"/api/alerts/{alert_id}/acknowledge", f"/api/devices/{device.device_id}/revoke"]
    async with hostile_site() as evil:
        page = await context.new_page()
        for path in targets:
            # 1. The classic: a form posted by the hostile page, carrying the admin's cookie.
            async with page.expect_response(_at(served.url + path)) as caught:
                await page.goto(f"{evil.url}/form?target={served.url}{path}")
            response = await caught.value
            assert response.status == 403, (path, response.status)
            assert "autre origine" in await response.text()
        # 2. A no-cors fetch with credentials from a script of the hostile page.
        await page.goto(f"{evil.url}/blank")
        for path in targets:
            async with page.expect_response(_at(served.url + path)) as caught:
                await page.evaluate(
                    "url => fetch(url, {method: 'POST', mode: 'no-cors', credentials: 'include',"
                    " body: 'x=1', headers: {'Content-Type': 'text/plain'}})",
                    f"{served.url}{path}",
                )
            assert (await caught.value).status == 403, path

    # Nothing happened: the alert still escalates, the device is not revoked, nothing audited.
    assert (await system.store.get_alert(alert_id)).state == "notifying"
    assert (await system.store.get_device(device.device_id)).state is DeviceState.ACTIVE
    assert await system.store.list_audit(action="alert.acknowledge", target_id=alert_id) == []
    metrics = system.dispatcher.metrics.http_refused.labels("cross_site")._value.get()
    assert metrics >= 4

    # The console's own button still works (same origin).
    await console.click("#act-acknowledge")
    await asyncio.to_thread(device.wait_downlink, "acknowledged", alert_id)
    await state_is(system, alert_id, "acknowledged")
    await expect(console.locator("#d-state")).to_have_text("prise en charge", timeout=5000)
    await context.close()
