"""The dispatcher end to end: real Mosquitto, the sandbox provider over HTTP
(unmodified twilio library), webhooks over HTTP, signed simulated devices.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from broker_config.runner import DevBroker
from dispatcher.alerting.responder_links import hash_token
from dispatcher.domain import Address, GeoPoint, HomeVisit
from dispatcher.web.api import views
from protocol.codec import encode_uplink
from protocol.messages import Location
from protocol.topics import UplinkKind
from sandbox.twilio_resources import NumberBehaviour
from sandbox.twilio_state import RecordedWebhook
from tests.support.postgres import PostgresCluster, fresh_database, postgres_cluster, stores_under_test  # noqa: F401
from tests.support.system import HERAULT, System, running_system

CHEF_DE_POSTE = "+33639980101"  # commissariat de Montpellier, priority 1, sms + voice
OFFICIER_DE_QUART = "+33465710101"  # commissariat de Montpellier, priority 1, voice only
REFERENT_SSJ = "+33639980102"  # priority 2 (tier 2 only)
CALLBACKS_SAFETY_S = 60.0


@pytest.fixture(params=stores_under_test())
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every test runs on each store: SQLite, and PostgreSQL when installed ($VIGIE_TEST_STORES)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vigie.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    with fresh_database(cluster) as url:
        yield url


@pytest.fixture
async def system(broker: DevBroker, tmp_path: Path, store_url: str) -> AsyncIterator[System]:
    async with running_system(broker, tmp_path, database_url=store_url) as s:
        yield s


@pytest.fixture
async def patient_system(broker: DevBroker, tmp_path: Path, store_url: str) -> AsyncIterator[System]:
    """Same system, waiting 30 s for the provider's answer: a late answer is still an answer."""
    async with running_system(broker, tmp_path, database_url=store_url, provider_timeout_s=30.0) as s:
        yield s


@pytest.fixture
async def fast_system(broker: DevBroker, tmp_path: Path, store_url: str) -> AsyncIterator[System]:
    """Same directory, with the shortest acknowledgement timeout the format allows."""
    fast = tmp_path / "herault-fast.yaml"
    fast.write_text(HERAULT.read_text().replace("ack_timeout_s: 120", "ack_timeout_s: 5"))
    async with running_system(broker, tmp_path, directory=fast, database_url=store_url) as s:
        yield s


async def state_of(system: System, alert_id: str, expected: str, within: float = 10.0) -> None:
    async def reached() -> bool:
        return (await system.store.get_alert(alert_id)).state == expected

    await system.until(reached, within)


async def test_police_zone_cabinet_alert_reaches_the_commissariat_tier_1(system: System) -> None:
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)

    await asyncio.to_thread(device.wait_downlink, "received", alert_id)
    await system.sandbox.wait_for(
        lambda: (
            bool(system.sent_to(CHEF_DE_POSTE, "message"))
            and bool(system.sent_to(CHEF_DE_POSTE, "call"))
            and bool(system.sent_to(OFFICIER_DE_QUART, "call"))
        ),
        within=10,
    )
    sms = system.sent_to(CHEF_DE_POSTE, "message")[0]
    assert "Fabre" in sms and "45 Rue du Faubourg Boutonnet" in sms and "1" in sms
    assert "RPPS" in sms or "10001234567" in sms
    call = system.sent_to(OFFICIER_DE_QUART, "call")[0]
    assert 'language="fr-FR"' in call and "<Gather" in call
    assert system.sent_to(REFERENT_SSJ, "message") == []  # tier 2 only
    assert system.sent_to(OFFICIER_DE_QUART, "message") == []  # a landline gets no SMS


async def links_stored_for(store_url: str, alert_id: str) -> int:
    """Responder links stored for ``alert_id`` (no store method lists them: read the table)."""
    sql = "SELECT count(*) FROM responder_links WHERE alert_id=%s"
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            return int(db.execute(sql % "?", (alert_id,)).fetchone()[0])
    conn = await asyncpg.connect(store_url)
    try:
        return int(await conn.fetchval(sql % "$1", alert_id))
    finally:
        await conn.close()


async def test_the_alert_sms_carries_the_link_written_with_the_alert(system: System, store_url: str) -> None:
    """The first tier's sends start right after the alert's commit: the SMS must use the link
    committed with the alert, not mint and commit another one on its way (one more fsync)."""
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    await system.sandbox.wait_for(lambda: bool(system.sent_to(CHEF_DE_POSTE, "message")), within=10)

    found = re.search(r"/r/([A-Za-z0-9_-]+)", system.sent_to(CHEF_DE_POSTE, "message")[0])
    assert found is not None, "the alert SMS carries a responder link"
    assert await system.store.responder_link(hash_token(found.group(1))) is not None
    assert await links_stored_for(store_url, alert_id) == 1, "one link for the chef de poste, the alert's"


