"""The physical button: gpiozero edges fed to the pure :class:`GestureRecogniser`.

gpiozero calls us from its own threads (one per pin on real hardware, the
caller's thread with mock pins); a lock serialises the recogniser and a small
timer thread polls it when a hold may mature, so a hold alerts while the
button is still held.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gpiozero import Button
from gpiozero.pins import Factory

from device.gestures import GestureRecogniser, Recognised

log = logging.getLogger(__name__)
GESTURE_WORDS = {
    "hold": "alerte (appui long)",
    "multi_press": "alerte (appuis brefs)",
    "cancel": "annulation",
    "duress_cancel": "annulation sous contrainte",
    "test": "test",
}

GestureHandler = Callable[[Recognised], None]
Clock = Callable[[], float]


class ButtonInput:
    """Wires a gpiozero :class:`~gpiozero.Button` to a recogniser.

    ``on_gesture`` is called (from a gpiozero or timer thread) for each
    recognised gesture; it must return quickly.
    """

    def __init__(
        self,
        button: Button,
        recogniser: GestureRecogniser,
        on_gesture: GestureHandler,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._button = button
        self._recogniser = recogniser
        self._on_gesture = on_gesture
        self._clock = clock
        self._lock = threading.Condition()
        self._closed = False
        self._timer = threading.Thread(target=self._poll_forever, name="vigie-hold-timer", daemon=True)
        self._timer.start()
        button.when_pressed = self._pressed
        button.when_released = self._released

    @classmethod
    def on_pin(
        cls,
        pin: int | str,
        recogniser: GestureRecogniser,
        on_gesture: GestureHandler,
        *,
        pull_up: bool = True,
        pin_factory: Factory | None = None,
        clock: Clock = time.monotonic,
    ) -> ButtonInput:
        """Build the gpiozero Button; bounce is filtered by the recogniser, not by gpiozero."""
        button = Button(pin, pull_up=pull_up, bounce_time=None, pin_factory=pin_factory)
        return cls(button, recogniser, on_gesture, clock=clock)

    def set_alert_active(self, active: bool) -> None:
        """Enable (or disable) the cancel gestures."""
        with self._lock:
            self._recogniser.set_alert_active(active)

    def close(self) -> None:
        """Detach from the button and stop the timer."""
        self._button.when_pressed = None
        self._button.when_released = None
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._timer.join(timeout=5)
        self._button.close()

    def _pressed(self) -> None:
        with self._lock:
            self._recogniser.press(self._clock())
            self._lock.notify_all()  # a new hold deadline exists

    def _released(self) -> None:
        with self._lock:
            recognised = self._recogniser.release(self._clock())
            self._lock.notify_all()  # a test gesture's window may now be pending
        self._dispatch(recognised)

    def _poll_forever(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                deadline = self._recogniser.next_deadline()
                now = self._clock()
                if deadline is None or deadline > now:
                    self._lock.wait(None if deadline is None else deadline - now)
                    continue
                recognised = self._recogniser.poll(now)
            self._dispatch(recognised)

    def _dispatch(self, recognised: list[Recognised]) -> None:
        for gesture in recognised:
            log.info(
                "geste reconnu : %s [%s]",
                GESTURE_WORDS.get(gesture.kind.value, gesture.kind.value),
                gesture.kind.value,
            )
            try:
                self._on_gesture(gesture)
            except Exception:  # never let a handler bug kill gpiozero's thread
                log.exception("échec du traitement du geste %s", gesture.kind.value)
