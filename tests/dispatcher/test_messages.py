"""What each audience hears, for every event: golden texts per row, and properties over random histories.

The golden file (``golden_messages.txt``) holds, for each row of the audience
table of docs/lifecycle.md, the SMS and the call exactly as a responder gets
them. Regenerate it after an intended wording change with
``VIGIE_REGENERATE_GOLDEN=1 pytest tests/dispatcher/test_messages.py`` and
review the diff like any text a policeman will read at 3 a.m.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.alerting import texts
from dispatcher.alerting.escalation import (
    STAND_DOWNS,
    Acknowledged,
    AckTimeout,
    Cancelled,
    EscalationPlan,
    EscalationState,
    Event,
    Notify,
    start,
    step,
)
from dispatcher.alerting.gsm7 import is_gsm7, segments, to_gsm7
from dispatcher.domain import AlertContext, AlertKind, Channel
from tests.dispatcher.test_escalation import CONTACTS, events, plans
from tests.dispatcher.test_texts import GATHER, context

GOLDEN = Path(__file__).with_name("golden_messages.txt")
OPERATOR = "Mme Roux (opérateur Vigie)"
# A responder link as delivery writes it (public base URL + /r/ + a 22-character token).
LINK = "https://vigie.example.fr/r/Zk3q9_Xb2LmN0pQrS7tUvA"

# Row of the table -> (purpose, facts, alert kind).
ROWS: dict[str, tuple[texts.Facts, AlertKind]] = {
    "alerte (premier palier)": (texts.Facts("alert", link=LINK), AlertKind.ALERT),
    "palier suivant": (texts.Facts("alert", tier=1, link=LINK), AlertKind.ALERT),
    "relance": (texts.Facts("alert", tier=0, round=1, link=LINK), AlertKind.ALERT),
    "prise en charge": (texts.Facts("ack_notice", actor="Officier de permanence"), AlertKind.ALERT),
    "code de contrainte": (texts.Facts("duress_notice", duress=True, link=LINK), AlertKind.ALERT),
    "alerte après contrainte": (texts.Facts("alert", tier=1, duress=True, link=LINK), AlertKind.ALERT),
    "prise en charge après contrainte": (
        texts.Facts("ack_notice", duress=True, actor="Officier de permanence"),
        AlertKind.ALERT,
    ),
    "annulée par le praticien": (texts.Facts("cancelled"), AlertKind.ALERT),
    "fausse alerte (opérateur)": (texts.Facts("false_alarm", actor=OPERATOR), AlertKind.ALERT),
    "incident clos": (texts.Facts("resolved", actor=OPERATOR), AlertKind.ALERT),
    "incident clos après contrainte": (texts.Facts("resolved", duress=True, actor=OPERATOR), AlertKind.ALERT),
    "exercice (alerte)": (texts.Facts("alert", link=LINK), AlertKind.DRILL),
    "exercice (fin)": (texts.Facts("cancelled"), AlertKind.DRILL),
}


def rendered(facts: texts.Facts, kind: AlertKind) -> tuple[str, str]:
    ctx = context(kind=kind)
    return texts.sms_for(ctx, facts), texts.twiml_for(ctx, facts, GATHER)


def golden_text() -> str:
    blocks = []
    for name, (facts, kind) in ROWS.items():
        sms, twiml = rendered(facts, kind)
        blocks.append(f"=== {name} ({facts.purpose}, {kind.value})\n--- SMS\n{sms}\n--- appel\n{twiml}\n")
    return "\n".join(blocks)


def test_every_row_says_exactly_the_golden_text() -> None:
    if os.environ.get("VIGIE_REGENERATE_GOLDEN"):
        GOLDEN.write_text(golden_text())
    assert golden_text() == GOLDEN.read_text()


def test_every_purpose_the_escalation_can_decide_has_a_row() -> None:
    assert set(texts.MESSAGES) == {"alert", "ack_notice", "duress_notice", "test", *STAND_DOWNS}
    assert {facts.purpose for facts, _ in ROWS.values()} >= set(texts.MESSAGES) - {"test"}


@pytest.mark.parametrize("name", list(ROWS))
def test_every_sms_is_gsm7_within_three_segments(name: str) -> None:
    sms, _ = rendered(*ROWS[name])
    assert is_gsm7(sms) and segments(sms) <= 3


@pytest.mark.parametrize("purpose", sorted(STAND_DOWNS))
def test_a_stand_down_call_is_its_own_script_with_nothing_to_press(purpose: str) -> None:
    facts = texts.Facts(purpose, actor=OPERATOR)
    _, twiml = rendered(facts, AlertKind.ALERT)
    assert "<Gather" not in twiml and "Appuyez" not in twiml
    assert "fin d'alerte" in twiml.lower() or "clos" in twiml
    assert "demande une aide urgente" not in twiml
    assert twiml != texts.alert_twiml(context(), GATHER)


def test_a_false_alarm_names_who_declared_it() -> None:
    by_operator, call = rendered(texts.Facts("false_alarm", actor=OPERATOR), AlertKind.ALERT)
    assert (
        "fausse alerte" in by_operator
        and "declaree fausse alerte par Mme Roux (opérateur Vigie)" in by_operator
    )
    assert "déclarée par Mme Roux" in call
    by_pin, call = rendered(texts.Facts("cancelled"), AlertKind.ALERT)
    assert "annulee par le praticien avec son code personnel" in by_pin
    assert "annulée par le praticien avec son code personnel" in call


@pytest.mark.parametrize("name", [n for n, (_, kind) in ROWS.items() if kind is AlertKind.DRILL])
def test_every_drill_message_starts_with_the_warning_voice_included(name: str) -> None:
    sms, twiml = rendered(*ROWS[name])
    assert sms.startswith(to_gsm7(texts.DRILL_PREFIX))
    spoken = re.findall(r"<Say[^>]*>([^<]*)</Say>", twiml)
    assert spoken and all(s.startswith(texts.DRILL_PREFIX) for s in spoken[:-1] or spoken)


# --- properties over random event sequences ----------------------------------------------------


def plain(text: str) -> str:
    """Lower case without accents: 'Annulée' and the GSM-7 'annulee' look alike."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def says(notify: Notify, ctx: AlertContext) -> str:
    facts = texts.Facts(notify.purpose, notify.tier, notify.round, notify.duress, notify.actor)
    if notify.channel is Channel.SMS:
        return texts.sms_for(ctx, facts)
    return texts.twiml_for(ctx, facts, GATHER)


