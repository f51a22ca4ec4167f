"""The sandbox's list endpoints: ``GET Messages.json`` and ``GET Calls.json`` (no I/O here).

Shaped like Twilio's 2010-04-01 API, which the dispatcher's reconciliation
reads to learn whether a request it lost track of was created:

* Messages: ``To``, ``From``, ``DateSent`` (``DateSent<`` on or before,
  ``DateSent>`` on or after; a date or an ISO 8601 UTC datetime), ``Status``;
* Calls: ``To``, ``From``, ``Status``, ``StartTime`` / ``StartTime<`` /
  ``StartTime>``;
* newest first, ``PageSize`` (default 50, at most 1,000) and ``Page``, with the
  paging fields (``next_page_uri``...) the ``twilio`` library follows.

Like Twilio, a message that was never sent has no ``date_sent`` and a call
never started no ``start_time``: a date filter leaves them out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar
from urllib.parse import urlencode

from sandbox.twilio_resources import Call, Message

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

R = TypeVar("R", Message, Call)


class BadQuery(ValueError):
    """A list filter Twilio would refuse (malformed date or page)."""


def _bound(text: str, *, end: bool) -> datetime:
    """A filter value as a UTC instant; a bare date covers its whole day."""
    try:
        if "T" in text:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise BadQuery(f"invalid date {text!r}") from exc
    return datetime.combine(day, time.max if end else time.min, UTC)


def _date_filter(query: Mapping[str, str], name: str) -> Callable[[datetime | None], bool]:
    """``name`` (that day), ``name>`` (on or after), ``name<`` (on or before)."""
    tests: list[Callable[[datetime], bool]] = []
    if name in query:  # that day, even when the library sends a full datetime
        day = query[name][:10]
        lo, hi = _bound(day, end=False), _bound(day, end=True)
        tests.append(lambda d: lo <= d <= hi)
    if f"{name}>" in query:
        after = _bound(query[f"{name}>"], end=False)
        tests.append(lambda d: d >= after)
    if f"{name}<" in query:
        before = _bound(query[f"{name}<"], end=True)
        tests.append(lambda d: d <= before)
    if not tests:
        return lambda _d: True
    return lambda d: d is not None and all(t(d) for t in tests)


def _matches(query: Mapping[str, str], to: str, from_: str, status: str) -> bool:
    return (
        query.get("To", to) == to
        and query.get("From", from_) == from_
        and query.get("Status", status) == status
    )


def select_messages(messages: Iterable[Message], query: Mapping[str, str]) -> list[Message]:
    """Messages matching Twilio's list filters, newest first."""
    sent = _date_filter(query, "DateSent")
    found = [m for m in messages if _matches(query, m.to, m.from_, m.status) and sent(m.date_sent)]
    return sorted(found, key=lambda m: m.date_created, reverse=True)


def select_calls(calls: Iterable[Call], query: Mapping[str, str]) -> list[Call]:
    """Calls matching Twilio's list filters, newest first."""
    started = _date_filter(query, "StartTime")
    found = [c for c in calls if _matches(query, c.to, c.from_, c.status) and started(c.start_time)]
    return sorted(found, key=lambda c: c.date_created, reverse=True)


def page(key: str, records: Sequence[R], query: Mapping[str, str], path: str) -> dict[str, Any]:
    """One page of ``records`` under ``key`` (``messages``/``calls``) with Twilio's paging fields."""
    try:
        size = min(MAX_PAGE_SIZE, max(1, int(query.get("PageSize", DEFAULT_PAGE_SIZE))))
        number = max(0, int(query.get("Page", 0)))
    except ValueError as exc:
        raise BadQuery("invalid Page or PageSize") from exc
    start = number * size
    chunk = records[start : start + size]
    filters = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}

    def uri(n: int) -> str:
        return f"{path}?{urlencode({**filters, 'PageSize': size, 'Page': n})}"

    return {
        key: [r.to_json() for r in chunk],
        "end": start + len(chunk) - 1 if chunk else start,
        "first_page_uri": uri(0),
        "next_page_uri": uri(number + 1) if start + size < len(records) else None,
        "page": number,
        "page_size": size,
        "previous_page_uri": uri(number - 1) if number > 0 else None,
        "start": start,
        "uri": uri(number),
    }
