"""The visit timer end to end: her page's API → durable timer → check SMS at the sandbox → alert.

Everything is real: Mosquitto, the Twilio-compatible sandbox (SMS out, her
replies in through the signed webhook), the BAN sandbox, SQLite, the
escalation. Waits are on events with timeouts.
"""

from __future__ import annotations

import httpx
import pytest

from tests.practitioner.conftest import FABRE_PHONE, Harness
from tests.support.system import FROM_NUMBER

# Her answer must arrive within the grace period even on a loaded machine.
REPLY_IN_TIME = pytest.mark.parametrize("grace_s", [15])

VISIT = {
    "label": "8 Rue de la Croix de Lavit, 34090 Montpellier",
    "floor": "3e étage gauche",
    "access_code": "4712B",
    "notes": "Bâtiment B, interphone 31",
    "dangerous": True,
}


async def declare(client: httpx.AsyncClient, duration_s: int = 1, **changes: object) -> dict[str, object]:
    response = await client.post("/api/me/visits", json={**VISIT, "duration_s": duration_s, **changes})
    assert response.status_code == 201, response.text
    visit: dict[str, object] = response.json()
    return visit


async def wait_check_sms(h: Harness, count: int = 1) -> str:
    await h.system.sandbox.wait_for(lambda: len(h.sms_to(FABRE_PHONE)) >= count, within=10)
    body = h.sms_to(FABRE_PHONE)[count - 1]
    assert "tout va bien" in body
    return body


async def alert_sms(h: Harness, alert_id: str) -> list[str]:
    """Wait for the alert's first SMS to responders; return the bodies."""
    store = h.system.store

    async def sent() -> bool:
        if not await store.alert_exists(alert_id):
            return False
        rows = await store.notifications_for(alert_id)
        return any(n.channel == "sms" and n.provider_sid for n in rows)

    await h.system.until(sent, within=10)
    phones = {n.phone for n in await store.notifications_for(alert_id) if n.channel == "sms"}
    return [body for phone in phones for body in h.sms_to(phone)]


async def test_a_visit_left_open_raises_an_alert_with_address_floor_and_door_code(harness: Harness) -> None:
    await harness.system.add_device("bracelet-fabre", practitioner="dr-claire-fabre")
    dr = await harness.as_user("dr-fabre")
    visit = await declare(dr)
    assert visit["phase"] == "open" and visit["geocoded"] is True

    await wait_check_sms(harness)
    page = (await dr.get("/api/me/visits")).json()[0]
    assert page["phase"] == "checking" and page["check_deadline"]

    # No answer: after the grace period, a real alert located at the visit.
    bodies = await alert_sms(harness, f"{visit['id']}-alerte")
    assert bodies, "the responders must be texted"
    for body in bodies:
        assert "visite non cloturée" in body
        assert "8 Rue de la Croix de Lavit" in body
        assert "3e étage gauche" in body
        assert "code porte 4712B" in body
    record = await harness.system.store.get_alert(f"{visit['id']}-alerte")
    assert record.state == "notifying"
    assert record.context and record.context["location"]["source"] == "home_visit"
    calls = [
        twiml for n in await harness.system.store.notifications_for(record.id) if n.channel == "voice"
        for twiml in harness.system.sent_to(n.phone, "call")
    ]  # fmt: skip
    assert calls and all("visite non clôturée" in t for t in calls)

    audit = await harness.system.store.list_audit(target_kind="visit", target_id=str(visit["id"]))
    assert {"visit.open", "visit.check_sent", "visit.escalate"} <= {a.action for a in audit}


@REPLY_IN_TIME
async def test_an_ok_reply_closes_the_visit_and_nothing_else_is_sent(harness: Harness, grace_s: int) -> None:
    await harness.system.add_device("bracelet-fabre", practitioner="dr-claire-fabre")
    dr = await harness.as_user("dr-fabre")
    visit = await declare(dr)
    await wait_check_sms(harness)

    assert harness.system.dispatcher.visits.settings.grace_s == grace_s
    answer = await harness.system.sandbox.reply(FABRE_PHONE, "Ok !")
    assert "visite cloturee" in answer.body
    timer = await harness.system.store.get_visit_timer(str(visit["id"]))
    assert timer.phase == "closed" and timer.due_at is None, "a closed visit has no timer left to fire"
    assert not await harness.system.store.alert_exists(f"{visit['id']}-alerte")
    assert len(harness.sms_to(FABRE_PHONE)) == 1
    page = (await dr.get("/api/me/visits")).json()[0]
    assert page["phase"] == "closed"
    # The visit no longer locates her alerts once she said she left.
    (visit_doc,) = [
        v for v in await harness.system.store.list_visits("dr-claire-fabre") if v.id == visit["id"]
    ]
    assert visit_doc.checked_out_at is not None


