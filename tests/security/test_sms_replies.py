"""Findings 4 and 6: an SMS "1" acknowledged the wrong alert; a replayed signed SMS acknowledged another.

Two open alerts notify the commissariat's chef de poste. Before the fix his
"1" meant for A acknowledged B (the newest), A could never be acknowledged
by SMS, and re-posting a captured signed webhook (same MessageSid, same
signature) acknowledged a later alert.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import httpx
import pytest
from twilio.request_validator import RequestValidator

from dispatcher.alerting.notifier import SMS_WEBHOOK_PATH
from dispatcher.alerting.replycodes import parse_reply, reply_code
from dispatcher.alerting.texts import local_time
from sandbox.fleet import SimulatedDevice
from tests.api.conftest import Api
from tests.security.web import CHEF_DE_POSTE, raise_alert, state_is, texted
from tests.support.system import FROM_NUMBER, System

pytestmark = pytest.mark.attacks


def _answer(twiml: str) -> str:
    """The text of the SMS the dispatcher answers with (empty when it answers nothing)."""
    message = ET.fromstring(twiml).find("Message")
    return "" if message is None or message.text is None else message.text


async def _two_open_alerts(system: System) -> tuple[tuple[SimulatedDevice, str], tuple[SimulatedDevice, str]]:
    first = await raise_alert(system, "btn-boutonnet")
    second = await raise_alert(system, "btn-boutonnet-2")
    await texted(system, CHEF_DE_POSTE, first[1])
    await texted(system, CHEF_DE_POSTE, second[1])
    return first, second


async def _hhmm(system: System, alert_id: str) -> str:
    return local_time((await system.store.get_alert(alert_id)).received_at)


async def test_a_reply_acknowledges_the_alert_it_names_and_never_guesses(api: Api) -> None:
    system = api.system
    (device_a, alert_a), (device_b, alert_b) = await _two_open_alerts(system)
    code_a, code_b = reply_code(alert_a), reply_code(alert_b)
    assert code_a != code_b  # (2,400 codes: a shared one is answered as ambiguous, see smsreplies.py)

    # A bare "1" with two alerts open: nothing acknowledged, the answer lists the codes (newest first).
    bare = await system.sandbox.reply(CHEF_DE_POSTE, "1")
    assert _answer(bare.body) == (
        "Vigie : 2 alertes en cours, rien n'est pris en charge. Repondez "
        f"1 {code_b} (Dr Claire Fabre, {await _hhmm(system, alert_b)}) ou "
        f"1 {code_a} (Dr Claire Fabre, {await _hhmm(system, alert_a)})."
    )
    assert (await system.store.get_alert(alert_a)).state == "notifying"
    assert (await system.store.get_alert(alert_b)).state == "notifying"

    # "1 <code of A>" acknowledges A — exactly A; B keeps escalating.
    named = await system.sandbox.reply(CHEF_DE_POSTE, f"1 {code_a.lower()}")
    assert _answer(named.body) == f"Vigie : prise en charge de l'alerte {code_a} enregistree. Merci."
    await asyncio.to_thread(device_a.wait_downlink, "acknowledged", alert_a)
    await state_is(system, alert_a, "acknowledged")
    assert (await system.store.get_alert(alert_b)).state == "notifying"
    assert not [d for d in device_b.downlinks if d.type == "acknowledged"]

    # A code that names no open alert of this phone: nothing, and the codes to use.
    wrong = await system.sandbox.reply(CHEF_DE_POSTE, "1 Z99" if code_b != "Z99" else "1 Y98")
    assert _answer(wrong.body).startswith("Vigie : aucune alerte en cours avec le code")
    assert f"1 {code_b} (Dr Claire Fabre" in _answer(wrong.body)
    assert (await system.store.get_alert(alert_b)).state == "notifying"

    # Now only B waits for this phone: a bare "1" acknowledges it.
    last = await system.sandbox.reply(CHEF_DE_POSTE, "1")
    assert _answer(last.body) == f"Vigie : prise en charge de l'alerte {code_b} enregistree. Merci."
    await state_is(system, alert_b, "acknowledged")

    # A phone that was never notified acknowledges nothing.
    stranger = await system.sandbox.reply("+33639989999", "1", to=FROM_NUMBER)
    assert _answer(stranger.body) == "Vigie : aucune alerte en cours pour ce numero."


async def test_a_replayed_signed_sms_webhook_does_nothing(api: Api) -> None:
    system = api.system
    _, alert_a = await raise_alert(system, "btn-boutonnet")
    await texted(system, CHEF_DE_POSTE, alert_a)
    # The captured request: Twilio's exact parameters and signature (what a proxy log would hold).
    params = {
        "AccountSid": system.sandbox.account_sid,
        "Body": "1",
        "From": CHEF_DE_POSTE,
        "MessageSid": "SM" + "7e" * 16,
        "To": FROM_NUMBER,
    }
    url = system.public_url + SMS_WEBHOOK_PATH
    signature = RequestValidator(system.sandbox.auth_token).compute_signature(url, params)
    headers = {"X-Twilio-Signature": signature}
    async with httpx.AsyncClient() as http:
        first = await http.post(url, data=params, headers=headers)
        assert first.status_code == 200
        acknowledged = f"Vigie : prise en charge de l'alerte {reply_code(alert_a)} enregistree. Merci."
        assert _answer(first.text) == acknowledged
        await state_is(system, alert_a, "acknowledged")

        # A later alert notifies the same phone; the captured request is posted again.
        device_b, alert_b = await raise_alert(system, "btn-boutonnet-2")
        await texted(system, CHEF_DE_POSTE, alert_b)
        replay = await http.post(url, data=params, headers=headers)
        assert replay.status_code == 200
        assert _answer(replay.text) == ""  # nothing answered, nothing done
    assert (await system.store.get_alert(alert_b)).state == "notifying"
    assert not [d for d in device_b.downlinks if d.type == "acknowledged"]

    # The genuine reply (a new MessageSid) still acknowledges B.
    genuine = await system.sandbox.reply(CHEF_DE_POSTE, f"1 {reply_code(alert_b)}")
    assert "enregistree" in _answer(genuine.body)
    await state_is(system, alert_b, "acknowledged")


def test_reply_forms_golden() -> None:
    """What responders may type, and what it means (docs/lifecycle.md § SMS replies)."""
    table = {
        "1": (True, None),
        "1 K42": (True, "K42"),
        "1k42": (True, "K42"),
        " 1 - k 4 2 ": (True, "K42"),
        "1 K42 merci": (True, "K42"),
        "1 ok": (True, None),
        "1.": (True, None),
        "1 K420": (True, "K420"),  # a mistyped code names nothing: never the bare-"1" rule
        "12": (False, None),
        "K42": (False, None),
        "oui": (False, None),
    }
    for body, (acknowledges, code) in table.items():
        reply = parse_reply(body)
        assert (reply.acknowledges, reply.code) == (acknowledges, code), body
    # Codes are a function of the alert id: letter (no I/O) + two digits.
    assert [reply_code(i) for i in ("a1", "a2", "00000000-0000-4000-8000-000000000000")] == GOLDEN_CODES


GOLDEN_CODES = ["A47", "D61", "J96"]
