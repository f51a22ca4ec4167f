"""The alert list's filters as an operator types them: a practitioner's name, days in Paris time.

Both become plain :class:`dispatcher.store.base.AlertQuery` fields, so the
filtering happens in the store, within the user's scope, on both stores alike.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dispatcher.domain import Practitioner

PARIS = ZoneInfo("Europe/Paris")


def fold(text: str) -> str:
    """Lower case without accents, spaces collapsed: "Hélène  FABRE" and "helene fabre" are equal."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def practitioners_named(practitioners: Iterable[Practitioner], text: str) -> tuple[str, ...]:
    """Ids of the practitioners whose name holds every word of ``text`` (accents and case ignored)."""
    words = fold(text).split()
    found = []
    for p in practitioners:
        name = fold(f"{p.first_name} {p.last_name} {p.display_name}")
        if all(w in name for w in words):
            found.append(p.id)
    return tuple(sorted(found))


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
