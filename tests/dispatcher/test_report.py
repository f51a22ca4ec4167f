"""The anonymised statistics: what a cell counts, and small-count suppression."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.domain import Convention
from dispatcher.store.base import AlertFacts
from dispatcher.web.api.schemas import StatsRow
from dispatcher.web.report import COUNT_COLUMNS, statistics, suppress_small_counts

NOV = datetime(2026, 11, 30, 23, 10, tzinfo=UTC)  # already December in Paris (UTC+1)


def facts(n: int, *, ack_after_s: float | None = None, **fields: object) -> AlertFacts:
    at = NOV + timedelta(minutes=n)
    given: dict[str, object] = {
        "id": f"a-{n}",
        "kind": "alert",
        "received_at": at,
        "state": "resolved",
        "convention_name": "SSJ Hérault",
        "operator_scope": (),
        "practitioner_id": "dr-fabre",
        "location_source": "site",
        "site_kind": "cabinet",
        "duress": False,
        "acknowledged_at": None if ack_after_s is None else at + timedelta(seconds=ack_after_s),
    }
    return AlertFacts(**(given | fields))  # type: ignore[arg-type]


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


def test_a_cell_counts_its_alerts_outcomes_and_acknowledgement_delays_drills_apart() -> None:
    herault = Convention.model_construct(name="SSJ Hérault", departement="34")  # (what a count reads)
    rows = statistics(
        [
            facts(1, ack_after_s=30),
            facts(2, ack_after_s=90, duress=True),
            facts(3, state="false_alarm"),
            facts(4, state="cancelled", ack_after_s=60),
            facts(5, kind="drill", ack_after_s=1),  # a drill is counted apart, never here
            facts(6, convention_name=None, operator_scope=("SSJ Hérault",), location_source="gnss"),
        ],
        [herault],
    )
    by_cell = {(r.convention, r.month, r.place_type): r for r in rows}
    assert set(by_cell) == {("SSJ Hérault", "2026-12", "cabinet"), ("(aucune convention)", "2026-12", "gnss")}
    cabinet = by_cell["SSJ Hérault", "2026-12", "cabinet"]
    assert (cabinet.alerts, cabinet.acknowledged, cabinet.false_alarms, cabinet.cancelled) == (4, 3, 1, 1)
    assert (cabinet.duress, cabinet.departement, cabinet.median_ack_s) == (1, "34", 60.0)
    fallback = by_cell["(aucune convention)", "2026-12", "gnss"]
    assert (fallback.alerts, fallback.acknowledged, fallback.median_ack_s, fallback.departement) == (
        1,
        0,
        None,
        None,
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
