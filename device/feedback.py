"""Tactile feedback: a vibration motor (or buzzer) on a gpiozero digital output.

Nothing visible on purpose: no LED can give her away. Patterns (their rhythms
and meanings are in :mod:`device.haptics`) are played one after the other by a
worker thread, so a ``received`` and an ``acknowledged`` arriving together
stay distinguishable.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Literal, Protocol

from gpiozero import Buzzer, DigitalOutputDevice
from gpiozero.pins import Factory

from device.haptics import Pattern, PulseTiming

log = logging.getLogger(__name__)
# What each pattern tells her, as the installer reads it in the log (the value follows in brackets).
PATTERN_WORDS = {
    Pattern.RECEIVED: "alerte reçue",
    Pattern.TEST_RECEIVED: "test reçu",
    Pattern.ACKNOWLEDGED: "prise en charge",
    Pattern.CLOSED: "alerte terminée",
    Pattern.CANCEL_REFUSED: "annulation refusée",
    Pattern.NOT_DELIVERED: "pas encore transmise",
    Pattern.LOW_BATTERY: "batterie faible",
}


class OnOff(Protocol):
    """The part of a gpiozero output device we use."""

    def on(self) -> None: ...

    def off(self) -> None: ...

    def close(self) -> None: ...


class Feedback:
    """Plays :class:`Pattern` s on ``output`` from a background thread."""

    def __init__(self, output: OnOff, *, timing: PulseTiming | None = None) -> None:
        self._output = output
        self._timing = timing or PulseTiming()
        self._queue: queue.Queue[Pattern | None] = queue.Queue()
        self._done = threading.Condition()
        self._played: list[Pattern] = []
        self._requested = 0
        self._thread = threading.Thread(target=self._run, name="vigie-feedback", daemon=True)
        self._thread.start()

    @classmethod
    def on_pin(
        cls,
        pin: int | str,
        *,
        kind: Literal["vibration", "buzzer"] = "vibration",
        pin_factory: Factory | None = None,
        timing: PulseTiming | None = None,
    ) -> Feedback:
        """Build the gpiozero output for ``pin`` (a Buzzer or a plain digital output for a motor)."""
        output: OnOff
        if kind == "buzzer":
            output = Buzzer(pin, pin_factory=pin_factory)
        else:
            output = DigitalOutputDevice(pin, initial_value=False, pin_factory=pin_factory)
        return cls(output, timing=timing)

    def play(self, pattern: Pattern) -> None:
        """Queue ``pattern``; returns immediately."""
        with self._done:
            self._requested += 1
        log.info("retour ressenti : %s [%s]", PATTERN_WORDS.get(pattern, pattern.value), pattern.value)
        self._queue.put(pattern)

    @property
    def played(self) -> list[Pattern]:
        """Patterns fully played so far, in order."""
        with self._done:
            return list(self._played)

    def wait_played(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` patterns have been played in all."""
        with self._done:
            return self._done.wait_for(lambda: len(self._played) >= count, timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every requested pattern has been played."""
        with self._done:
            return self._done.wait_for(lambda: len(self._played) >= self._requested, timeout)

    def close(self) -> None:
        """Stop the worker after the queued patterns, switch the output off and release the pin."""
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._output.off()
        self._output.close()

    def _run(self) -> None:
        first = True
        while (pattern := self._queue.get()) is not None:
            if not first:
                threading.Event().wait(self._timing.pause_s)  # felt as two patterns, not one
            first = False
            try:
                self._pulse(self._timing.steps(pattern))
            except Exception:  # a broken motor must not take the client down
                log.exception("échec de la sortie du retour ressenti")
            with self._done:
                self._played.append(pattern)
                self._done.notify_all()

    def _pulse(self, on_durations: list[float]) -> None:
        idle = threading.Event()  # never set: an interruptible sleep
        for index, on_s in enumerate(on_durations):
            if index:
                idle.wait(self._timing.gap_s)
            self._output.on()
            idle.wait(on_s)
            self._output.off()
