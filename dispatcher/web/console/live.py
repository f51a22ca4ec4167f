"""The alert record and summary a console feed sends: from memory when fresh, else one shared read.

The pure rules (when memory may answer) are :mod:`dispatcher.live_alerts`;
this shell adds the store read behind them, shared by the feeds that want the
same alert at the same time (one read for N consoles), and the summary built
once per record version for all of them. Scope and the practitioner's view
(:func:`views.summary` with ``as_practitioner``) are applied by the caller, to
the very record the store would have returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

import msgspec

from dispatcher.live_alerts import LiveAlerts
from dispatcher.store.base import AlertHead, AlertQuery, AlertRecord, NotFound, Store
from dispatcher.web.api import views


class FeedAlerts:
    """One per process: the alerts the console feeds ask for."""

    def __init__(self, store: Store, alerts: LiveAlerts) -> None:
        self._store = store
        self._alerts = alerts
        self._reads: dict[str, tuple[float, asyncio.Future[AlertRecord]]] = {}

    async def record(self, alert_id: str, *, version: int | None, since: float) -> AlertRecord | None:
        """The alert as the store has it now (None: no such alert).

        ``version``: the one the event names, if any; ``since``: when the feed
        took the event off its queue (monotonic): a read started before that is
        not joined, it could predate the change the event tells of.
        """
        held = self._alerts.current(alert_id, version=version, now=time.monotonic())
        if held is not None:
            return held
        try:
            read = await self._read(alert_id, since)
        except NotFound:
            return None
        newer = self._alerts.current(alert_id, version=read.version, now=time.monotonic())
        return newer if newer is not None else read

    def summary(self, record: AlertRecord, *, as_practitioner: bool) -> dict[str, Any]:
        """The JSON summary of ``record`` (built once per version for every feed)."""
        built = self._alerts.summary_of(record, as_practitioner)
        if built is None:
            built = views.summary(record, as_practitioner=as_practitioner).model_dump(mode="json")
            self._alerts.keep_summary(record, as_practitioner, built)
        return built

    async def snapshot(
        self,
        queries: Sequence[AlertQuery],
        *,
        as_practitioner: bool,
        listed: Callable[[AlertRecord], bool],
        from_memory: bool = True,
    ) -> list[str]:
        """The JSON summaries of the alerts ``queries`` find, each once, most recent first.

        The store is asked only which version of each alert it holds
        (:meth:`Store.alert_heads`, no documents); a summary held in memory for
        exactly that version is taken as it is. Only the other alerts' records
        are read, a page at a time, kept for the next snapshot, and shown if
        ``listed``. So a console opening in a surge no longer decodes and
        summarises thousands of open alerts on the loop that takes the alerts
        arriving meanwhile (docs/performance.md, "A console opening in a
        surge"). Held summaries are in scope by the queries' own scope (the
        caller narrows them to the user's, as every alert search is);
        ``from_memory=False`` reads every record, for a view that needs more
        than the scope to decide (the practitioner's, which hides a duress).
        """
        heads: dict[str, AlertHead] = {}
        for query in queries:
            for head in await self._store.alert_heads(query):
                heads.setdefault(head.id, head)  # the first query's read is the fresher one
        shown: dict[str, tuple[datetime, str]] = {}
        now = time.monotonic()
        for head in heads.values() if from_memory else ():
            held = self._alerts.summary_at(head.id, head.version, as_practitioner, now=now)
            if held is not None:
                shown[head.id] = (head.received_at, held)
        missing = tuple(alert_id for alert_id in heads if alert_id not in shown)
        if missing:
            read = AlertQuery(ids=missing, limit=len(missing))
            async with contextlib.aclosing(self._store.alert_pages(read)) as pages:
                async for page in pages:
                    for record in page:
                        self._alerts.read(record, now=time.monotonic())
                        if listed(record):
                            summary = self.summary(record, as_practitioner=as_practitioner)
                            shown[record.id] = (record.received_at, _json(summary))
        return [text for _, text in sorted(shown.values(), key=itemgetter(0), reverse=True)]

    async def _read(self, alert_id: str, since: float) -> AlertRecord:
        pending = self._reads.get(alert_id)
        if pending is None or pending[0] < since:
            future = asyncio.ensure_future(self._read_now(alert_id))
            pending = (time.monotonic(), future)
            self._reads[alert_id] = pending
        # shield: a feed that goes away must not cancel the read the others wait for.
        return await asyncio.shield(pending[1])

    async def _read_now(self, alert_id: str) -> AlertRecord:
        try:
            record = await self._store.get_alert(alert_id)
        finally:
            entry = self._reads.get(alert_id)
            if entry is not None and entry[1] is asyncio.current_task():
                del self._reads[alert_id]
        self._alerts.read(record, now=time.monotonic())
        return record


_json_bytes = msgspec.json.Encoder().encode


def _json(summary: dict[str, Any]) -> str:
    return _json_bytes(summary).decode()
