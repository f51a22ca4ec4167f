"""The pure rules of what she feels and when: rhythms, "not delivered yet", low battery."""

from __future__ import annotations

import pytest

from device.haptics import (
    RHYTHMS,
    HapticPolicy,
    LowBatteryWatch,
    NotDeliveredWatch,
    Pattern,
    PulseTiming,
    downlink_pattern,
)

POLICY = HapticPolicy(
    not_delivered_after_s=15, not_delivered_repeat_s=10, low_battery_pct=15, low_battery_repeat_s=1800
)


def test_every_pattern_has_its_own_rhythm() -> None:
    assert set(RHYTHMS) == set(Pattern)
    assert len(set(RHYTHMS.values())) == len(RHYTHMS)
    # The test's "received" must never feel like an alert's.
    assert RHYTHMS[Pattern.TEST_RECEIVED] != RHYTHMS[Pattern.RECEIVED]


def test_pulse_steps_follow_the_rhythm() -> None:
    timing = PulseTiming(short_s=0.1, long_s=0.5, gap_s=0.1)
    assert timing.steps(Pattern.RECEIVED) == [0.1]
    assert timing.steps(Pattern.ACKNOWLEDGED) == [0.1, 0.1, 0.1]
    assert timing.steps(Pattern.CLOSED) == [0.5]
    assert timing.steps(Pattern.CANCEL_REFUSED) == [0.5, 0.5]
    assert timing.steps(Pattern.NOT_DELIVERED) == [0.5, 0.1, 0.5]


def test_not_delivered_after_the_delay_then_repeated_while_it_lasts() -> None:
    watch = NotDeliveredWatch(POLICY)
    watch.watch("a1", now=100.0)
    assert watch.next_deadline() == 115.0
    assert watch.poll(114.9) == []
    assert watch.poll(115.0) == [Pattern.NOT_DELIVERED]
    assert watch.poll(116.0) == []
    assert watch.next_deadline() == 125.0
    assert watch.poll(125.0) == [Pattern.NOT_DELIVERED]
    watch.settle("a1")  # "received" at last
    assert watch.next_deadline() is None
    assert watch.poll(1000.0) == []


def test_received_in_time_means_no_reminder_and_watch_is_idempotent() -> None:
    watch = NotDeliveredWatch(POLICY)
    watch.watch("a1", now=0.0)
    watch.watch("a1", now=10.0)  # a restart re-watching it does not push the deadline back
    assert watch.next_deadline() == 15.0
    watch.settle("a1")
    watch.settle("unknown")  # harmless
    assert watch.poll(20.0) == [] and watch.watching() == set()


def test_several_undelivered_alerts_give_one_reminder_at_a_time() -> None:
    watch = NotDeliveredWatch(POLICY)
    watch.watch("a1", now=0.0)
    watch.watch("a2", now=1.0)
    assert watch.poll(20.0) == [Pattern.NOT_DELIVERED]
    assert watch.watching() == {"a1", "a2"}


def test_low_battery_at_once_then_rarely_and_again_after_a_charge() -> None:
    watch = LowBatteryWatch(POLICY)
    assert watch.reading(None, 0.0) == []  # unknown level: never a warning
    assert watch.reading(80, 0.0) == []
    assert watch.reading(15, 10.0) == [Pattern.LOW_BATTERY]
    assert watch.reading(14, 70.0) == []
    assert watch.reading(12, 1810.0) == [Pattern.LOW_BATTERY]
    assert watch.reading(90, 1900.0) == []  # charged
    assert watch.reading(10, 1960.0) == [Pattern.LOW_BATTERY]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"not_delivered_after_s": 0},
        {"not_delivered_repeat_s": -1},
        {"low_battery_pct": 101},
        {"low_battery_repeat_s": 0},
    ],
)
def test_bad_policy_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HapticPolicy(**kwargs)  # type: ignore[arg-type]


def test_each_downlink_has_its_pattern_and_a_cancels_received_has_none() -> None:
    assert downlink_pattern("received", "alert") is Pattern.RECEIVED
    assert downlink_pattern("received", "test") is Pattern.TEST_RECEIVED
    assert downlink_pattern("received", "cancel") is None
    assert downlink_pattern("acknowledged", "alert") is Pattern.ACKNOWLEDGED
    assert downlink_pattern("resolved", "alert") is downlink_pattern("cancelled", "alert") is Pattern.CLOSED
    assert downlink_pattern("cancel_refused", "alert") is Pattern.CANCEL_REFUSED
    assert downlink_pattern("something-new", "alert") is None
