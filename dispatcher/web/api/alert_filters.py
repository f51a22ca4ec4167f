"""The alert list's filters as an operator types them: a practitioner's name, days in Paris time.

Both become plain :class:`dispatcher.store.base.AlertQuery` fields, so the
filtering happens in the store, within the user's scope, on both stores alike.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dispatcher.directory import search
from dispatcher.directory.snapshot import Listed
from dispatcher.domain import Practitioner

PARIS = ZoneInfo("Europe/Paris")


def practitioners_named(listed: Listed[Practitioner], text: str) -> tuple[str, ...]:
    """Ids of the practitioners whose name (or id, RPPS) holds every word of ``text``, accents and
    case ignored; ``listed`` is the snapshot's folded listing (:mod:`dispatcher.directory.search`)."""
    wanted = search.words(text)
    named = zip(listed.texts, listed.records, strict=True)
    return tuple(p.id for text, p in named if search.holds(text, wanted))


def paris_day_bounds(first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
    """``[since, until)`` covering the days ``first`` to ``last`` inclusive, midnight to midnight in Paris."""
    since = datetime.combine(first, time(0), PARIS) if first else None
    until = datetime.combine(last + timedelta(days=1), time(0), PARIS) if last else None
    return since, until


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)  # a time given without its zone is UTC


def later(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two optional bounds (both filters must hold)."""
    return max(_aware(a), _aware(b)) if a and b else a or b


def earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earlier of two optional bounds."""
    return min(_aware(a), _aware(b)) if a and b else a or b
