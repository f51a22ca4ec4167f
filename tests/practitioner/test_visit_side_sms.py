"""A visit's own SMS leave beside the visit timers, not inside them (invariant 4).

The check ("Tout va bien ?") and the text to the deployment's fallback contact
are sent in the background: a provider hanging on one of them must not hold
the timers' pass, hence another practitioner's visit alert; a provider that
refuses one for a while gets it again once it is back. Everything is real: the
Twilio sandbox scripts the provider's behaviour per number.
"""

from __future__ import annotations

import logging
import time

import pytest

from dispatcher.store.base import SideTextRecord, VisitTimerWrite
from sandbox.twilio_resources import NumberBehaviour
from tests.practitioner.conftest import FABRE_PHONE, Harness
from tests.practitioner.test_visit_timer_e2e import alert_sms, declare, wait_check_sms
from tests.support.system import FALLBACK_NUMBER

BENALI_PHONE = "+33639980151"  # the directory's first number of dr-karim-benali


def _fallback_outcomes(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The log lines giving the fallback contact's text its final outcome (not its retries)."""
    return [
        r
        for r in caplog.records
        if "SMS au contact de secours" in r.getMessage() and "nouvel essai" not in r.getMessage()
    ]


async def _benali_with_a_device(h: Harness) -> None:
    """A second practitioner, who has a device: his visit's alert is raised for real."""
    await h.system.add_device("bracelet-benali", practitioner="dr-karim-benali")


async def test_a_provider_hanging_on_one_visit_s_text_does_not_hold_another_visit_s_alert(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher.visits.side_sms")
    await _benali_with_a_device(harness)
    # The provider takes the fallback contact's text and never answers (the dispatcher gives
    # up after its 5 s request timeout, before the 8 s): every other number is answered at once.
    harness.system.sandbox.set_number(FALLBACK_NUMBER, NumberBehaviour(latency_ms=8_000))
    fabre = await harness.as_user("dr-fabre")  # no device: her missed check texts the contact
    await declare(fabre, duration_s=1)
    benali = await harness.as_user("dr-benali")
    his = await declare(benali, duration_s=1)  # due just after hers
    await wait_check_sms(harness)
    await harness.system.sandbox.wait_for(lambda: bool(harness.sms_to(BENALI_PHONE)), within=10)

    await harness.system.sandbox.wait_for(lambda: bool(harness.sms_to(FALLBACK_NUMBER)), within=10)
    assert await alert_sms(harness, f"{his['id']}-alerte"), "his alert reached the police"
    assert _fallback_outcomes(caplog) == [], "raised while her text was still waiting for the provider"

    # And the hung text ends, loudly: its fate unknown, not sent twice.
    await harness.system.dispatcher.visits.sms.wait_idle()
    (outcome,) = _fallback_outcomes(caplog)
    assert outcome.levelno == logging.ERROR and "timeout" in outcome.getMessage()
    assert len(harness.sms_to(FALLBACK_NUMBER)) == 1


async def test_the_fallback_contact_s_text_refused_by_the_provider_is_sent_once_it_is_back(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher.visits.side_sms")
    caplog.set_level(logging.INFO, logger="dispatcher.alerting.engine")
    sandbox = harness.system.sandbox
    sandbox.set_number(FALLBACK_NUMBER, NumberBehaviour(http_500=True))
    fabre = await harness.as_user("dr-fabre")
    await declare(fabre, duration_s=1)
    await wait_check_sms(harness)

    await sandbox.wait_for(lambda: bool(harness.sms_to(FALLBACK_NUMBER)), within=10)
    sandbox.set_number(FALLBACK_NUMBER, NumberBehaviour())  # the provider is back
    await harness.system.dispatcher.visits.sms.wait_idle()

    created = [m for m in sandbox.messages.values() if m.to == FALLBACK_NUMBER]
    assert len(created) == 1 and "ALERTE VIGIE NON TRANSMISE" in created[0].body
    assert len(harness.sms_to(FALLBACK_NUMBER)) >= 2, "refused first, then tried again"
    (outcome,) = _fallback_outcomes(caplog)
    assert outcome.levelno == logging.INFO and created[0].sid in outcome.getMessage()

    # Its delivery report is the visit text's, logged as such: no alert's row is looked for.
    def delivered_reported() -> bool:
        return any(
            w.kind == "status" and "-secours" in w.url and w.params.get("MessageStatus") == "delivered"
            and w.status is not None
            for w in sandbox.webhooks
        )  # fmt: skip

    await sandbox.wait_for(delivered_reported, within=10)
    reports = [r.getMessage() for r in caplog.records if r.name == "dispatcher.alerting.engine"]
    assert any("statut delivered du SMS" in m and "-secours, hors alerte" in m for m in reports), reports
    assert not any("envoi inconnu" in m for m in reports), reports


async def test_outbox_texts_left_by_a_stopped_sender_are_sent_only_when_provably_unsent(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """What the next start finds in the outbox: a text never attempted (or refused) is sent;
    one whose request may have left is not sent twice, nor one whose window has passed."""
    caplog.set_level(logging.INFO, logger="dispatcher.visits.side_sms")
    store, visits = harness.system.store, harness.system.dispatcher.visits
    now = time.time()

    def row(key: str, phone: str, *, status: str = "pending", not_after: float = now + 600) -> SideTextRecord:
        what = f"visite v-{key} : SMS au contact de secours"  # always wanted, unlike a check
        return SideTextRecord(key, f"v-{key}-secours", phone, "ALERTE VIGIE", what, not_after, status)

    left = (
        row("pending", BENALI_PHONE),
        row("sending", "+33639980152", status="sending"),
        row("expired", "+33639980153", not_after=now - 1),
    )
    timer = VisitTimerWrite("v-outbox", "dr-karim-benali", "open", None, {}, 0, texts=left)
    await store.write_visit_timer(timer)  # as a step would, with nobody's lease on them

    claimed = await store.claim_side_texts("another-instance", now=now, lease_s=90)
    assert {t.key for t in claimed} == {"pending", "sending", "expired"}
    await visits.sms.resume(claimed, now=now)
    await visits.sms.wait_idle()

    assert harness.sms_to(BENALI_PHONE) == ["ALERTE VIGIE"]
    assert harness.sms_to("+33639980152") == [], "it may have reached her already"
    assert harness.sms_to("+33639980153") == [], "too late to mean anything"
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (
        logging.ERROR,
        "visite v-sending : SMS au contact de secours : une requête était partie avant un arrêt,"
        " sort inconnu : non renvoyée (réf. v-sending-secours)",
    ) in messages
    assert any("v-expired" in m and "fenêtre est passée" in m for _, m in messages)
    assert await store.claim_side_texts("a-third", now=now + 1_000, lease_s=90) == [], "the outbox is empty"


@pytest.mark.parametrize("grace_s", [60])
async def test_a_check_still_retrying_when_she_closes_her_visit_is_not_sent(
    harness: Harness, grace_s: int, caplog: pytest.LogCaptureFixture
) -> None:
    """ "Tout va bien ?" about a visit she has already closed would be a message that misleads."""
    caplog.set_level(logging.INFO, logger="dispatcher.visits.side_sms")
    sandbox = harness.system.sandbox
    sandbox.set_number(FABRE_PHONE, NumberBehaviour(http_500=True))
    dr = await harness.as_user("dr-fabre")
    visit = await declare(dr, duration_s=1)
    await sandbox.wait_for(lambda: bool(harness.sms_to(FABRE_PHONE)), within=10)  # tried, refused

    closed = await dr.post(f"/api/me/visits/{visit['id']}/checkout")
    assert closed.status_code == 200, closed.text
    sandbox.set_number(FABRE_PHONE, NumberBehaviour())  # the provider takes her number again
    await harness.system.dispatcher.visits.sms.wait_idle()

    assert [m for m in sandbox.messages.values() if m.to == FABRE_PHONE] == []
    assert any("la visite n'attend plus cette réponse" in r.getMessage() for r in caplog.records)
    assert await harness.system.store.claim_side_texts("x", now=time.time() + 1_000, lease_s=90) == []