@REPLY_IN_TIME
async def test_a_duress_reply_looks_like_ok_and_escalates(harness: Harness, grace_s: int) -> None:
    await harness.system.add_device("bracelet-fabre", practitioner="dr-claire-fabre")
    dr = await harness.as_user("dr-fabre")
    visit = await declare(dr, duration_s=1)
    await wait_check_sms(harness)

    answer = await harness.system.sandbox.reply(FABRE_PHONE, "OK 1357")  # her duress PIN
    assert "visite cloturee" in answer.body
    bodies = await alert_sms(harness, f"{visit['id']}-alerte")
    assert all("DANGER CONFIRME" in b and "visite non cloturée" in b for b in bodies)
    record = await harness.system.store.get_alert(f"{visit['id']}-alerte")
    assert record.state == "duress"

    # Her page (what someone holding her phone sees): closed, like any OK; no alert listed.
    page = (await dr.get("/api/me/visits")).json()[0]
    assert page["phase"] == "closed" and page["check_deadline"] is None
    assert (await dr.get("/api/me/alerts")).json() == []
    assert (await dr.get(f"/api/me/alerts/{record.id}/report")).status_code == 404


async def test_checkout_and_extension_from_the_page(harness: Harness) -> None:
    dr = await harness.as_user("dr-fabre")
    visit = await declare(dr, duration_s=600)
    longer = await dr.post(f"/api/me/visits/{visit['id']}/extend", json={"by_s": 900})
    assert longer.status_code == 200, longer.text
    assert longer.json()["ends_at"] > str(visit["ends_at"])
    second = await dr.post("/api/me/visits", json={**VISIT, "duration_s": 600})
    assert second.status_code == 409, "one open visit at a time"
    out = await dr.post(f"/api/me/visits/{visit['id']}/checkout")
    assert out.json()["phase"] == "closed"
    again = await dr.post(f"/api/me/visits/{visit['id']}/extend", json={"by_s": 900})
    assert again.status_code == 409
    actions = [a.action for a in await harness.system.store.list_audit(target_id=str(visit["id"]))]
    assert "visit.extend" in actions and "visit.checkout" in actions
    assert harness.sms_to(FABRE_PHONE) == []


async def test_check_replies_from_an_unknown_number_or_for_a_closed_visit_are_ignored(
    harness: Harness,
) -> None:
    dr = await harness.as_user("dr-fabre")
    visit = await declare(dr, duration_s=600)
    stranger = await harness.system.sandbox.reply("+33639989999", "OK", to=FROM_NUMBER)
    assert "visite" not in stranger.body
    timer = await harness.system.store.get_visit_timer(str(visit["id"]))
    assert timer.phase == "open", "a stranger's OK must not close her visit"

    await dr.post(f"/api/me/visits/{visit['id']}/checkout")
    late = await harness.system.sandbox.reply(FABRE_PHONE, "OK", to=FROM_NUMBER)
    assert "<Message>" not in late.body, "nothing to answer: no open visit"
    timer = await harness.system.store.get_visit_timer(str(visit["id"]))
    assert timer.phase == "closed" and timer.version == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**VISIT, "duration_s": 0}, "duration_s"),
        ({**VISIT, "duration_s": 48 * 3600}, "duration_s"),
        ({**VISIT, "label": "Mas des Oliviers, lieu-dit introuvable", "duration_s": 900}, "label"),
        (
            {
                **VISIT,
                "label": "Mas des Oliviers",
                "duration_s": 900,
                "postcode": "34000",
                "commune": "Nulle",
            },
            "commune",
        ),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    harness: Harness, body: dict[str, object], field: str
) -> None:
    dr = await harness.as_user("dr-fabre")
    response = await dr.post("/api/me/visits", json=body)
    assert response.status_code == 422, response.text
    assert [e["loc"][-1] for e in response.json()["detail"]] == [field]
    assert await harness.system.store.list_visit_timers() == []


async def test_the_commune_route_places_an_address_the_geocoder_cannot(harness: Harness) -> None:
    dr = await harness.as_user("dr-fabre")
    visit = await declare(
        dr, duration_s=900, label="Mas des Oliviers, lieu-dit", postcode="34000", commune="Montpellier"
    )
    assert visit["geocoded"] is False
    (doc,) = [v for v in await harness.system.store.list_visits("dr-claire-fabre") if v.id == visit["id"]]
    assert doc.address.insee == "34172"


async def test_autocomplete_and_recent_addresses(harness: Harness) -> None:
    dr = await harness.as_user("dr-fabre")
    suggestions = (await dr.get("/api/me/geocode", params={"q": "8 rue croix lavit"})).json()
    assert suggestions[0]["label"].startswith("8 Rue de la Croix de Lavit")
    await declare(dr, duration_s=900)
    recent = (await dr.get("/api/me/addresses/recent")).json()
    assert recent[0]["label"] == VISIT["label"] and recent[0]["access_code"] == "4712B"
