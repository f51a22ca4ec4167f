"""The notifications this instance sent lately, by provider SID, held as the collector ignores them.

Every provider status callback names a SID; answering "which notification?"
from memory spares the store a read per callback (six per alert). The last
10,000 sends are kept. As :class:`NotificationRecord` objects they were 10,000
objects that every full garbage collection walked, with the event loop stopped;
held as plain tuples of strings, numbers and None, the collector stops tracking
them after their first pass (CPython untracks such tuples), and a record is
rebuilt when a callback asks (≈ 1 µs). docs/performance.md, sixteenth round.
"""

from __future__ import annotations

import dataclasses
import operator
from collections import OrderedDict
from typing import Any

from dispatcher.store.base import NotificationRecord

#: Sends remembered (at 100 alerts/s, three sends each: the last half-minute).
REMEMBERED = 10_000

_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(NotificationRecord)))


class RecentSends:
    """A bounded map provider SID → the notification sent under it (oldest forgotten first)."""

    def __init__(self, *, size: int = REMEMBERED) -> None:
        self._size = size
        self._by_sid: OrderedDict[str, tuple[Any, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_sid)

    def remember(self, sid: str, n: NotificationRecord) -> None:
        """``n`` was sent, and its SID stored, under ``sid``."""
        self._by_sid[sid] = _FIELDS(n)
        while len(self._by_sid) > self._size:
            self._by_sid.popitem(last=False)

    def get(self, sid: str) -> NotificationRecord | None:
        """The notification sent under ``sid``, if it is among the remembered ones."""
        fields = self._by_sid.get(sid)
        return None if fields is None else NotificationRecord(*fields)