async def test_provider_status_callbacks_reach_the_alert_timeline(system: System) -> None:
    device = await system.add_device("btn-status", practitioner="dr-claire-fabre", site="cabinet-boutonnet")
    alert_id = await asyncio.to_thread(device.alert)

    async def all_accepted() -> bool:
        rows = await system.store.notifications_for(alert_id)
        return bool(rows) and all(n.provider_sid for n in rows)

    # The sandbox calls back like Twilio (sent, delivered; initiated ... completed), signed,
    # one status after the other's answer; the dispatcher answers once the status is stored.
    # So: wait for the provider's side to be over, then the timeline must already show it.
    # The waits are on events; their bound is a safety net for a loaded machine, not a goal.
    async with asyncio.timeout(CALLBACKS_SAFETY_S):
        await system.until(all_accepted, within=CALLBACKS_SAFETY_S)
        rows = await system.store.notifications_for(alert_id)
        final = {n.provider_sid: "delivered" if n.channel == "sms" else "completed" for n in rows}
        assert {n.channel for n in rows} == {"sms", "voice"}

        def final_statuses_answered() -> list[RecordedWebhook]:
            answered = [w for w in system.sandbox.webhooks if w.kind == "status" and w.status is not None]
            said = {(w.params.get("MessageSid") or w.params.get("CallSid"), _status(w)) for w in answered}
            return answered if set(final.items()) <= said else []

        await system.sandbox.wait_for(lambda: bool(final_statuses_answered()), within=CALLBACKS_SAFETY_S)
    assert all(w.status == 200 for w in final_statuses_answered())
    stored = {n.provider_sid: n.status for n in await system.store.notifications_for(alert_id)}
    assert stored == final


def _status(webhook: RecordedWebhook) -> str | None:
    return webhook.params.get("MessageStatus") or webhook.params.get("CallStatus")


# Past the 3 s a status callback waits for the send's own outcome; well within patient_system's
# 30 s provider timeout, so that a loaded machine cannot turn the late answer into a timeout.
LATE_ANSWER_MS = 4200


async def test_a_send_answered_after_its_callbacks_keeps_the_status_they_brought(
    patient_system: System,
) -> None:
    """The provider answers our request (its SID, 'queued') only after its callbacks said
    'delivered' (SMS) and 'in-progress'/'completed' (call): the row and the timeline must
    still say so, not 'queued' until the reconciliation five minutes later."""
    system = patient_system
    system.sandbox.set_number(CHEF_DE_POSTE, NumberBehaviour(answer_late_ms=LATE_ANSWER_MS))
    device = await system.add_device("btn-late", practitioner="dr-claire-fabre", site="cabinet-boutonnet")
    async with system.dispatcher.bus.subscribe() as events, asyncio.timeout(CALLBACKS_SAFETY_S):
        alert_id = await asyncio.to_thread(device.alert)
        await asyncio.to_thread(device.wait_downlink, "received", alert_id)
        chef = {
            n.id: n.channel
            for n in await system.store.notifications_for(alert_id)
            if n.phone == CHEF_DE_POSTE
        }
        assert sorted(chef.values()) == ["sms", "voice"]
        outcomes: dict[int, str] = {}
        while set(outcomes) != set(chef):  # the sends' outcomes, recorded after the late answers
            event = await events.get()
            if event["kind"] == "notification" and event["id"] in chef:
                outcomes[event["id"]] = event["outcome"]
        assert set(outcomes.values()) == {"accepted"}
        [sms_request] = system.sandbox.requests_to(CHEF_DE_POSTE, "message")
        [call_request] = system.sandbox.requests_to(CHEF_DE_POSTE, "call")

        def final_answered(sid: str | None, final: str) -> list[RecordedWebhook]:
            return [
                w
                for w in system.sandbox.webhooks
                if w.kind == "status" and _status(w) == final and sid in w.params.values() and w.status
            ]

        await system.sandbox.wait_for(
            lambda: bool(
                final_answered(sms_request.sid, "delivered") and final_answered(call_request.sid, "completed")
            ),
            within=CALLBACKS_SAFETY_S,
        )
    [delivered] = final_answered(sms_request.sid, "delivered")
    assert sms_request.answered_at is not None and delivered.sent_at < sms_request.answered_at  # the race
    assert delivered.status == 200
    stored = {
        n.channel: (n.status, n.provider_sid)
        for n in await system.store.notifications_for(alert_id)
        if n.id in chef
    }
    assert stored == {"sms": ("delivered", sms_request.sid), "voice": ("completed", call_request.sid)}
    record = await system.store.get_alert(alert_id)
    said = {
        e.detail["notification_id"]: e.text
        for e in (await views.detail(system.store, record)).timeline
        if e.kind.startswith("notification.") and e.detail.get("notification_id") in chef
    }
    assert {chef[i]: text.rsplit(" : ", 1)[-1] for i, text in said.items()} == {
        "sms": "remis",
        "voice": "appel terminé",
    }, said


