"""The anti-replay windows: sequence numbers once each, timestamps in range."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.replay import WINDOW, ReplayVerdict, SequenceWindow, TimeWindow, fresh_sequence_start


def test_each_sequence_number_is_accepted_once() -> None:
    window = SequenceWindow().admit(10)
    assert not window.is_fresh(10)
    assert window.is_fresh(11)


def test_a_queued_alert_with_an_older_sequence_still_gets_through_once() -> None:
    # Alert seq 5 was queued offline while heartbeats 6..20 went out.
    window = SequenceWindow()
    for seq in range(6, 21):
        window = window.admit(seq)
    assert window.is_fresh(5)
    window = window.admit(5)
    assert not window.is_fresh(5)


def test_sequence_far_below_the_window_is_a_replay() -> None:
    window = SequenceWindow().admit(WINDOW + 100)
    assert not window.is_fresh(50)


def test_window_survives_storage() -> None:
    window = SequenceWindow().admit(3).admit(7).admit(5)
    restored = SequenceWindow.from_stored(window.high, window.to_bytes())
    assert restored == window
    assert [s for s in range(10) if not restored.is_fresh(s)] == [3, 5, 7]


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=200))
def test_no_sequence_number_is_ever_accepted_twice(seqs: list[int]) -> None:
    window = SequenceWindow()
    accepted: set[int] = set()
    for seq in seqs:
        if window.is_fresh(seq):
            assert seq not in accepted
            accepted.add(seq)
            window = window.admit(seq)


def test_time_window() -> None:
    tw = TimeWindow(max_age_ms=1000, max_skew_ms=100)
    assert tw.check(5000, now_ms=5500) is ReplayVerdict.FRESH
    assert tw.check(3000, now_ms=5500) is ReplayVerdict.STALE
    assert tw.check(5700, now_ms=5500) is ReplayVerdict.FUTURE


def test_fresh_sequence_start_is_the_clock_and_clears_any_older_counter() -> None:
    now_ms = 1_795_000_000_000
    assert fresh_sequence_start(now_ms) == now_ms
    # An old counter: started at the clock a day earlier, then 2,880 heartbeats (one per 30 s).
    old = SequenceWindow()
    for n in range(2880):
        old = old.admit(fresh_sequence_start(now_ms - 86_400_000) + n)
    assert old.is_fresh(fresh_sequence_start(now_ms))
    with pytest.raises(ValueError):
        fresh_sequence_start(-1)


def test_a_new_counter_is_told_apart_from_an_ordinary_step() -> None:
    window = SequenceWindow().admit(41)
    assert not SequenceWindow().is_new_counter(fresh_sequence_start(1_795_000_000_000))  # first message
    assert not window.is_new_counter(42)
    assert not window.is_new_counter(41 + WINDOW)
    assert window.is_new_counter(fresh_sequence_start(1_795_000_000_000))
