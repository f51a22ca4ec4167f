"""Statistics totals per month or per convention, for the admin charts and their CSV.

Pure: anonymised cells in (:class:`~dispatcher.web.api.schemas.StatsRow` fits
:class:`Cell`; *before* suppression), totals out. Each total is summed from the exact counts and only
then suppressed (``"<N"`` for 1 to N-1), so a chart never shows a count the
export would hide. Invariants: labels are sorted (months chronologically,
conventions alphabetically); a total is 0, an int >= threshold, or ``"<N"``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

GroupBy = Literal["month", "convention"]
TOTAL_COLUMNS = ("alerts", "acknowledged", "false_alarms", "cancelled", "duress")


class Cell(Protocol):
    """One anonymised statistics cell: a convention's month, with exact counts."""

    @property
    def convention(self) -> str:
        """The convention's name."""

    @property
    def month(self) -> str:
        """``YYYY-MM``, Europe/Paris."""

    @property
    def alerts(self) -> int | str:
        """The cell's alert count (the other counts are read by name too)."""


@dataclass(frozen=True, slots=True)
class Total:
    """One bar: a month (``YYYY-MM``) or a convention's name, and its counts."""

    label: str
    alerts: int | str
    acknowledged: int | str
    false_alarms: int | str
    cancelled: int | str
    duress: int | str


def _count(value: int | str) -> int:
    if isinstance(value, str):
        raise ValueError("totals are computed from unsuppressed cells")
    return value


def _shown(value: int, threshold: int) -> int | str:
    return f"<{threshold}" if threshold > 1 and 0 < value < threshold else value


def totals(rows: Sequence[Cell], by: GroupBy, threshold: int) -> list[Total]:
    """Sum ``rows`` per month or convention, then suppress the small totals."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0] * len(TOTAL_COLUMNS))
    for row in rows:
        key = row.month if by == "month" else row.convention
        cell = sums[key]
        for i, column in enumerate(TOTAL_COLUMNS):
            cell[i] += _count(getattr(row, column))
    return [Total(label, *(_shown(v, threshold) for v in values)) for label, values in sorted(sums.items())]
