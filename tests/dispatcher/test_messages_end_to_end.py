"""Each row of the audience table as the police receive it, and cancels the device is told about.

Real Mosquitto, the dispatcher, the Twilio sandbox over HTTP (unmodified twilio
library), signed simulated devices. SQLite only: the store's part is covered
for both stores by tests/store and tests/dispatcher/test_end_to_end.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker_config.runner import DevBroker
from dispatcher.alerting import escalation as esc
from dispatcher.alerting.gsm7 import to_gsm7
from dispatcher.alerting.texts import DRILL_PREFIX
from dispatcher.domain import DeviceKind
from protocol.topics import UplinkKind
from tests.support.system import HERAULT, System, running_system

CHEF_DE_POSTE = "+33639980101"  # commissariat de Montpellier, priority 1, sms + voice
OFFICIER_DE_QUART = "+33465710101"  # commissariat de Montpellier, priority 1, voice only
OPERATOR = "Mme Roux (opérateur Vigie)"


@pytest.fixture
async def system(broker: DevBroker, tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(broker, tmp_path) as s:
        yield s


@pytest.fixture
async def fast_system(broker: DevBroker, tmp_path: Path) -> AsyncIterator[System]:
    """The shortest acknowledgement timeout the format allows: the next tier comes after 5 s."""
    fast = tmp_path / "herault-fast.yaml"
    fast.write_text(HERAULT.read_text().replace("ack_timeout_s: 120", "ack_timeout_s: 5"))
    async with running_system(broker, tmp_path, directory=fast) as s:
        yield s


async def alert_from_boutonnet(system: System) -> tuple[object, str]:
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    await system.sandbox.wait_for(
        lambda: bool(system.sent_to(CHEF_DE_POSTE, "message") and system.sent_to(OFFICIER_DE_QUART, "call")),
        within=10,
    )
    return device, alert_id


async def nth(system: System, number: str, kind: str, n: int) -> str:
    """The n-th (1-based) SMS body or call TwiML the provider received for ``number``."""
    await system.sandbox.wait_for(lambda: len(system.sent_to(number, kind)) >= n, within=15)
    return system.sent_to(number, kind)[n - 1]


async def test_a_cancel_stands_down_the_voice_only_desk_with_its_own_script(system: System) -> None:
    device, alert_id = await alert_from_boutonnet(system)
    await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=alert_id, pin="2468")  # type: ignore[attr-defined]
    call = await nth(system, OFFICIER_DE_QUART, "call", 2)
    assert "fin d'alerte" in call and "annulée par le praticien" in call
    assert "<Gather" not in call and "Appuyez" not in call and "aide urgente" not in call
    sms = await nth(system, CHEF_DE_POSTE, "message", 2)
    assert sms.startswith("VIGIE - FIN D'ALERTE") and "Repondez 1" not in sms


async def test_after_a_duress_every_message_says_the_danger_is_confirmed(fast_system: System) -> None:
    system = fast_system
    device, alert_id = await alert_from_boutonnet(system)
    await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=alert_id, pin="1357")  # type: ignore[attr-defined]
    notice = await nth(system, CHEF_DE_POSTE, "message", 2)
    call = await nth(system, OFFICIER_DE_QUART, "call", 2)
    assert "DANGER CONFIRME" in notice and "le danger est confirmé" in call and "<Gather" in call
    await system.dispatcher.delivery.wait_idle()
    kinds = ("message", "call")
    seen = {(r.to, r.kind) for r in system.sandbox.requests if r.kind in kinds}
    before = {key: len(system.sent_to(*key)) for key in seen}

    # The next tier (after the 5 s timeout) hears it too, on every channel.
    async def next_tier() -> bool:
        rows = await system.store.notifications_for(alert_id)
        return any(n.tier == 1 and n.provider_sid for n in rows)

    await system.until(next_tier, within=20)
    await system.dispatcher.delivery.wait_idle()
    later = [n for n in await system.store.notifications_for(alert_id) if n.tier == 1]
    assert later and all(n.duress for n in later)
    for n in later:
        key = (n.phone, "message" if n.channel == "sms" else "call")
        for text in system.sent_to(*key)[before.get(key, 0) :]:
            assert "DANGER CONFIRME" in text or "le danger est confirmé" in text
            assert "annulee" not in text.lower() and "fausse alerte" not in text.lower()


async def test_an_operators_false_alarm_names_the_operator(system: System) -> None:
    _, alert_id = await alert_from_boutonnet(system)
    await system.dispatcher.engine.handle(alert_id, esc.MarkedFalseAlarm(by=OPERATOR))
    sms = await nth(system, CHEF_DE_POSTE, "message", 2)
    assert "fausse alerte" in sms and "Mme Roux" in sms and "praticien" not in sms
    call = await nth(system, OFFICIER_DE_QUART, "call", 2)
    assert "déclarée par Mme Roux" in call and "<Gather" not in call


async def test_resolved_and_acknowledged_reach_the_others(system: System) -> None:
    _, alert_id = await alert_from_boutonnet(system)
    await system.dispatcher.engine.handle(alert_id, esc.Acknowledged(by=OPERATOR, via="console"))
    ack = await nth(system, CHEF_DE_POSTE, "message", 2)
    assert "prise en charge par Mme Roux" in ack
    await system.dispatcher.engine.handle(alert_id, esc.Resolved(by=OPERATOR))
    closed = await nth(system, CHEF_DE_POSTE, "message", 3)
    assert closed.startswith("VIGIE - INCIDENT CLOS") and "Mme Roux" in closed
    call = await nth(system, OFFICIER_DE_QUART, "call", 2)  # no ack notice by voice; the closing, yes
    assert "clos par Mme Roux" in call and "<Gather" not in call


async def test_a_wrong_pin_is_refused_counted_and_told_to_the_device(system: System) -> None:
    device, alert_id = await alert_from_boutonnet(system)
    cancel_id = await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=alert_id, pin="0000")  # type: ignore[attr-defined]
    await asyncio.to_thread(device.wait_downlink, "received", cancel_id)  # type: ignore[attr-defined]
    refused = await asyncio.to_thread(device.wait_downlink, "cancel_refused", alert_id)  # type: ignore[attr-defined]
    assert refused.ref == alert_id
    record = await system.store.get_alert(alert_id)
    assert record.state == "notifying" and not (record.escalation or {}).get("duress")
    assert not [d for d in device.downlinks if d.type == "cancelled"]  # type: ignore[attr-defined]
    metrics = system.dispatcher.metrics.render().decode()
    assert 'vigie_cancels_refused_total{reason="wrong_pin"} 1.0' in metrics


async def test_a_site_only_desk_button_is_cancelled_with_the_staff_pin(system: System) -> None:
    desk = await system.add_device("btn-accueil-mmg", site="mmg-saint-gely", kind=DeviceKind.BUTTON)
    alert_id = await asyncio.to_thread(desk.alert)
    await asyncio.to_thread(desk.wait_downlink, "received", alert_id)
    await asyncio.to_thread(desk.send, UplinkKind.CANCEL, alert_id=alert_id, pin="8642")
    await asyncio.to_thread(desk.wait_downlink, "cancelled", alert_id)

    async def cancelled() -> bool:
        return (await system.store.get_alert(alert_id)).state == "cancelled"

    await system.until(cancelled)


@pytest.fixture
async def drill_system(broker: DevBroker, tmp_path: Path) -> AsyncIterator[System]:
    """The Hérault convention with its explicit consent to drills."""
    drills = tmp_path / "herault-drills.yaml"
    consent = '    departement: "34"\n    drills: true\n'
    drills.write_text(HERAULT.read_text().replace('    departement: "34"\n', consent, 1))
    async with running_system(broker, tmp_path, directory=drills) as s:
        yield s


async def test_a_drill_runs_the_real_chain_and_every_request_says_so(drill_system: System) -> None:
    system = drill_system
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    drill_id = await asyncio.to_thread(device.send, UplinkKind.TEST, gesture="hold")
    await asyncio.to_thread(device.wait_downlink, "received", drill_id)
    call = await nth(system, OFFICIER_DE_QUART, "call", 1)
    sms = await nth(system, CHEF_DE_POSTE, "message", 1)
    assert sms.startswith(to_gsm7(DRILL_PREFIX)) and "Repondez 1" in sms
    assert f"{DRILL_PREFIX}. Alerte Vigie." in call and "<Gather" in call
    record = await system.store.get_alert(drill_id)
    assert record.kind == "drill" and record.state == "notifying"
    # Its stand-down says so too, and every request the provider got for it carries the prefix.
    await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=drill_id, pin="2468")
    await nth(system, OFFICIER_DE_QUART, "call", 2)
    await system.dispatcher.delivery.wait_idle()
    bodies = [
        r.params.get("Body") or r.params.get("Twiml", "")
        for r in system.sandbox.requests
        if r.kind in ("message", "call")
    ]
    assert len(bodies) >= 5
    assert all(to_gsm7(DRILL_PREFIX) in b or DRILL_PREFIX in b for b in bodies)
    timeline = [e for e in await system.store.alert_events(drill_id) if e["kind"] == "drill"]
    assert timeline and timeline[0]["detail"]["consent"] is True


async def test_without_consent_a_test_stays_practitioners_only_and_the_timeline_says_why(
    system: System,
) -> None:
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    test_id = await asyncio.to_thread(device.send, UplinkKind.TEST, gesture="hold")
    await asyncio.to_thread(device.wait_downlink, "acknowledged", test_id)
    await system.dispatcher.delivery.wait_idle()
    record = await system.store.get_alert(test_id)
    assert record.kind == "test"
    assert {r.to for r in system.sandbox.requests if r.kind in ("message", "call")} <= {"+33639980150"}
    drill = [e for e in await system.store.alert_events(test_id) if e["kind"] == "drill"]
    assert drill and drill[0]["detail"]["consent"] is False
