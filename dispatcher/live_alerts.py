"""This process's newest known version of each recent alert, for the console feeds (pure).

Every console feed used to read an alert from the store for every event about
it (a notification outcome, a status callback, a transition): at 100 alerts/s
that read was a feed's main cost, and N consoles read N times. The alert path
already holds the record it just committed, so it hands it here before it
publishes the event (:meth:`LiveAlerts.committed`), and a feed's own store
reads land here too (:meth:`LiveAlerts.read`): one shared view per process.

Invariants (tests/dispatcher/test_live_alerts.py):

* a version never goes back: a record older than the one held is ignored
  (a slow read finishing after a newer commit cannot undo it);
* :meth:`LiveAlerts.current` answers only with what the store would give for
  the alert at that moment: never a record older than the version the event
  names (the version its publisher had just committed or read), whoever
  writes; for an event naming no version, when this process is the alerts'
  only writer (``sole_writer``: one dispatcher on SQLite), any held record
  within ``ttl_s`` of being recorded, and otherwise (several instances on
  PostgreSQL, whose writes this process never sees) none; anything else is
  None and the caller reads the store;
* at most ``capacity`` alerts are held, the least recently recorded dropped first;
* what is held costs the garbage collector a few objects per alert, whatever
  the size of its documents: the record's JSON documents (fix, escalation,
  context) and its summaries are held encoded, and :meth:`LiveAlerts.current`
  and :meth:`LiveAlerts.summary_of` hand out fresh copies. Held as dicts and
  lists (about 60 per alert), 3,600 recent alerts made each full collection
  walk 310,000 objects: 50-160 ms with the loop stopped, every few seconds at
  100 alerts/s (docs/performance.md, fifteenth round).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from dispatcher.store.base import AlertRecord, NewAlert, Transition

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_TTL_S", "LiveAlerts", "after_transition", "started_record"]

DEFAULT_CAPACITY = 20_000  # alerts: over three minutes at 100 alerts/s
DEFAULT_TTL_S = 600.0  # then re-read: a bound on what an out-of-process writer (the purge CLI) could leave


_encode = msgspec.json.Encoder().encode
_decode_documents = msgspec.json.Decoder(
    tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]
).decode
_decode_summary = msgspec.json.Decoder(dict[str, Any]).decode


@dataclass(slots=True)
class _Held:
    """One alert as held: its record without its documents, and those encoded (see the invariants)."""

    shell: AlertRecord  # fix, escalation and context set to None
    documents: bytes  # (fix, escalation, context) as JSON
    at: float  # when it was recorded (monotonic seconds)
    summaries: dict[bool, bytes]  # as_practitioner → its JSON summary, built once
    # The copy last handed out, while a feed still holds it: handed out again, and known as
    # "the very record" without encoding it again.
    given: weakref.ref[AlertRecord] | None = field(default=None)

    def holds(self, record: AlertRecord) -> bool:
        """``record`` is the very one held: same row, same documents."""
        if self.given is not None and self.given() is record:
            return True
        return self.shell == _shell(record) and self.documents == _documents(record)

    def record(self) -> AlertRecord:
        given = self.given() if self.given is not None else None
        if given is not None:
            return given
        fix, escalation, context = _decode_documents(self.documents)
        decoded = replace(self.shell, fix=fix, escalation=escalation, context=context)
        self.given = weakref.ref(decoded)
        return decoded


def _shell(record: AlertRecord) -> AlertRecord:
    return replace(record, fix=None, escalation=None, context=None)


def _documents(record: AlertRecord) -> bytes | None:
    try:
        return _encode((record.fix, record.escalation, record.context))
    except (TypeError, ValueError):  # (msgspec.EncodeError is a ValueError)
        return None


class LiveAlerts:
    """The newest record of each recent alert that this process wrote or read."""

    def __init__(
        self, *, sole_writer: bool, capacity: int = DEFAULT_CAPACITY, ttl_s: float = DEFAULT_TTL_S
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.sole_writer = sole_writer
        self._capacity = capacity
        self._ttl_s = ttl_s
        self._held: OrderedDict[str, _Held] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def committed(self, record: AlertRecord, *, now: float) -> None:
        """This process just committed ``record`` (its new version); before the event is published."""
        self._keep(record, now)

    def read(self, record: AlertRecord, *, now: float) -> None:
        """A store read returned ``record``."""
        self._keep(record, now)

    def forget(self, alert_id: str | None = None) -> None:
        """Drop one alert (or all): the store changed it in a way this view was not given."""
        if alert_id is None:
            self._held.clear()
        else:
            self._held.pop(alert_id, None)

    def current(self, alert_id: str, *, version: int | None = None, now: float) -> AlertRecord | None:
        """The held record if it is as fresh as the store for an event naming ``version``; else None."""
        held = self._fresh(alert_id, version, now)
        return held.record() if held is not None else None

    def summary_of(self, record: AlertRecord, as_practitioner: bool) -> dict[str, Any] | None:
        """The JSON summary already built for this very record (same version, same documents), if any."""
        held = self._held.get(record.id)
        if held is None or as_practitioner not in held.summaries or not held.holds(record):
            return None
        return _decode_summary(held.summaries[as_practitioner])

    def summary_at(self, alert_id: str, version: int, as_practitioner: bool, *, now: float) -> str | None:
        """The JSON summary already built for ``alert_id`` at exactly ``version``, if held (within
        ``ttl_s`` of being recorded): what a console's snapshot takes instead of reading the record.

        A version names one commit of the alert, whoever wrote it, so an exact
        match is what the store holds whatever the number of writers; the TTL
        bounds what an out-of-process purge (no new version) could leave.
        """
        held = self._held.get(alert_id)
        if held is None or held.shell.version != version or now - held.at > self._ttl_s:
            return None
        summary = held.summaries.get(as_practitioner)
        return None if summary is None else summary.decode()

    def keep_summary(self, record: AlertRecord, as_practitioner: bool, summary: dict[str, Any]) -> None:
        """Remember ``summary`` of ``record`` for the other consoles (only while it is the one held)."""
        held = self._held.get(record.id)
        if held is not None and held.holds(record):
            held.summaries[as_practitioner] = _encode(summary)

    def _fresh(self, alert_id: str, version: int | None, now: float) -> _Held | None:
        held = self._held.get(alert_id)
        if held is None or now - held.at > self._ttl_s:
            return None
        if version is not None:  # the event names what was committed: older than that is stale
            return held if held.shell.version >= version else None
        return held if self.sole_writer else None

    def _keep(self, record: AlertRecord, now: float) -> None:
        held = self._held.get(record.id)
        if held is not None and held.shell.version > record.version:
            return  # older than what is held: a read that started before a commit
        shell, documents = _shell(record), _documents(record)  # each worked out once
        if documents is None:  # not JSON (never from the store): the feeds read the store, not an older one
            self._held.pop(record.id, None)
            return
        if held is not None and held.shell == shell and held.documents == documents:
            held.at = now  # confirmed as it is: keep the summaries already built
        else:
            self._held[record.id] = _Held(shell, documents, now, {})
        self._held.move_to_end(record.id)
        while len(self._held) > self._capacity:
            self._held.popitem(last=False)


def after_transition(record: AlertRecord, t: Transition) -> AlertRecord:
    """``record`` once ``t`` is committed on it: what the store's versioned UPDATE writes."""
    context = t.context if t.context is not None else record.context
    return replace(
        record, state=t.state, escalation=t.escalation, context=context, version=record.version + 1
    )


def started_record(alert: NewAlert, kind: str | None, first: Transition) -> AlertRecord:
    """A new alert's row once stored with its first transition (``kind``: the planned one, if changed)."""
    return AlertRecord(
        id=alert.id,
        device_id=alert.device_id,
        kind=kind or alert.kind,
        seq=alert.seq,
        received_at=alert.received_at,
        gesture=alert.gesture,
        fix=alert.fix,
        state=first.state,
        escalation=first.escalation,
        context=first.context,
        version=first.expected_version + 1,
    )
