"""The people behind the sandbox's phone numbers: who answers, who replies, and when.

A real police contact does not answer every alert: the chef de poste may be
on another call, a brigade's patrol may be out of coverage, the SAMU line may
ring out. :class:`People` gives each number a :class:`Persona` and draws, for
every SMS and call the sandbox receives, what that person does this time
(reply « 1 » after a few seconds, never reply, not pick up, pick up and press
« 1 », pick up and hang up). The draw becomes a :class:`NumberBehaviour` for
that one message or call, so the sandbox plays it like any scripted number.

Personas come from a TOML file (``sandbox/data/demo-people.toml`` is the
demo's), one table per number::

    [people."+33639980101"]
    name = "Chef de poste, commissariat de Montpellier"
    sms_reply = 0.6             # probability of replying to an alert SMS
    call_answer = 0.7           # probability of picking up a call
    call_press = 0.5            # once picked up, probability of pressing the key
    delay_s = [4, 15]           # a reply or a key press comes this long after

A number without a table is nobody's: its SMS are delivered, its calls
answered, and nothing more happens (the sandbox's historical behaviour).
"""

from __future__ import annotations

import random
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.twilio_resources import NumberBehaviour

DEMO_PEOPLE = Path(__file__).resolve().parent / "data" / "demo-people.toml"

# The reply an alert SMS asks for when it names the alert's code ("Repondez 1 K42
# pour prendre en charge", dispatcher/alerting/replycodes.py), quoted or not; a bare "1" otherwise.
_REPLY_CODE = re.compile(r"(?:[Rr][ée]pondez|[«\"])\s*(1\s+[A-Z][0-9]{1,5})\b")


class PeopleError(ValueError):
    """A personas file that cannot be used; the message names the number and field."""


@dataclass(frozen=True)
class Persona:
    """How one person behaves; probabilities are in [0, 1], delays in seconds."""

    name: str = ""
    sms_reply: float = 0.0
    call_answer: float = 1.0
    call_press: float = 0.0
    delay_s: tuple[float, float] = (3.0, 10.0)

    def __post_init__(self) -> None:
        for field_name in ("sms_reply", "call_answer", "call_press"):
            value = getattr(self, field_name)
            if not 0.0 <= value <= 1.0:
                raise PeopleError(f"{field_name} = {value}: a probability is between 0 and 1")
        low, high = self.delay_s
        if not 0.0 <= low <= high:
            raise PeopleError(f"delay_s = [{low}, {high}]: expected 0 <= min <= max")


def reply_text(sms_body: str) -> str:
    """What a person who acknowledges types back: the code the SMS asks for, else « 1 »."""
    match = _REPLY_CODE.search(sms_body)
    return " ".join(match.group(1).split()) if match else "1"


class People:
    """Personas by phone number, and the random draws of what they do."""

    def __init__(self, personas: dict[str, Persona], *, seed: int | None = None) -> None:
        self.personas = dict(personas)
        self._rng = random.Random(seed)

    @classmethod
    def from_file(cls, path: Path, *, seed: int | None = None) -> People:
        """Read a personas TOML file (see the module docstring)."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PeopleError(f"{path}: {exc}") from None
        return cls(_personas(data.get("people", {}), path), seed=seed)

    def _delay_ms(self, persona: Persona) -> float:
        low, high = persona.delay_s
        return self._rng.uniform(low, high) * 1000

    def sms(self, number: str, body: str) -> NumberBehaviour | None:
        """What happens to this SMS: delivered, then maybe a reply; None for nobody's number."""
        persona = self.personas.get(number)
        if persona is None:
            return None
        if self._rng.random() < persona.sms_reply:
            return NumberBehaviour(ack_after_ms=self._delay_ms(persona), ack_text=reply_text(body))
        return NumberBehaviour()

    def call(self, number: str) -> NumberBehaviour | None:
        """What happens to this call: unanswered, answered and hung up, or a key pressed."""
        persona = self.personas.get(number)
        if persona is None:
            return None
        if self._rng.random() >= persona.call_answer:
            return NumberBehaviour(call_status="no-answer")
        if self._rng.random() < persona.call_press:
            return NumberBehaviour(ack_after_ms=self._delay_ms(persona))
        return NumberBehaviour()


def persona_from_json(fields: dict[str, Any]) -> Persona:
    """A persona from a TOML table or a JSON object; raises :class:`PeopleError`."""
    fields = dict(fields)
    try:
        delay = fields.pop("delay_s", (3.0, 10.0))
        return Persona(**fields, delay_s=(float(delay[0]), float(delay[1])))
    except (TypeError, ValueError, IndexError) as exc:
        raise PeopleError(str(exc)) from None


def _personas(table: Any, path: Path) -> dict[str, Persona]:
    if not isinstance(table, dict):
        raise PeopleError(f"{path}: [people] must be a table of numbers")
    personas: dict[str, Persona] = {}
    for number, fields in table.items():
        if not isinstance(fields, dict):
            raise PeopleError(f"{path}: people.{number!s} must be a table")
        try:
            personas[str(number)] = persona_from_json(fields)
        except PeopleError as exc:
            raise PeopleError(f"{path}: people.{number!s}: {exc}") from None
    return personas
