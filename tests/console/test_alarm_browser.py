"""In headless Chromium: the banner, sound and flash come back for a duress after an acknowledgement.

The operator takes the alert (the banner goes), then the practitioner is forced
to cancel with her duress PIN: the alert was already acknowledged, yet the
console must ring again until an operator takes it in hand.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from playwright.async_api import Browser, expect

from dispatcher.alerting.engine import ALARM_PROVIDER_DOWN, PROVIDER_BACK, PROVIDER_TOPIC
from dispatcher.fleet.alert_takers import NO_TAKER, takers_back_text
from dispatcher.fleet.presence import TOPIC as TAKERS_TOPIC
from protocol.topics import UplinkKind
from tests.api.conftest import Served
from tests.console.test_browser import ARTIFACTS, browser, chromium, login  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser
ATTENTION = re.compile(r"\battention\b")


async def test_a_duress_after_an_acknowledgement_rings_the_console_again(
    browser: Browser,  # noqa: F811
    served: Served,
) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await login(page, served, "op-herault")
    device = await served.system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    item = page.locator(f'li.alert[data-id="{alert_id}"]')
    await expect(page.locator("#banner")).to_be_visible(timeout=5000)
    await page.click("#act-acknowledge")
    await expect(page.locator("#d-state")).to_have_text("prise en charge", timeout=5000)
    await expect(page.locator("#banner")).to_be_hidden()
    await expect(item).not_to_have_class(ATTENTION)
    assert not (await page.title()).startswith("(")

    await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=alert_id, pin="1357")
    await asyncio.to_thread(device.wait_downlink, "cancelled", alert_id)  # the device sees a cancel
    banner = page.locator("#banner")
    await expect(banner).to_be_visible(timeout=5000)
    await expect(banner).to_contain_text("ANNULATION SOUS CONTRAINTE")
    await expect(item).to_have_class(ATTENTION)  # the flashing row
    assert (await page.title()).startswith("(1) ALERTE")  # the beep runs while the title counts alerts
    await expect(page.locator("#d-timeline")).to_contain_text("Code de contrainte", timeout=5000)
    await page.screenshot(path=str(ARTIFACTS / "console-duress-after-ack.png"))

    take_over = page.locator("#act-take-over")
    await expect(take_over).to_be_enabled()
    await take_over.click()
    await expect(banner).to_be_hidden(timeout=5000)
    assert errors == []


async def test_the_console_says_when_no_alert_can_arrive_and_when_they_can_again(
    browser: Browser,  # noqa: F811
    served: Served,
) -> None:
    """The broker out of reach: no alert can come in, so the quiet console must not look reassuring."""
    page = await browser.new_page(viewport={"width": 1920, "height": 1080})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await login(page, served, "op-herault")
    system_banner = page.locator("#system-banner")
    await expect(system_banner).to_be_hidden()

    await asyncio.to_thread(served.system.broker.stop)
    # The alarm's grace (15 s by default) and one 2-s pass, on a loaded machine.
    await expect(system_banner).to_be_visible(timeout=40_000)
    await expect(system_banner).to_have_text(f"ALERTE SYSTÈME — {NO_TAKER}")
    await expect(page.locator("#events li.flag").first).to_contain_text(NO_TAKER)
    await page.screenshot(path=str(ARTIFACTS / "console-no-alert-taker.png"))
    await page.reload()  # a console opened meanwhile shows it from its first snapshot
    await expect(page.locator("#conn")).to_have_text("en direct", timeout=5000)
    await expect(system_banner).to_have_text(f"ALERTE SYSTÈME — {NO_TAKER}")
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.screenshot(path=str(ARTIFACTS / "console-no-alert-taker-390.png"))

    await asyncio.to_thread(served.system.broker.start)
    await expect(system_banner).to_be_hidden(timeout=40_000)  # the bridge's reconnection back-off
    await expect(page.locator("#events li").first).to_contain_text("alertes des balises de nouveau reçues")
    assert errors == []


async def test_the_console_applies_every_message_of_a_batch_frame(
    browser: Browser,  # noqa: F811
    served: Served,
) -> None:
    """Two system alarms raised in one turn reach the feed together and travel as one frame
    (dispatcher/web/console/frames.py): the page shows both, then clears both."""
    page = await browser.new_page(viewport={"width": 1920, "height": 1080})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    batches: list[str | bytes] = []

    def keep_batches(payload: str | bytes) -> None:
        if json.loads(payload)["type"] == "batch":
            batches.append(payload)

    page.on("websocket", lambda ws: ws.on("framereceived", keep_batches))
    await login(page, served, "op-herault")
    system_banner = page.locator("#system-banner")
    bus = served.system.dispatcher.bus
    down = f"{ALARM_PROVIDER_DOWN} (20003: fournisseur de test)"
    # Published as the presence watch and the engine do, in one turn of the loop.
    bus.publish("operator_alarm", alert_id=None, reason=NO_TAKER, topic=TAKERS_TOPIC)
    bus.publish("operator_alarm", alert_id=None, reason=down, topic=PROVIDER_TOPIC)
    await expect(system_banner).to_have_text(f"ALERTE SYSTÈME — {NO_TAKER} · ALERTE SYSTÈME — {down}")

    bus.publish("system", topic=TAKERS_TOPIC, cleared=takers_back_text(["vigie-1"]))
    bus.publish("system", topic=PROVIDER_TOPIC, cleared=PROVIDER_BACK)
    await expect(system_banner).to_be_hidden()
    assert len(batches) == 2, "each pair went out as one frame"
    assert errors == []
