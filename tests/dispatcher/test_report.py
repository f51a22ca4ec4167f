"""Small-count suppression of the anonymised statistics."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.web.api.schemas import StatsRow
from dispatcher.web.report import COUNT_COLUMNS, suppress_small_counts


def row(alerts: int, acknowledged: int, false_alarms: int = 0, duress: int = 0) -> StatsRow:
    return StatsRow(
        convention="SSJ Hérault",
        departement="34",
        month="2026-11",
        place_type="cabinet",
        alerts=alerts,
        acknowledged=acknowledged,
        false_alarms=false_alarms,
        cancelled=0,
        duress=duress,
        median_ack_s=42.0 if acknowledged else None,
        p90_ack_s=60.0 if acknowledged else None,
    )


def test_a_cell_of_three_alerts_shows_neither_counts_nor_delays() -> None:
    [shown] = suppress_small_counts([row(3, 2, false_alarms=1)], 5)
    assert (shown.alerts, shown.acknowledged, shown.false_alarms, shown.cancelled) == ("<5", "<5", "<5", 0)
    assert (shown.median_ack_s, shown.p90_ack_s) == (None, None)


def test_a_large_cell_keeps_its_counts_but_hides_a_single_duress() -> None:
    [shown] = suppress_small_counts([row(40, 38, duress=1)], 5)
    assert (shown.alerts, shown.acknowledged, shown.duress) == (40, 38, "<5")
    assert shown.median_ack_s == 42.0


@given(counts=st.lists(st.integers(0, 30), min_size=5, max_size=5), threshold=st.integers(1, 10))
def test_no_exported_count_is_between_one_and_the_threshold(counts: list[int], threshold: int) -> None:
    original = row(*counts[:2], false_alarms=counts[2], duress=counts[3])
    [shown] = suppress_small_counts([original], threshold)
    for column in COUNT_COLUMNS:
        value = getattr(shown, column)
        if isinstance(value, int):
            assert value == 0 or value >= threshold
            assert value == getattr(original, column)  # shown values are the true ones
        else:
            assert value == f"<{threshold}" and 0 < getattr(original, column) < threshold
