"""A visit's alert when she has no ACTIVE device (invariant 1: every alert reaches a human who can act).

Her only device revoked after she declared: the missed check-in (or her duress
answer) still raises an alert, filed under that device, routed and escalated
like any other. Several devices, none active: the alert is filed under the one
dispatcher/visits/alert_device.py ranks first (carried, then the latest heard),
read from the store's last-seen times of just her devices; when those cannot be
read, it is raised all the same. No device at all: she is warned at the declaration, and the
missed check-in raises the operator alarm telling them the police were not
alerted. Everything is real, as in test_visit_timer_e2e.py.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatcher import audit
from dispatcher.alerting import texts
from dispatcher.domain import DeviceKind
from protocol.topics import UplinkKind
from sandbox.fleet import SimulatedDevice
from tests.practitioner.conftest import FABRE_PHONE, Harness
from tests.practitioner.test_visit_timer_e2e import VISIT, alert_sms, declare, wait_check_sms
from tests.support.system import FALLBACK_NUMBER

ONLY_DEVICE = "bracelet-fabre"


async def _declare_then_revoke(h: Harness, duration_s: int) -> tuple[Any, dict[str, object]]:
    await h.system.add_device(ONLY_DEVICE, practitioner="dr-claire-fabre")
    dr = await h.as_user("dr-fabre")
    visit = await declare(dr, duration_s=duration_s)
    assert not visit.get("warnings"), "she has a device: nothing to warn about"
    await h.system.store.revoke_device(ONLY_DEVICE)
    await h.system.dispatcher.cache.refresh()
    return dr, visit


async def _first_tier_reached(h: Harness, alert_id: str, device_id: str = ONLY_DEVICE) -> None:
    """The alert, filed under ``device_id``, is routed (a convention's chain) and its first tier
    was texted and called."""
    record = await h.system.store.get_alert(alert_id)
    assert record.device_id == device_id
    assert record.context and record.context["convention_name"], "routed by a convention"
    first = [n for n in await h.system.store.notifications_for(alert_id) if n.tier == 0]
    assert {"sms", "voice"} <= {n.channel for n in first}
    await h.system.until(lambda: _all_sent(h, alert_id), within=10)
    for n in first:
        kind = "message" if n.channel == "sms" else "call"
        assert h.system.sent_to(n.phone, kind), f"{n.channel} to {n.phone} not made"


async def _all_sent(h: Harness, alert_id: str) -> bool:
    rows = [n for n in await h.system.store.notifications_for(alert_id) if n.tier == 0]
    return bool(rows) and all(n.provider_sid for n in rows)


async def _no_alarm_about_a_missing_device(h: Harness) -> None:
    alarms = [e["message"] for e in await h.system.store.operator_events()]
    assert not any("NON DÉCLENCHÉE" in m for m in alarms), alarms


async def test_a_missed_check_in_after_her_only_device_was_revoked_raises_a_routed_alert(
    harness: Harness,
) -> None:
    _, visit = await _declare_then_revoke(harness, duration_s=1)
    await wait_check_sms(harness)

    alert_id = f"{visit['id']}-alerte"
    bodies = await alert_sms(harness, alert_id)
    assert bodies and all("visite non cloturée" in b and "8 Rue de la Croix de Lavit" in b for b in bodies)
    await _first_tier_reached(harness, alert_id)
    assert (await harness.system.store.get_alert(alert_id)).state == "notifying"
    await _no_alarm_about_a_missing_device(harness)


@pytest.mark.parametrize("grace_s", [15])  # her answer must arrive within the grace period
async def test_a_duress_answer_after_her_only_device_was_revoked_raises_a_routed_alert_that_looks_like_ok(
    harness: Harness, grace_s: int
) -> None:
    dr, visit = await _declare_then_revoke(harness, duration_s=1)
    await wait_check_sms(harness)

    answer = await harness.system.sandbox.reply(FABRE_PHONE, "OK 1357")  # her duress PIN
    assert "visite cloturee" in answer.body, "the same answer as a plain OK"
    alert_id = f"{visit['id']}-alerte"
    bodies = await alert_sms(harness, alert_id)
    assert bodies and all("DANGER CONFIRME" in b for b in bodies)
    await _first_tier_reached(harness, alert_id)
    assert (await harness.system.store.get_alert(alert_id)).state == "duress"
    await _no_alarm_about_a_missing_device(harness)
    # Her page (what someone holding her phone sees): closed like any OK, no alert listed.
    page = (await dr.get("/api/me/visits")).json()[0]
    assert page["phase"] == "closed" and page["check_deadline"] is None
    assert (await dr.get("/api/me/alerts")).json() == []


# Her three devices, none active when the visit's alert is raised (the store knows one revoked
# state for a suspended, revoked or replaced device).
BUTTON = "bouton-fabre"  # fixed under her desk: heard last
BRACELET = "bracelet-fabre"  # carried: heard earlier
POCKET = "ancienne-poche-fabre"  # carried, replaced before it was ever heard (its id sorts first)


async def _heard(h: Harness, sim: SimulatedDevice, battery: int) -> datetime:
    """A real heartbeat over MQTT, merged into the store; returns when the store says it was heard."""
    await asyncio.to_thread(sim.send, UplinkKind.HEARTBEAT, battery_pct=battery, firmware="t", uptime_s=60)

    async def received() -> bool:
        health = h.system.dispatcher.health.devices.get(sim.device_id)
        return health is not None and health.battery_pct == battery

    await h.system.until(received)
    await h.system.dispatcher.health.flush()  # what its next pass (every second) would do
    seen = await h.system.store.device_last_seen([sim.device_id])
    assert sim.device_id in seen, "the heartbeat was merged"
    return seen[sim.device_id]


async def _three_devices_then_none_active(h: Harness) -> dict[str, Any]:
    bracelet = await h.system.add_device(BRACELET, practitioner="dr-claire-fabre", kind=DeviceKind.BRACELET)
    button = await h.system.add_device(BUTTON, practitioner="dr-claire-fabre", kind=DeviceKind.BUTTON)
    await h.system.add_device(POCKET, practitioner="dr-claire-fabre", kind=DeviceKind.POCKET)
    bracelet_at = await _heard(h, bracelet, battery=61)
    button_at = await _heard(h, button, battery=62)
    assert button_at > bracelet_at, "the button was heard last"
    dr = await h.as_user("dr-fabre")
    visit = await declare(dr, duration_s=1)
    for device_id in (BRACELET, BUTTON, POCKET):
        await h.system.store.revoke_device(device_id)
    await h.system.dispatcher.cache.refresh()
    return visit


async def test_with_several_inactive_devices_the_alert_is_filed_under_her_latest_heard_carried_one(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dispatcher.visits.runner")
    visit = await _three_devices_then_none_active(harness)
    await wait_check_sms(harness)

    alert_id = f"{visit['id']}-alerte"
    bodies = await alert_sms(harness, alert_id)
    assert bodies and all("visite non cloturée" in b for b in bodies)
    # Carried before the button heard last; heard before the pocket button never heard (whose
    # id comes first).
    await _first_tier_reached(harness, alert_id, device_id=BRACELET)
    await _no_alarm_about_a_missing_device(harness)
    assert any(
        f"rattachée à sa balise {BRACELET} (revoked) faute de balise active" in r.getMessage()
        for r in caplog.records
    )


async def test_when_last_seen_times_cannot_be_read_the_alert_is_raised_all_the_same(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    visit = await _three_devices_then_none_active(harness)
    # A real fault: the health table is gone from under the running dispatcher's SQLite store.
    with sqlite3.connect(tmp_path / "vigie.db", timeout=10) as db:
        db.execute("ALTER TABLE device_health RENAME TO device_health_away")
    caplog.set_level(logging.WARNING, logger="dispatcher.visits.runner")
    await wait_check_sms(harness)

    alert_id = f"{visit['id']}-alerte"
    assert await alert_sms(harness, alert_id)
    # Without the times, carried first and then by id: the old pocket button this time.
    await _first_tier_reached(harness, alert_id, device_id=POCKET)
    assert any(
        "dernier contact des balises" in r.getMessage() and "rattachée sans cet ordre" in r.getMessage()
        for r in caplog.records
    )


async def _fallback_sms(h: Harness) -> list[str]:
    """The SMS sent to the deployment's fallback contact, once there is one.

    Waited for on the provider's side: a side text reaching it publishes nothing on the
    dispatcher's bus, so re-checking at the dispatcher's events could miss it under load."""
    await h.system.sandbox.wait_for(lambda: bool(h.sms_to(FALLBACK_NUMBER)), within=10)
    return h.sms_to(FALLBACK_NUMBER)


async def _open_alarm(h: Harness, client: Any) -> dict[str, Any] | None:
    """The must-act alarm listed for ``client`` (an operator's API session), if any."""
    events = (await client.get("/api/operator-events")).json()
    return next((e for e in events if e["must_act"] and "NON DÉCLENCHÉE" in e["message"]), None)


async def test_without_any_device_she_is_warned_and_a_missed_check_in_alarms_her_territory_until_handled(
    harness: Harness,
) -> None:
    dr = await harness.as_user("dr-fabre")
    visit = await declare(dr, duration_s=1)
    assert visit["warnings"] == [texts.VISIT_WITHOUT_DEVICE_WARNING]
    assert "seuls les opérateurs" in texts.VISIT_WITHOUT_DEVICE_WARNING
    await wait_check_sms(harness)

    herault, gard = await harness.as_user("op-herault"), await harness.as_user("op-gard")
    await harness.system.until(lambda: _open_alarm(harness, herault), within=10)
    alarm = await _open_alarm(harness, herault)
    assert alarm is not None and alarm["handled_by"] is None
    # Who she is and how to reach her: the operators are the only ones told.
    assert "Dr Claire Fabre (dr-claire-fabre)" in alarm["message"]
    assert f"appelez-la au {FABRE_PHONE} et appelez la police" in alarm["message"]
    assert "police n'a PAS été prévenue" in alarm["message"]
    assert not await harness.system.store.alert_exists(f"{visit['id']}-alerte")
    # A console may be unattended: the deployment's 24/7 fallback contact is texted the same.
    (sms,) = await _fallback_sms(harness)
    assert sms.startswith("ALERTE VIGIE NON TRANSMISE - visite non cloturée"), sms  # GSM-7: no ô
    assert "Dr Claire Fabre" in sms and "8 Rue de la Croix de Lavit" in sms and "code 4712B" in sms
    assert f"La police n'a PAS été prévenue : appelez-la au {FABRE_PHONE} et prévenez la police" in sms
    # Another territory's operators neither see it nor can take it; her own page never shows it.
    assert await _open_alarm(harness, gard) is None
    assert (await gard.post(f"/api/operator-events/{alarm['id']}/handled")).status_code == 404
    assert (await dr.get("/api/operator-events")).status_code == 403

    taken = await herault.post(f"/api/operator-events/{alarm['id']}/handled")
    assert taken.status_code == 200, taken.text
    assert taken.json()["handled_by"] == "op-herault"
    again = await herault.post(f"/api/operator-events/{alarm['id']}/handled")
    assert again.status_code == 409 and "op-herault" in again.json()["detail"]
    assert await harness.system.store.open_scoped_alarms() == []
    trail = await harness.system.store.list_audit(action=audit.OPERATOR_ALARM_HANDLED)
    assert [(e.username, e.target_id) for e in trail] == [("op-herault", str(alarm["id"]))]


async def test_a_duress_answer_without_any_device_tells_the_operators_not_to_call_her(
    harness: Harness,
) -> None:
    dr = await harness.as_user("dr-fabre")
    await declare(dr, duration_s=1)
    await wait_check_sms(harness)
    answer = await harness.system.sandbox.reply(FABRE_PHONE, "OK 1357")  # her duress PIN
    assert "visite cloturee" in answer.body, "the same answer as a plain OK"

    herault = await harness.as_user("op-herault")
    await harness.system.until(lambda: _open_alarm(harness, herault), within=10)
    alarm = await _open_alarm(harness, herault)
    assert alarm is not None
    assert "SOUS CONTRAINTE : ne l'appelez PAS, appelez la police" in alarm["message"]
    assert FABRE_PHONE not in alarm["message"], "no number to call: whoever holds her phone would answer"
    (sms,) = await _fallback_sms(harness)
    assert "SOUS CONTRAINTE : ne l'appelez PAS" in sms and FABRE_PHONE not in sms
    page = (await dr.get("/api/me/visits")).json()[0]
    assert page["phase"] == "closed", "her page: closed like any OK"


async def test_the_visits_api_warns_a_practitioner_without_any_device(harness: Harness) -> None:
    dr = await harness.as_user("dr-fabre")
    now = datetime.now(UTC)
    body = {
        "address": {"label": VISIT["label"]},
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
    }
    created = await dr.post("/api/visits", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["warnings"] == [texts.VISIT_WITHOUT_DEVICE_WARNING]

    await harness.system.add_device(ONLY_DEVICE, practitioner="dr-claire-fabre")
    again = await dr.post("/api/visits", json=body)
    assert again.json()["warnings"] == []
