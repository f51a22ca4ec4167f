"""The responder link of a real alert SMS, over HTTP (the browser tests are test_responder_browser.py).

A real signed alert over MQTT, the SMS captured at the provider sandbox, the
link it carries opened on the dispatcher: the page, its JSON, both buttons,
expiry after the alert closed + the grace delay, forged and foreign tokens,
the per-address rate limit, cross-site POSTs, and what the page says of a duress.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from broker_config.runner import DevBroker
from dispatcher.alerting.texts import DURESS_PAGE
from dispatcher.audit import RESPONDER_ACKNOWLEDGE, RESPONDER_ON_SITE, RESPONDER_OPEN, RESPONDER_REFUSED
from dispatcher.web.responder.routes import NOT_FOUND_BODY
from protocol.topics import UplinkKind
from tests.api.conftest import PASSWORD, add_users, serving
from tests.responder.conftest import CHEF, GRACE_S, Responder, resolve_as_operator, responder_settings
from tests.support.system import FALLBACK_NUMBER, running_system

CONTACT = "csp-mtp-chef-de-poste"
# Every number of the directory but hers: none may appear on the page.
OTHER_NUMBERS = ("+33639980101", "+33465710101", "+33639980102", "+33639980103", FALLBACK_NUMBER)


async def alert(r: Responder, device_id: str = "btn-r1") -> tuple[Any, str, str]:
    """A real alert from Dr Fabre's cabinet; returns the device, the alert id and the chef's link path."""
    device = r.system.devices.get(device_id) or await r.system.add_device(
        device_id, practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id)
    return device, alert_id, await r.link_sent_to(CHEF, alert_id)


async def audit(r: Responder, action: str, alert_id: str | None = None) -> list[Any]:
    return await r.system.store.list_audit(action=action, target_id=alert_id)


async def test_the_sms_link_opens_the_page_acknowledges_like_a_1_and_records_on_site(
    responder: Responder,
) -> None:
    device, alert_id, path = await alert(responder)
    async with responder.client() as http:
        page = await http.get(path)
        assert page.status_code == 200, page.text
        assert "Je prends en charge" in page.text and "Sur place" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        (opened,) = await audit(responder, RESPONDER_OPEN, alert_id)
        assert opened.username == CONTACT and opened.ip == "127.0.0.1"

        state = (await http.get(f"{path}/etat")).json()
        assert state["who"]["name"] == "Dr Claire Fabre" and state["who"]["phone"] == "+33639980150"
        assert "45 Rue du Faubourg Boutonnet" in state["position"]["address"]["label"]
        assert state["position"]["map_url"].startswith("https://www.openstreetmap.org/?mlat=43.62153")
        assert state["state"] == {
            "code": "notifying",
            "open": True,
            "acked_by": None,
            "acked_by_you": False,
            "closed_by": None,
            "duress": None,
        }
        assert state["you"].startswith("Chef de poste")

        acked = await http.post(f"{path}/prise-en-charge")
        assert acked.status_code == 200 and acked.json()["state"]["acked_by_you"]
        record = await responder.system.store.get_alert(alert_id)
        assert record.state == "acknowledged" and (record.escalation or {})["acked_by"] == CONTACT
        await asyncio.to_thread(device.wait_downlink, "acknowledged", alert_id)  # her second vibration
        assert (await audit(responder, RESPONDER_ACKNOWLEDGE, alert_id))[0].detail["changed"] is True

        on_site = (await http.post(f"{path}/sur-place")).json()
        assert on_site["on_site_by_you"] and on_site["on_site"][0]["by"].startswith("Chef de poste")
        again = await http.post(f"{path}/sur-place")  # once is enough
        assert len(again.json()["on_site"]) == 1
        assert len(await audit(responder, RESPONDER_ON_SITE, alert_id)) == 2
        for text in (page.text, str(state), str(on_site)):
            assert not any(number in text for number in OTHER_NUMBERS)

        operator = responder.client()
        async with operator:
            login = {"username": "op-herault", "password": PASSWORD}
            assert (await operator.post("/api/auth/login", json=login)).status_code == 200
            timeline = [e["text"] for e in (await operator.get(f"/api/alerts/{alert_id}")).json()["timeline"]]
        assert any(
            t.startswith("Prise en charge par Chef de poste") and "lien de suivi" in t for t in timeline
        )
        assert any(t.startswith("Sur place : Chef de poste") for t in timeline)


async def test_the_link_stops_opening_once_the_alert_closed_plus_the_grace_delay(
    responder: Responder,
) -> None:
    _, alert_id, path = await alert(responder)
    closed_at = time.monotonic()  # before the request: the server closes it at some point during it
    await resolve_as_operator(responder, alert_id)
    async with responder.client() as http:
        after = await http.get(f"{path}/etat")
        assert after.status_code == 200, "a closed alert's link still opens during the grace delay"
        assert after.json()["state"]["open"] is False
        refused_ack = (await http.post(f"{path}/sur-place")).json()
        assert refused_ack["on_site"] == []  # nothing recorded on a closed alert

        deadline = closed_at + GRACE_S + 10
        while (response := await http.get(path)).status_code == 200:
            assert time.monotonic() < deadline, "the link never expired"
            await asyncio.sleep(0.1)
        assert time.monotonic() - closed_at >= GRACE_S - 0.2
        assert response.status_code == 404 and response.text == NOT_FOUND_BODY
    (refused,) = await audit(responder, RESPONDER_REFUSED, alert_id)
    assert refused.detail["reason"] == "expiré" and refused.username is None


async def test_forged_malformed_and_foreign_tokens_get_one_neutral_404_each_audited(
    responder: Responder,
) -> None:
    _, first, first_path = await alert(responder, "btn-r1")
    await resolve_as_operator(responder, first, "false-alarm")
    async with responder.client() as http:
        _, second, second_path = await alert(responder, "btn-r2")
        assert second_path != first_path
        assert (await http.get(second_path)).status_code == 200  # the open alert's own link works
        forged = f"/r/{secrets.token_urlsafe(16)}"

        async def expired() -> bool:
            return (await http.get(f"{first_path}/etat")).status_code == 404

        deadline = time.monotonic() + GRACE_S + 10
        while not await expired():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        answers = [
            await http.get(forged),
            await http.get(f"{forged}/etat"),
            await http.post(f"{first_path}/prise-en-charge"),  # the first alert's link, on any alert
            await http.get("/r/not-a-token!"),
        ]
        assert {a.status_code for a in answers} == {404}
        assert {a.text for a in answers} == {NOT_FOUND_BODY}
    record = await responder.system.store.get_alert(second)
    assert record.state == "notifying", "no foreign or forged link acknowledged anything"
    reasons = [e.detail["reason"] for e in await audit(responder, RESPONDER_REFUSED)]
    assert reasons.count("inconnu") == 2 and "expiré" in reasons and "malformé" in reasons


async def test_misses_from_one_address_are_rate_limited_before_any_lookup(responder: Responder) -> None:
    _, _, path = await alert(responder)
    async with responder.client() as http:
        statuses = [(await http.get(f"/r/{secrets.token_urlsafe(16)}")).status_code for _ in range(5)]
        assert statuses == [404] * 5
        assert (await http.get(f"/r/{secrets.token_urlsafe(16)}")).status_code == 429
        assert (await http.get(path)).status_code == 429, "no lookup at all once the address is limited"
    assert (
        len(await audit(responder, RESPONDER_REFUSED)) == 5
    )  # refusals by the limit are counted, not audited


async def test_behind_a_trusted_proxy_each_client_address_has_its_own_limit(
    broker: DevBroker, tmp_path: Path
) -> None:
    async with running_system(broker, tmp_path) as system:
        await add_users(system)
        async with serving(system, trusted_proxies=["127.0.0.1"], responder=responder_settings()) as url:
            r = Responder(system, url)
            _, alert_id, path = await alert(r)
            guesser, officer = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.20"}
            async with r.client() as http:
                for _ in range(5):
                    assert (
                        await http.get(f"/r/{secrets.token_urlsafe(16)}", headers=guesser)
                    ).status_code == 404
                assert (await http.get(path, headers=guesser)).status_code == 429
                assert (
                    await http.get(path, headers=officer)
                ).status_code == 200  # another client, behind the same proxy
        refused = await system.store.list_audit(action=RESPONDER_REFUSED)
        assert {e.ip for e in refused} == {"203.0.113.7"}
        (opened,) = await system.store.list_audit(action=RESPONDER_OPEN, target_id=alert_id)
        assert opened.ip == "198.51.100.20"


async def test_a_cross_site_post_cannot_acknowledge(responder: Responder) -> None:
    _, alert_id, path = await alert(responder)
    async with responder.client() as http:
        forged = await http.post(
            f"{path}/prise-en-charge",
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert forged.status_code == 403
    assert (await responder.system.store.get_alert(alert_id)).state == "notifying"


@pytest.mark.parametrize("pin", ["2468", "1357"])
async def test_the_page_says_a_duress_exactly_when_the_sms_to_the_contact_does(
    responder: Responder, pin: str
) -> None:
    device, alert_id, path = await alert(responder)
    await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=alert_id, pin=pin)
    await asyncio.to_thread(device.wait_downlink, "cancelled", alert_id)
    duress = pin == "1357"

    def told() -> list[str]:
        bodies = responder.system.sent_to(CHEF, "message")
        return [b for b in bodies if "DANGER CONFIRME" in b or "FIN D'ALERTE" in b]

    await responder.system.sandbox.wait_for(lambda: bool(told()), 10)
    assert ("DANGER CONFIRME" in told()[0]) is duress
    async with responder.client() as http:
        state = (await http.get(f"{path}/etat")).json()["state"]
    if duress:
        assert state["duress"] == DURESS_PAGE and state["open"] and state["code"] == "duress"
    else:
        assert state["duress"] is None and state["code"] == "cancelled" and not state["open"]