async def test_gendarmerie_zone_home_visit_goes_to_the_brigade_with_the_door_code(system: System) -> None:
    now = datetime.now(UTC)
    visit = HomeVisit(
        id="visit-grabels",
        practitioner_id="dr-karim-benali",
        address=Address(
            label="12 Rue des Cistes, 34790 Grabels",
            floor="2e étage",
            access_code="B4521",
            insee="34116",
            point=GeoPoint(lat=43.6480, lon=3.7990),
        ),
        starts_at=now - timedelta(minutes=10),
        ends_at=now + timedelta(hours=1),
    )
    await system.store.upsert_visit(visit)
    device = await system.add_device("bracelet-benali", practitioner="dr-karim-benali")
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id)

    notified = await notified_numbers(system, alert_id)
    record = await system.store.get_alert(alert_id)
    plan_units = {r["unit_id"] for r in record.escalation["plan"]["tiers"][0]["recipients"]}  # type: ignore[index]
    assert plan_units == {"bta-saint-gely"}
    sms = [b for n in notified for b in system.sent_to(n, "message")]
    assert sms, "the brigade's SMS contact got nothing"
    assert all("B4521" in body and "Cistes" in body for body in sms)


async def notified_numbers(system: System, alert_id: str) -> set[str]:
    """Wait for the first tier's requests to reach the provider; return the numbers."""

    async def sent() -> list[str]:
        rows = await system.store.notifications_for(alert_id)
        return [r.phone for r in rows if r.provider_sid]

    async def some_sent() -> bool:
        return bool(await sent())

    await system.until(some_sent)
    await system.dispatcher.delivery.wait_idle()
    return set(await sent())


async def test_gps_alert_is_described_relative_to_the_nearest_known_address(system: System) -> None:
    device = await system.add_device(
        "bracelet-fabre", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    fix = Location(
        lat=43.6219, lon=3.8731, accuracy_m=8, fix_ts=int(datetime.now(UTC).timestamp() * 1000), source="gnss"
    )
    alert_id = await asyncio.to_thread(device.alert, fix)
    await notified_numbers(system, alert_id)
    sms = system.sent_to(CHEF_DE_POSTE, "message")[0]
    assert "GPS" in sms or "gps" in sms.lower()
    assert "m " in sms and "Boutonnet" in sms  # "à 45 m au nord-est de 45 Rue du Faubourg Boutonnet"
    assert "43.6219" in sms


async def test_no_acknowledgement_escalates_to_tier_2_after_the_timeout(fast_system: System) -> None:
    system = fast_system
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    await system.sandbox.wait_for(lambda: bool(system.sent_to(CHEF_DE_POSTE, "message")), within=10)
    assert system.sent_to(REFERENT_SSJ, "message") == []
    # Tier 2 (the SSJ referent is priority 2, texted during office hours; the CIC always).
    await system.sandbox.wait_for(
        lambda: (
            bool(system.sandbox.requests_to("+33639980120", "message"))
            or any(
                r.params.get("To") not in (CHEF_DE_POSTE, OFFICIER_DE_QUART)
                for r in system.sandbox.requests
                if r.kind in ("message", "call")
            )
        ),
        within=15,
    )
    record = await system.store.get_alert(alert_id)
    assert record.escalation is not None and record.escalation["tier"] == 1


async def test_ack_by_sms_reply_stops_escalation_and_tells_the_device(fast_system: System) -> None:
    system = fast_system
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    await system.sandbox.wait_for(lambda: bool(system.sent_to(CHEF_DE_POSTE, "message")), within=10)

    result = await system.sandbox.reply(CHEF_DE_POSTE, "1")
    assert result.status == 200
    await asyncio.to_thread(device.wait_downlink, "acknowledged", alert_id)
    await state_of(system, alert_id, "acknowledged")
    # No tier 2 after the (5 s) timeout: the timers were cancelled.
    assert await system.store.next_timer_due() is None


async def test_cancel_sends_false_alarm_to_those_notified(system: System) -> None:
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    await notified_numbers(system, alert_id)
    await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=alert_id, pin="2468")
    await asyncio.to_thread(device.wait_downlink, "cancelled", alert_id)
    await state_of(system, alert_id, "cancelled")
    await system.sandbox.wait_for(lambda: len(system.sent_to(CHEF_DE_POSTE, "message")) == 2, within=10)
    stand_down = system.sent_to(CHEF_DE_POSTE, "message")[1].lower()
    assert "fin d'alerte" in stand_down and "annulee par le praticien" in stand_down


