"""Totals for the admin charts: summed from exact cells, suppressed only afterwards."""

from __future__ import annotations

import pytest

from dispatcher.web.api.schemas import StatsRow
from dispatcher.web.stats_totals import totals


def _row(convention: str, month: str, place: str, alerts: int, acknowledged: int = 0) -> StatsRow:
    return StatsRow(
        convention=convention,
        departement=None,
        month=month,
        place_type=place,
        alerts=alerts,
        acknowledged=acknowledged,
        false_alarms=0,
        cancelled=0,
        duress=0,
        median_ack_s=None,
        p90_ack_s=None,
    )


ROWS = [
    _row("SSJ Hérault", "2026-02", "Cabinet médical", 3, 3),
    _row("SSJ Hérault", "2026-02", "Domicile", 3, 1),
    _row("SSJ Gard", "2026-01", "Cabinet médical", 2, 2),
    _row("SSJ Gard", "2026-02", "Cabinet médical", 1),
]


def test_two_small_cells_make_a_total_that_is_shown() -> None:
    by_month = totals(ROWS, "month", 5)
    assert [(t.label, t.alerts, t.acknowledged) for t in by_month] == [
        ("2026-01", "<5", "<5"),
        ("2026-02", 7, "<5"),
    ]


def test_per_convention_sorted_and_suppressed() -> None:
    by_convention = totals(ROWS, "convention", 5)
    assert [(t.label, t.alerts, t.acknowledged, t.duress) for t in by_convention] == [
        ("SSJ Gard", "<5", "<5", 0),  # zero stays zero: it singles nobody out
        ("SSJ Hérault", 6, "<5", 0),
    ]


def test_threshold_one_turns_suppression_off() -> None:
    assert [t.alerts for t in totals(ROWS, "convention", 1)] == [3, 6]


def test_already_suppressed_cells_are_refused() -> None:

    with pytest.raises(ValueError, match="unsuppressed"):
        totals([ROWS[0].model_copy(update={"alerts": "<5"})], "month", 5)
