"""Pure gesture recognition: press/release timestamps in, recognised gestures out.

No GPIO, no threads, no clock of its own: callers pass ``now`` (seconds on a
monotonic clock) so that the timing rules can be tested exactly.

The rules, chosen so that a frightened person gets an alert and a fidgeting one
does not:

* **Bounce.** A contact shorter than ``min_press_s`` is ignored entirely, so
  mechanical bounce (a few milliseconds) never counts as a press.
* **Alert by hold.** Holding the button for ``hold_s`` raises an alert *while it
  is still held* (the recogniser's deadline tells the caller when to poll).
* **Alert by taps.** ``presses`` taps whose press times span at most
  ``within_s`` raise an alert at the release of the last one. Disabled when
  ``presses`` is 0. Only when no alert is active: while one is, taps are
  counted towards a cancel instead, so panic tapping after an alert can never
  start a second one by accident nor be mistaken for one.
* **Cancel.** While an alert is active, ``cancel_presses`` taps within
  ``cancel_within_s`` cancel it.
* **Duress cancel.** While an alert is active, ``cancel_presses - 1`` taps
  followed by a hold (the last press held for ``hold_s``), all starting within
  ``cancel_within_s``. To an onlooker it looks like the ordinary cancel.
  With ``duress`` off, that gesture is a hold like any other: a new alert
  (the safe side), never a plain cancel.
* **Test.** When no alert is active, exactly ``test_presses`` taps (2 by
  default in device.toml, 0 disables it) whose press times fall within
  ``within_s``, followed by nothing until ``within_s`` after the first: a test
  alert. It is recognised only once that window is over, so a third tap (or a
  hold) still makes an alert: the test can never steal an alert, it only
  uses taps that would otherwise have done nothing.
* A single tap never does anything, and every recognised gesture starts a
  fresh count so the taps of one gesture never feed the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class GestureKind(StrEnum):
    """What the person asked for."""

    ALERT_HOLD = "hold"
    ALERT_MULTI_PRESS = "multi_press"
    CANCEL = "cancel"
    DURESS_CANCEL = "duress_cancel"
    TEST = "test"

    @property
    def is_alert(self) -> bool:
        """True for the two gestures that raise an alert."""
        return self in (GestureKind.ALERT_HOLD, GestureKind.ALERT_MULTI_PRESS)


@dataclass(frozen=True, slots=True)
class GestureTiming:
    """Thresholds of the gestures (see the module docstring for the rules)."""

    hold_s: float = 2.0
    presses: int = 3
    within_s: float = 2.0
    cancel_presses: int = 5
    cancel_within_s: float = 3.0
    min_press_s: float = 0.03
    test_presses: int = 0
    duress: bool = True

    def __post_init__(self) -> None:
        if self.hold_s <= self.min_press_s:
            raise ValueError("hold_s must be longer than min_press_s")
        if self.presses == 1 or self.presses < 0:
            raise ValueError("presses must be 0 (disabled) or at least 2: a single tap never alerts")
        if self.cancel_presses < 2:
            raise ValueError("cancel_presses must be at least 2")
        if self.test_presses == 1 or self.test_presses < 0:
            raise ValueError(
                "test_presses must be 0 (disabled) or at least 2: a single tap never does anything"
            )
        if self.test_presses and self.presses and self.test_presses >= self.presses:
            raise ValueError("test_presses must be fewer than presses (those taps raise an alert first)")
        if self.within_s <= 0 or self.cancel_within_s <= 0 or self.min_press_s < 0:
            raise ValueError("time windows must be positive")


@dataclass(frozen=True, slots=True)
class Recognised:
    """A gesture and the clock time at which it was recognised."""

    kind: GestureKind
    at: float


@dataclass(slots=True)
class GestureRecogniser:
    """State machine turning button edges into :class:`Recognised` gestures.

    Not thread-safe: the caller serialises calls (see :mod:`device.inputs`).
    """

    timing: GestureTiming = field(default_factory=GestureTiming)
    alert_active: bool = False
    _pressed_at: float | None = None
    _hold_fired: bool = False
    _taps: list[float] = field(default_factory=list)

    def set_alert_active(self, active: bool) -> None:
        """Tell the recogniser whether an alert is pending or active (enables cancel gestures)."""
        self.alert_active = active

    @property
    def is_pressed(self) -> bool:
        """True between an accepted press and its release."""
        return self._pressed_at is not None

    def press(self, now: float) -> list[Recognised]:
        """The contact closed at ``now``."""
        if self._pressed_at is None:
            self._pressed_at = now
            self._hold_fired = False
        return []

    def release(self, now: float) -> list[Recognised]:
        """The contact opened at ``now``."""
        pressed_at = self._pressed_at
        if pressed_at is None:
            return []
        self._pressed_at = None
        duration = now - pressed_at
        if self._hold_fired or duration < self.timing.min_press_s:
            return []
        if duration >= self.timing.hold_s:
            # The caller polled too late; the hold still counts, dated when it matured.
            return [self._hold_matured(pressed_at, pressed_at + self.timing.hold_s)]
        return self._tap(pressed_at, now)

    def poll(self, now: float) -> list[Recognised]:
        """Recognise a hold or a test that matured by ``now``; call at :meth:`next_deadline`."""
        pressed_at = self._pressed_at
        if pressed_at is None:
            test_at = self._test_deadline()
            if test_at is None or now < test_at:
                return []
            self._taps.clear()
            return [Recognised(GestureKind.TEST, now)]
        if self._hold_fired or now - pressed_at < self.timing.hold_s:
            return []
        self._hold_fired = True
        return [self._hold_matured(pressed_at, now)]

    def next_deadline(self) -> float | None:
        """Clock time at which :meth:`poll` may recognise something, or None."""
        if self._pressed_at is None:
            return self._test_deadline()
        if self._hold_fired:
            return None
        return self._pressed_at + self.timing.hold_s

    def _test_deadline(self) -> float | None:
        """End of the window of a pending test gesture (released, no alert active), or None."""
        wanted = self.timing.test_presses
        if not wanted or self.alert_active or not self._taps:
            return None
        group = [t for t in self._taps if t >= self._taps[-1] - self.timing.within_s]
        return group[0] + self.timing.within_s if len(group) == wanted else None

    def _hold_matured(self, pressed_at: float, now: float) -> Recognised:
        earlier_taps = self._taps_since(pressed_at - self.timing.cancel_within_s)
        self._taps.clear()
        if self.timing.duress and self.alert_active and earlier_taps >= self.timing.cancel_presses - 1:
            return self._cancelled(GestureKind.DURESS_CANCEL, now)
        self.alert_active = True
        return Recognised(GestureKind.ALERT_HOLD, now)

    def _tap(self, pressed_at: float, now: float) -> list[Recognised]:
        self._taps.append(pressed_at)
        self._forget_taps_before(pressed_at - max(self.timing.within_s, self.timing.cancel_within_s))
        if self.alert_active:
            if self._taps_since(pressed_at - self.timing.cancel_within_s) >= self.timing.cancel_presses:
                self._taps.clear()
                return [self._cancelled(GestureKind.CANCEL, now)]
            return []
        presses = self.timing.presses
        if presses and self._taps_since(pressed_at - self.timing.within_s) >= presses:
            self._taps.clear()
            self.alert_active = True
            return [Recognised(GestureKind.ALERT_MULTI_PRESS, now)]
        return []

    def _cancelled(self, kind: GestureKind, now: float) -> Recognised:
        # The owner re-arms us if older alerts are still active after this cancel.
        self.alert_active = False
        return Recognised(kind, now)

    def _taps_since(self, start: float) -> int:
        return sum(1 for t in self._taps if t >= start)

    def _forget_taps_before(self, start: float) -> None:
        self._taps[:] = [t for t in self._taps if t >= start]