async def test_duress_cancel_looks_normal_to_the_device_but_escalation_continues(system: System) -> None:
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    await notified_numbers(system, alert_id)
    await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=alert_id, pin="1357")
    downlink = await asyncio.to_thread(device.wait_downlink, "cancelled", alert_id)
    assert downlink.type == "cancelled"  # exactly what a normal cancel shows
    await state_of(system, alert_id, "duress")
    assert await system.store.next_timer_due() is not None  # escalation goes on
    await system.sandbox.wait_for(lambda: len(system.sent_to(CHEF_DE_POSTE, "message")) == 2, within=10)
    assert "contrainte" in system.sent_to(CHEF_DE_POSTE, "message")[1].lower()


async def test_test_alert_reaches_no_responder(system: System) -> None:
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    test_id = await asyncio.to_thread(device.send, UplinkKind.TEST, gesture="hold")
    await asyncio.to_thread(device.wait_downlink, "acknowledged", test_id)
    await system.sandbox.wait_for(lambda: bool(system.sent_to("+33639980150", "message")), within=10)
    await system.dispatcher.delivery.wait_idle()
    responders = {r.to for r in system.sandbox.requests if r.kind in ("message", "call")}
    assert responders == {"+33639980150"}  # only the practitioner herself


async def test_bad_signature_replay_and_unknown_device_are_rejected_and_nothing_is_sent(
    system: System,
) -> None:
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    _, forged = encode_uplink(
        kind="alert",
        device_id=device.device_id,
        event_id="forged-1",
        seq=900,
        ts_ms=now_ms,
        key=b"x" * 32,
        gesture="hold",
    )
    await asyncio.to_thread(device.publish_raw, UplinkKind.ALERT, forged)
    _, genuine = encode_uplink(
        kind="alert",
        device_id=device.device_id,
        event_id="genuine-1",
        seq=901,
        ts_ms=now_ms,
        key=device.key,
        gesture="hold",
    )
    await asyncio.to_thread(device.publish_raw, UplinkKind.ALERT, genuine)
    await asyncio.to_thread(device.wait_downlink, "received", "genuine-1")
    _, replay = encode_uplink(
        kind="alert",
        device_id=device.device_id,
        event_id="replayed-2",
        seq=901,
        ts_ms=now_ms,
        key=device.key,
        gesture="hold",
    )
    await asyncio.to_thread(device.publish_raw, UplinkKind.ALERT, replay)

    async def counted() -> bool:
        counts = await system.store.rejection_counts()
        return bool(counts.get("bad_signature") and counts.get("replay"))

    await system.until(counted)
    counts = await system.store.rejection_counts()
    assert counts == {"bad_signature": 1, "replay": 1}
    assert not await system.store.alert_exists("forged-1")
    assert not await system.store.alert_exists("replayed-2")
    alerts = await system.store.list_alerts()
    assert [a.id for a in alerts] == ["genuine-1"]


async def test_forged_webhook_is_refused_with_403(system: System) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            system.public_url + "/webhooks/twilio/sms", data={"From": CHEF_DE_POSTE, "Body": "1"}
        )
    assert response.status_code == 403


async def test_provider_500_is_retried_and_never_counts_as_a_contact_failure(system: System) -> None:
    system.sandbox.set_number(CHEF_DE_POSTE, NumberBehaviour(http_500=True))
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)
    # The other tier-1 contact is called regardless; the provider's 500s are retried with backoff.
    await system.sandbox.wait_for(lambda: bool(system.sent_to(OFFICIER_DE_QUART, "call")), within=10)
    await system.sandbox.wait_for(lambda: len(system.sandbox.requests_to(CHEF_DE_POSTE, "message")) >= 3, 20)
    rows = await system.store.notifications_for(alert_id)
    assert not [n for n in rows if n.status in ("failed", "canceled")]  # not a failed contact
    assert (await system.store.get_alert(alert_id)).state == "notifying"
    assert system.sandbox.requests_to(REFERENT_SSJ, "message") == []  # the chain did not move on
    # The provider answers again: the waiting SMS goes out, once.
    system.sandbox.clear_numbers()

    async def chef_texted() -> bool:
        rows = await system.store.notifications_for(alert_id)
        return any(n.phone == CHEF_DE_POSTE and n.channel == "sms" and n.provider_sid for n in rows)

    await system.until(chef_texted, within=20)
    created = [r for r in system.sandbox.requests_to(CHEF_DE_POSTE, "message") if r.status == 201]
    assert len(created) == 1
