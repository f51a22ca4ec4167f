"""What the button makes her feel, and when: pure rules, no GPIO, no threads, no clock of its own.

Every pattern is a rhythm of short (S) and long (L) pulses, all different from
each other so that each can be learnt and told apart without looking:

==================  ======  =====================================================
pattern             rhythm  meaning
==================  ======  =====================================================
``received``        S       the dispatcher has stored the alert
``test_received``   S L     the dispatcher has the *test* (never mistaken for an alert)
``acknowledged``    S S S   a human responder took it
``closed``          L       it is over: resolved, false alarm, or the cancel was taken
``cancel_refused``  L L     the cancel was refused: the alert goes on
``not_delivered``   L S L   no ``received`` yet: use your phone (repeated while it lasts)
``low_battery``     S S     the battery is low (repeated, rarely)
==================  ======  =====================================================

A duress cancel gives exactly the ``closed`` of a normal cancel: nobody
watching can tell them apart (docs/protocol.md).

The two watches below decide *when* the repeated patterns are due. Callers
pass ``now`` (seconds, monotonic) so the timing rules are tested exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Pattern(StrEnum):
    """What the person can feel, and what it means (see the module docstring)."""

    RECEIVED = "received"
    TEST_RECEIVED = "test_received"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"
    CANCEL_REFUSED = "cancel_refused"
    NOT_DELIVERED = "not_delivered"
    LOW_BATTERY = "low_battery"


SHORT, LONG = "S", "L"
RHYTHMS: dict[Pattern, str] = {
    Pattern.RECEIVED: "S",
    Pattern.TEST_RECEIVED: "SL",
    Pattern.ACKNOWLEDGED: "SSS",
    Pattern.CLOSED: "L",
    Pattern.CANCEL_REFUSED: "LL",
    Pattern.NOT_DELIVERED: "LSL",
    Pattern.LOW_BATTERY: "SS",
}


def downlink_pattern(downlink_type: str, about: str) -> Pattern | None:
    """What a downlink of ``downlink_type`` about our ``about`` (alert, test, cancel) makes her feel.

    A cancel's own ``received`` gives nothing: its answer is ``closed`` or
    ``cancel_refused``. Unknown types give nothing.
    """
    if downlink_type == "received":
        return None if about == "cancel" else Pattern.TEST_RECEIVED if about == "test" else Pattern.RECEIVED
    return {
        "acknowledged": Pattern.ACKNOWLEDGED,
        "resolved": Pattern.CLOSED,  # resolved or false alarm
        "cancelled": Pattern.CLOSED,  # normal or duress PIN: the same, on purpose
        "cancel_refused": Pattern.CANCEL_REFUSED,
    }.get(downlink_type)


@dataclass(frozen=True, slots=True)
class PulseTiming:
    """Durations in seconds; tests use tiny values.

    ``pause_s`` separates two patterns played back to back, so that a
    ``received`` followed at once by an ``acknowledged`` is felt as two.
    """

    short_s: float = 0.15
    long_s: float = 0.6
    gap_s: float = 0.15
    pause_s: float = 0.8

    def steps(self, pattern: Pattern) -> list[float]:
        """On-durations of the pulses of ``pattern`` (separated by ``gap_s``)."""
        return [self.short_s if beat == SHORT else self.long_s for beat in RHYTHMS[pattern]]


@dataclass(frozen=True, slots=True)
class HapticPolicy:
    """When the repeated patterns are due.

    ``not_delivered_after_s``: how long an alert may wait for ``received``
    before she is told to use her phone; then again every
    ``not_delivered_repeat_s`` while it lasts. ``low_battery_pct``: at or
    below it the battery is low; told at once, then every
    ``low_battery_repeat_s`` while it stays low.
    """

    not_delivered_after_s: float = 15.0
    not_delivered_repeat_s: float = 15.0
    low_battery_pct: int = 15
    low_battery_repeat_s: float = 1800.0

    def __post_init__(self) -> None:
        if self.not_delivered_after_s <= 0 or self.not_delivered_repeat_s <= 0:
            raise ValueError("not-delivered delays must be positive")
        if not 0 <= self.low_battery_pct <= 100:
            raise ValueError("low_battery_pct must be 0-100")
        if self.low_battery_repeat_s <= 0:
            raise ValueError("low_battery_repeat_s must be positive")


@dataclass(slots=True)
class NotDeliveredWatch:
    """Alerts sent but not yet ``received``: when to tell her so.

    An alert is watched from the moment it is raised (stored), whether or not
    the link is up: a device out of coverage is exactly the case to report.
    """

    policy: HapticPolicy = field(default_factory=HapticPolicy)
    _due: dict[str, float] = field(default_factory=dict)

    def watch(self, event_id: str, now: float) -> None:
        """Start watching ``event_id`` (raised at ``now``); idempotent."""
        self._due.setdefault(event_id, now + self.policy.not_delivered_after_s)

    def settle(self, event_id: str) -> None:
        """The dispatcher has it, or it is over: stop watching."""
        self._due.pop(event_id, None)

    def watching(self) -> set[str]:
        """Ids still waiting for ``received``."""
        return set(self._due)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` may next return a pattern, or None."""
        return min(self._due.values(), default=None)

    def poll(self, now: float) -> list[Pattern]:
        """One ``not_delivered`` if any watched alert is due (several at once feel as one)."""
        due = [event_id for event_id, at in self._due.items() if at <= now]
        for event_id in due:
            self._due[event_id] = now + self.policy.not_delivered_repeat_s
        return [Pattern.NOT_DELIVERED] if due else []


@dataclass(slots=True)
class LowBatteryWatch:
    """Battery readings in, a ``low_battery`` pattern out when it is time to say so."""

    policy: HapticPolicy = field(default_factory=HapticPolicy)
    _next_warning: float | None = None

    def reading(self, pct: int | None, now: float) -> list[Pattern]:
        """Feed a reading (None: unknown, never a warning)."""
        if pct is None or pct > self.policy.low_battery_pct:
            self._next_warning = None  # charged again: warn at once next time it runs low
            return []
        if self._next_warning is not None and now < self._next_warning:
            return []
        self._next_warning = now + self.policy.low_battery_repeat_s
        return [Pattern.LOW_BATTERY]
