"""Which of a console feed's waiting events are worth a message (pure).

Each alert event makes the feed read the alert from the store and push its
current summary; at 100 alerts/s an alert and its notifications and callbacks
publish several events a second each, and one read per event lets a console
fall behind. Events waiting together for the same thing are therefore
answered once: the read happens after all of them, so the one message says at
least as much as the ones it replaces.

Invariants (tests/console/test_coalesce.py):

* every alert, device and account named by an event keeps exactly one event,
  at the place of its first occurrence (the order of first appearance is kept);
* an alert's event is an operator alarm if any of its events was, with the
  last alarm's reason (the page must still ring), and names the alert version
  its last event named (none if that one named none);
* a resync is kept, and everything before it is dropped: the snapshot it
  triggers supersedes them;
* nothing else is dropped.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

__all__ = ["ALERT_KINDS", "coalesce"]

#: Events that name an alert whose current summary the console is sent.
ALERT_KINDS = frozenset({"alert", "notification", "operator_alarm"})
_ALARM = "operator_alarm"


def coalesce(events: Sequence[dict[str, Any]], resync_kind: str) -> list[dict[str, Any]]:
    """The events to answer, one per alert / device / account / kind, in order of first appearance."""
    last_resync = max((i for i, e in enumerate(events) if e.get("kind") == resync_kind), default=None)
    if last_resync is not None:
        events = events[last_resync:]
    kept: dict[Hashable, dict[str, Any]] = {}
    for event in events:
        key = _key(event)
        earlier = kept.get(key)
        kept[key] = event if earlier is None else _merged(earlier, event)
    return list(kept.values())


def _key(event: dict[str, Any]) -> Hashable:
    kind = event.get("kind")
    if kind in ALERT_KINDS and event.get("alert_id"):
        return ("alert", event["alert_id"])
    if kind == "device_health":
        return (kind, event.get("device_id"), event.get("flag"))
    if kind == "visit":
        return (kind,)
    # Accounts, resyncs and kinds this module does not know: each kept as it is, keyed
    # by its whole content so that only identical events merge.
    return (kind, tuple(sorted((k, repr(v)) for k, v in event.items())))


def _merged(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """One event standing for both (same key): an alarm wins, with the latest reason.

    The alert's version named is the later event's (or none): the message must
    be as fresh as the latest event asks, not as an older alarm's version.
    """
    if later.get("kind") == _ALARM or earlier.get("kind") != _ALARM:
        return later
    if "version" in earlier or "version" in later:
        return {**earlier, "version": later.get("version")}
    return earlier
