"""Which device floods: the pure decision behind a broker-side quarantine (issue 13, finding 3).

Admission (dispatcher/alerting/admission.py) refuses a flooding device's excess at a
few µs each, but only once paho has read it: at full speed the broker relays
thousands of messages into the dispatcher's socket first, and another device's
alert waits behind them. Only the broker can stop a flood before it reaches us;
this core says *when* to ask it to (dispatcher/fleet/quarantine.py does the asking).

Events in: :meth:`FloodWatch.refused` (admission refused one message of a
device, at a monotonic time) and :meth:`FloodWatch.lift` (its quarantine
ended). Output: ``refused`` returns True exactly when the device must be
quarantined now.

Invariants:

1. A device is reported only after more than ``threshold`` refusals within
   one window of ``window_s`` seconds (the window opens at the first refusal
   after the previous one closed): a device refused at most ``threshold``
   times per window is never reported.
2. Once per episode: after ``refused`` returned True for a device, it returns
   False for that device until :meth:`lift` is called for it.
3. Bounded memory: at most ``max_tracked`` devices are counted at once
   (closed windows are pruned first; beyond, new devices are not counted
   until room is made), plus the quarantined ones.

No clock, no I/O, not thread-safe: the caller serialises calls and passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FloodPolicy:
    """More than ``threshold`` refusals within ``window_s`` seconds: quarantine."""

    threshold: int = 200
    window_s: float = 1.0
    max_tracked: int = 10_000


class FloodWatch:
    """Counts each device's refusals per window; reports a flooding device once."""

    def __init__(self, policy: FloodPolicy | None = None) -> None:
        self.policy = policy or FloodPolicy()
        self._windows: dict[str, tuple[float, int]] = {}  # device -> (window opened at, refusals)
        self._quarantined: set[str] = set()

    def refused(self, device: str, now: float) -> bool:
        """Admission refused one message of ``device`` at ``now``: True if it must be quarantined now."""
        if device in self._quarantined:
            return False
        opened, count = self._windows.get(device, (now, 0))
        if now - opened >= self.policy.window_s:
            opened, count = now, 0
        count += 1
        if count > self.policy.threshold:
            self._windows.pop(device, None)
            self._quarantined.add(device)
            return True
        if device not in self._windows and not self._room(now):
            return False
        self._windows[device] = (opened, count)
        return False

    def lift(self, device: str) -> None:
        """``device``'s quarantine ended: it is counted afresh."""
        self._quarantined.discard(device)
        self._windows.pop(device, None)

    def is_quarantined(self, device: str) -> bool:
        return device in self._quarantined

    def quarantined(self) -> frozenset[str]:
        """The devices reported and not lifted yet."""
        return frozenset(self._quarantined)

    def _room(self, now: float) -> bool:
        if len(self._windows) < self.policy.max_tracked:
            return True
        window = self.policy.window_s
        self._windows = {d: w for d, w in self._windows.items() if now - w[0] < window}
        return len(self._windows) < self.policy.max_tracked
