"""The pure gesture recogniser, driven with explicit timestamps (no sleeping)."""

from __future__ import annotations

import pytest

from device.gestures import GestureKind, GestureRecogniser, GestureTiming, Recognised

TIMING = GestureTiming(hold_s=2.0, presses=3, within_s=2.0, cancel_presses=5, cancel_within_s=3.0)


def kinds(results: list[Recognised]) -> list[GestureKind]:
    return [r.kind for r in results]


def tap(rec: GestureRecogniser, at: float, length: float = 0.1) -> list[GestureKind]:
    rec.press(at)
    return kinds(rec.poll(at + length / 2) + rec.release(at + length))


def taps(rec: GestureRecogniser, count: int, start: float = 0.0, every: float = 0.3) -> list[GestureKind]:
    out: list[GestureKind] = []
    for i in range(count):
        out += tap(rec, start + i * every)
    return out


def test_hold_alerts_while_still_held_and_only_once() -> None:
    rec = GestureRecogniser(TIMING)
    rec.press(10.0)
    assert rec.next_deadline() == pytest.approx(12.0)
    assert rec.poll(11.99) == []
    assert kinds(rec.poll(12.0)) == [GestureKind.ALERT_HOLD]
    assert rec.poll(13.0) == []
    assert rec.next_deadline() is None
    assert rec.release(15.0) == []


def test_hold_shorter_than_threshold_is_nothing() -> None:
    rec = GestureRecogniser(TIMING)
    rec.press(0.0)
    assert rec.poll(1.9) == []
    assert rec.release(1.9) == []


def test_hold_is_recognised_on_release_if_the_poll_came_late() -> None:
    rec = GestureRecogniser(TIMING)
    rec.press(0.0)
    result = rec.release(2.5)
    assert kinds(result) == [GestureKind.ALERT_HOLD]
    assert result[0].at == pytest.approx(2.0)


def test_single_tap_never_triggers() -> None:
    rec = GestureRecogniser(TIMING)
    assert tap(rec, 0.0) == []
    rec.set_alert_active(True)
    assert tap(rec, 5.0) == []


def test_contact_bounce_never_counts_as_presses() -> None:
    rec = GestureRecogniser(TIMING)
    out: list[GestureKind] = []
    for i in range(20):  # 20 pulses of 2 ms: a bouncing contact, not 20 presses
        rec.press(i * 0.004)
        out += kinds(rec.release(i * 0.004 + 0.002))
    assert out == []


def test_triple_press_within_window_alerts_at_the_third_release() -> None:
    rec = GestureRecogniser(TIMING)
    assert taps(rec, 2) == []
    assert tap(rec, 0.6) == [GestureKind.ALERT_MULTI_PRESS]
    assert rec.alert_active


def test_presses_spread_beyond_window_do_not_alert() -> None:
    rec = GestureRecogniser(TIMING)
    assert taps(rec, 3, every=1.1) == []  # first to third press: 2.2 s > 2.0 s


def test_multi_press_can_be_disabled() -> None:
    rec = GestureRecogniser(GestureTiming(presses=0))
    assert taps(rec, 4) == []


def test_cancel_needs_an_active_alert_and_five_taps() -> None:
    rec = GestureRecogniser(TIMING)
    rec.set_alert_active(True)
    assert taps(rec, 4) == []
    assert tap(rec, 1.2) == [GestureKind.CANCEL]
    assert not rec.alert_active


def test_panic_tapping_without_alert_alerts_once_and_never_cancels() -> None:
    rec = GestureRecogniser(TIMING)
    assert taps(rec, 5) == [GestureKind.ALERT_MULTI_PRESS]


def test_taps_during_an_active_alert_do_not_raise_a_second_alert() -> None:
    rec = GestureRecogniser(TIMING)
    rec.set_alert_active(True)
    assert taps(rec, 3) == []


def test_duress_cancel_is_four_taps_then_a_hold() -> None:
    rec = GestureRecogniser(TIMING)
    rec.set_alert_active(True)
    assert taps(rec, 4) == []
    rec.press(1.3)
    assert kinds(rec.poll(3.31)) == [GestureKind.DURESS_CANCEL]
    assert rec.release(3.5) == []


