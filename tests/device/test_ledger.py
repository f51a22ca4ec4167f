"""The device's sequence counter: from the clock when new, and after the clock is set."""

from __future__ import annotations

from pathlib import Path

from device.ledger import CLOCK_STEP_MS, Ledger
from device.queue import NewItem
from protocol.replay import SequenceWindow, fresh_sequence_start

IMAGE_DATE_MS = 1_780_000_000_000  # what a reflashed Pi believes before NTP
REAL_NOW_MS = IMAGE_DATE_MS + 90 * 86_400_000


class Clocks:
    """A wall clock that can be set, and a monotonic one that only runs."""

    def __init__(self, wall_ms: int) -> None:
        self.wall_ms = wall_ms
        self.mono_s = 50.0

    def run(self, seconds: float) -> None:
        self.wall_ms += int(seconds * 1000)
        self.mono_s += seconds

    def ledger(self, state_dir: Path) -> Ledger:
        return Ledger(
            state_dir, now_ms=lambda: self.wall_ms, recent_ms=86_400_000, monotonic=lambda: self.mono_s
        )


def item(seq: int) -> NewItem:
    return NewItem(f"e-{seq}", "vigie/v1/dev/d/up/alert", b"{}")


def test_a_new_counter_starts_at_the_clock_and_an_existing_one_continues(tmp_path: Path) -> None:
    clocks = Clocks(REAL_NOW_MS)
    ledger = clocks.ledger(tmp_path)
    assert ledger.next_seq() == fresh_sequence_start(REAL_NOW_MS)
    stored, durable = ledger.store("alert", item, ts_ms=clocks.wall_ms)
    assert durable and stored.seq == REAL_NOW_MS + 1
    ledger.close()
    clocks.run(3600)
    again = clocks.ledger(tmp_path)  # a restart: the counter is read, the clock is not used
    assert again.next_seq() == REAL_NOW_MS + 2
    again.close()


def test_a_counter_started_before_ntp_follows_the_clock_once_it_is_set(tmp_path: Path) -> None:
    old_counter = SequenceWindow().admit(fresh_sequence_start(REAL_NOW_MS - 86_400_000) + 2880)
    clocks = Clocks(IMAGE_DATE_MS)
    ledger = clocks.ledger(tmp_path / "reflashed")
    early = ledger.next_seq()
    assert not old_counter.is_fresh(early)  # what the dispatcher would refuse
    clocks.run(30)
    assert ledger.next_seq() == early + 1  # ordinary time passing changes nothing
    clocks.wall_ms = REAL_NOW_MS  # NTP steps the clock
    clocks.run(1)
    stepped = ledger.next_seq()
    assert stepped >= fresh_sequence_start(REAL_NOW_MS) and old_counter.is_fresh(stepped)
    clocks.wall_ms += 10 * CLOCK_STEP_MS  # only once: later settings are not followed
    assert ledger.next_seq() == stepped + 1
    ledger.close()


def test_an_existing_counter_never_follows_the_clock(tmp_path: Path) -> None:
    clocks = Clocks(REAL_NOW_MS)
    first = clocks.ledger(tmp_path)
    seq = first.next_seq()
    first.close()
    again = clocks.ledger(tmp_path)
    clocks.wall_ms += 10 * CLOCK_STEP_MS
    assert again.next_seq() == seq + 1  # a jump would put queued alerts outside the window
    again.close()
