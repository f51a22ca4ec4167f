"""Replay protection: a per-device sequence window plus a timestamp window.

Devices number every signed uplink with a monotonic sequence number that
survives restarts. A store-and-forward device re-sends a queued alert with its
*original* sequence number, possibly after newer heartbeats got through, so a
strict "greater than the last one" rule would refuse legitimate alerts. We use
a sliding window (as IPsec does): any sequence number not seen before and not
older than ``WINDOW`` below the highest one is accepted once.

The dispatcher handles exact re-sends (same event id) as duplicates *before*
consulting this window, so re-sending an alert is always safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

WINDOW = 4096  # ~34 h of 30-s heartbeats: longer than the alert age limit
_MASK = (1 << WINDOW) - 1  # built once: a 4096-bit integer per admitted message is not free


class ReplayVerdict(StrEnum):
    """Outcome of a freshness check."""

    FRESH = "fresh"
    REPLAYED = "replay"  # sequence number already used, or far too old
    STALE = "stale"  # timestamp older than allowed
    FUTURE = "future_ts"  # timestamp too far ahead of our clock


@dataclass(frozen=True, slots=True)
class SequenceWindow:
    """Immutable anti-replay state for one device.

    ``high`` is the highest accepted sequence number (-1 before the first);
    bit ``i`` of ``seen`` records that ``high - i`` was accepted.
    """

    high: int = -1
    seen: int = 0

    def is_fresh(self, seq: int) -> bool:
        """True if ``seq`` was never accepted and is inside the window."""
        if seq > self.high:
            return True
        offset = self.high - seq
        return offset < WINDOW and not (self.seen >> offset) & 1

    def is_new_counter(self, seq: int) -> bool:
        """True when ``seq`` lies beyond the whole window: the device started a new counter.

        That is what a device does after losing its state directory
        (:func:`fresh_sequence_start`); it is accepted like any higher number,
        and worth a line in the log.
        """
        return self.high >= 0 and seq - self.high > WINDOW

    def admit(self, seq: int) -> SequenceWindow:
        """State after accepting ``seq`` (call only when :meth:`is_fresh`)."""
        if seq > self.high:
            shift = seq - self.high
            seen = ((self.seen << shift) | 1) & _MASK if shift < WINDOW else 1
            return SequenceWindow(high=seq, seen=seen)
        return SequenceWindow(high=self.high, seen=self.seen | (1 << (self.high - seq)))

    def to_bytes(self) -> bytes:
        """Compact form for storage next to the device record."""
        return self.seen.to_bytes(WINDOW // 8, "big")

    @classmethod
    def from_stored(cls, high: int, seen: bytes) -> SequenceWindow:
        """Rebuild the window saved with :meth:`to_bytes`."""
        return cls(high=high, seen=int.from_bytes(seen, "big"))


def merge_windows(a: SequenceWindow, b: SequenceWindow) -> SequenceWindow:
    """The window that accepted everything ``a`` or ``b`` accepted (their union).

    Two instances each admit the sequence numbers they received; storing the
    union means a restarted instance refuses replays of both instances' messages.
    """
    high = max(a.high, b.high)
    if high < 0:
        return SequenceWindow()
    seen = 0
    for w in (a, b):
        shift = high - w.high
        if w.high >= 0 and shift < WINDOW:
            seen |= (w.seen << shift) & _MASK
    return SequenceWindow(high=high, seen=seen)


def fresh_sequence_start(now_ms: int) -> int:
    """First sequence number of a device whose counter is new (first start, or state directory lost).

    The wall clock in milliseconds. A device numbers its messages one by one
    from there, so as long as it sends fewer than 1,000 messages a second on
    average (it sends one heartbeat every 30 s) its counter stays below the
    clock, and a counter restarted later from the clock starts above every
    sequence number it used before: the dispatcher's window accepts the new
    messages (``seq > high``) while every captured old one stays refused
    (already seen, or more than :data:`WINDOW` below). Counters that started at
    0 (devices provisioned before this rule) are far below any clock value, so
    they come back the same way. Needs a clock set within a few minutes, which
    the timestamp window demands anyway (docs/protocol.md).
    """
    if now_ms < 0:
        raise ValueError("the clock is before 1970")
    return now_ms


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Accepted timestamp range relative to the receiver's clock."""

    max_age_ms: int
    max_skew_ms: int = 60_000

    def check(self, ts_ms: int, now_ms: int) -> ReplayVerdict:
        """Classify a message timestamp against ``now_ms``."""
        if ts_ms > now_ms + self.max_skew_ms:
            return ReplayVerdict.FUTURE
        if ts_ms < now_ms - self.max_age_ms:
            return ReplayVerdict.STALE
        return ReplayVerdict.FRESH


# A queued alert may legitimately arrive after hours offline; a heartbeat may not.
ALERT_TIME_WINDOW = TimeWindow(max_age_ms=24 * 3600 * 1000)
HEARTBEAT_TIME_WINDOW = TimeWindow(max_age_ms=10 * 60 * 1000)
# A live position is worth something only now: it is never queued (QoS 0), so an
# old one is a replay or a clock far off, and must not be shown as "where she is".
POSITION_TIME_WINDOW = TimeWindow(max_age_ms=2 * 60 * 1000)