def test_hold_after_too_few_taps_is_an_alert_not_a_duress_cancel() -> None:
    rec = GestureRecogniser(TIMING)
    rec.set_alert_active(True)
    taps(rec, 2)
    rec.press(0.7)
    assert kinds(rec.poll(2.7)) == [GestureKind.ALERT_HOLD]


def test_a_recognised_gesture_starts_a_fresh_count() -> None:
    rec = GestureRecogniser(TIMING)
    assert taps(rec, 3) == [GestureKind.ALERT_MULTI_PRESS]
    # Two more taps right after: with the three above they would make five, but they start afresh.
    assert taps(rec, 2, start=0.9) == []


@pytest.mark.parametrize("kwargs", [{"presses": 1}, {"cancel_presses": 1}, {"hold_s": 0.01}, {"within_s": 0}])
def test_invalid_timing_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GestureTiming(**kwargs)  # type: ignore[arg-type]


TEST_TIMING = GestureTiming(
    hold_s=2.0, presses=3, within_s=2.0, cancel_presses=5, cancel_within_s=3.0, test_presses=2
)


def test_double_tap_is_a_test_once_its_window_is_over() -> None:
    rec = GestureRecogniser(TEST_TIMING)
    assert taps(rec, 2, start=10.0) == []
    assert rec.next_deadline() == pytest.approx(12.0)
    assert rec.poll(11.9) == []
    assert kinds(rec.poll(12.0)) == [GestureKind.TEST]
    assert rec.next_deadline() is None and not rec.alert_active  # a test is not an alert to cancel
    assert rec.poll(20.0) == []


def test_a_third_tap_in_the_window_makes_an_alert_never_a_test() -> None:
    rec = GestureRecogniser(TEST_TIMING)
    assert taps(rec, 3, start=10.0, every=0.8) == [GestureKind.ALERT_MULTI_PRESS]
    assert rec.poll(30.0) == []


def test_pressing_when_the_test_window_ends_waits_for_what_the_press_becomes() -> None:
    rec = GestureRecogniser(TEST_TIMING)
    taps(rec, 2, start=10.0)  # taps at 10.0 and 10.3: the window ends at 12.0
    rec.press(11.9)
    assert rec.poll(12.0) == []  # she is pressing: maybe a third tap, maybe a hold
    assert kinds(rec.poll(13.9)) == [GestureKind.ALERT_HOLD]
    assert rec.release(14.5) == [] and rec.poll(20.0) == []


def test_two_taps_then_a_hold_is_an_alert() -> None:
    rec = GestureRecogniser(TEST_TIMING)
    taps(rec, 2, start=10.0)
    rec.press(10.8)
    assert rec.next_deadline() == pytest.approx(12.8)
    assert kinds(rec.poll(12.8)) == [GestureKind.ALERT_HOLD]


def test_no_test_while_an_alert_is_active_and_none_when_disabled() -> None:
    rec = GestureRecogniser(TEST_TIMING)
    rec.set_alert_active(True)
    taps(rec, 2, start=10.0)
    assert rec.next_deadline() is None and rec.poll(20.0) == []
    rec = GestureRecogniser(TIMING)  # test_presses = 0
    taps(rec, 2, start=10.0)
    assert rec.next_deadline() is None and rec.poll(20.0) == []


def test_without_the_duress_gesture_taps_then_hold_is_a_new_alert_never_a_cancel() -> None:
    rec = GestureRecogniser(GestureTiming(duress=False))
    rec.set_alert_active(True)
    taps(rec, 4, start=10.0)
    rec.press(11.5)
    assert kinds(rec.poll(13.5)) == [GestureKind.ALERT_HOLD]


@pytest.mark.parametrize("kwargs", [{"test_presses": 1}, {"test_presses": -2}, {"test_presses": 3}])
def test_bad_test_presses_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="test_presses"):
        GestureTiming(**kwargs)