def acked_contact_then_cancel() -> st.SearchStrategy[list[Event]]:
    return st.tuples(st.sampled_from(CONTACTS), st.sampled_from(["sms", "voice"])).map(
        lambda c: [Acknowledged(by=c[0], via=c[1]), Cancelled(duress=False)]  # type: ignore[arg-type]
    )


@settings(max_examples=300, deadline=None)
@given(
    plan=plans,
    kind=st.sampled_from([AlertKind.ALERT, AlertKind.DRILL]),
    script=st.lists(st.one_of(events, st.just("timeout"), acked_contact_then_cancel()), max_size=30),
)
def test_no_message_misleads_whatever_happens(
    plan: EscalationPlan, kind: AlertKind, script: list[Event | str | list[Event]]
) -> None:
    ctx = context(kind=kind)
    state, commands = start("alerte-p", kind, plan, practitioner_phone=None)
    flat: list[Event | str] = [e for item in script for e in (item if isinstance(item, list) else [item])]
    for item in [None, *flat]:
        before = state
        if item is not None:
            event = AckTimeout(state.tier, state.round) if isinstance(item, str) else item
            state, commands = step(before, event)
        for notify in (c for c in commands if isinstance(c, Notify)):
            text = plain(says(notify, ctx))
            if notify.purpose in STAND_DOWNS:
                # A stand-down never sounds like an alert.
                assert "<gather" not in text and "appuyez sur 1" not in text and "alerte vigie." not in text
            if before.duress or state.duress:
                # Danger confirmed, on every channel, to every tier; nothing says it is over.
                assert notify.duress
                assert "annulee" not in text and "fausse alerte" not in text
                assert "danger" in text and "confirme" in text
            if kind is AlertKind.DRILL:
                spoken = re.findall(r"<say[^>]*>([^<]*)</say>", text)
                said = spoken[:1] if notify.channel is Channel.VOICE else [text]
                assert said and said[0].startswith(plain(to_gsm7(texts.DRILL_PREFIX)).replace("-", "")[:8])
                assert all(s.startswith(plain(texts.DRILL_PREFIX)) for s in spoken[:-1] or spoken)
        if isinstance(item, Cancelled) and not item.duress:
            assert_cancel_reaches_the_acknowledger(before, commands)


def assert_cancel_reaches_the_acknowledger(before: EscalationState, commands: list[object]) -> None:
    """A cancel that stands responders down reaches whoever had taken the alert."""
    if (
        before.acked_by is None
        or before.duress
        or before.terminal
        or before.plan.recipient(before.acked_by) is None
    ):
        return
    told = {c.recipient.contact_id for c in commands if isinstance(c, Notify) and c.purpose == "cancelled"}
    assert before.acked_by in told
