"""The sandbox's people: personas from TOML, their draws, and the reply an SMS asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.people import DEMO_PEOPLE, People, PeopleError, Persona, reply_text

NUMBER = "+33639980101"


def test_certain_personas_always_do_the_same() -> None:
    people = People(
        {
            NUMBER: Persona(sms_reply=1.0, call_answer=1.0, call_press=1.0, delay_s=(2, 2)),
            "+33465710107": Persona(call_answer=0.0),
        },
        seed=1,
    )
    for _ in range(20):
        sms = people.sms(NUMBER, "Repondez 1 pour prendre en charge")
        assert sms is not None and sms.ack_after_ms == 2000 and sms.ack_text == "1"
        call = people.call(NUMBER)
        assert call is not None and call.call_status == "completed" and call.ack_after_ms == 2000
        unanswered = people.call("+33465710107")
        assert unanswered is not None and unanswered.call_status == "no-answer"
    assert people.sms("+33600000000", "x") is None  # nobody's number: the sandbox's default


def test_draws_follow_the_probabilities() -> None:
    people = People({NUMBER: Persona(sms_reply=0.3)}, seed=4)
    replies = sum(people.sms(NUMBER, "x").ack_after_ms is not None for _ in range(2000))  # type: ignore[union-attr]
    assert 500 < replies < 700


def test_reply_names_the_code_the_sms_asks_for() -> None:
    assert reply_text("Repondez 1 pour prendre en charge") == "1"
    assert reply_text("ALERTE VIGIE ...\nRepondez 1 K42 pour prendre en charge") == "1 K42"
    assert reply_text("Pour prendre en charge, repondez « 1 A7 »") == "1 A7"
    assert reply_text('repondez "1 K2" (code de cette alerte)') == "1 K2"


def test_demo_personas_load() -> None:
    people = People.from_file(DEMO_PEOPLE)
    assert people.personas[NUMBER].name.startswith("Chef de poste")
    assert people.personas["+33465710107"].call_answer == 0.0


def test_a_bad_file_names_the_number_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "people.toml"
    bad.write_text('[people."+33639980101"]\nsms_reply = 1.5\n')
    with pytest.raises(PeopleError, match=r"\+33639980101.*sms_reply"):
        People.from_file(bad)
    bad.write_text('[people."+33639980101"]\nanswers = true\n')
    with pytest.raises(PeopleError, match="answers"):
        People.from_file(bad)
