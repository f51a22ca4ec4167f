"""The contexts of the open alerts, kept without weighing on the garbage collector.

An alert's :class:`~dispatcher.domain.AlertContext` (who, where, which
convention) is needed at its start, for its first notifications, then again
only at an escalation or a reply minutes later; the alert may stay open for
hours. As pydantic objects, each context is some fifteen to forty objects that
every full collection walks: thousands of open alerts made the collector's
pauses grow with them, and every alert arriving during a pause waited
(docs/performance.md, sixteenth round).

So the most recently used contexts are held as objects (``hot``, enough for
every alert still sending its first notifications), and the others as their
JSON (one ``bytes`` each, which the collector does not walk), decoded again
when asked for (≈ 15 µs). A context is immutable, so the decoded copy is equal
to the one put.
"""

from __future__ import annotations

from collections import OrderedDict

from dispatcher.domain import AlertContext

#: Contexts held as objects: at 100 alerts/s, the last 2.5 s of alerts.
HOT = 256


class AlertContexts:
    """The open alerts' contexts by alert id: the recent ones as objects, the others encoded."""

    def __init__(self, *, hot: int = HOT) -> None:
        self._hot_size = hot
        self._hot: OrderedDict[str, AlertContext] = OrderedDict()
        self._encoded: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._hot) + len(self._encoded)

    def put(self, alert_id: str, ctx: AlertContext) -> None:
        """Hold ``ctx`` as the context of ``alert_id`` (the most recently used)."""
        self._encoded.pop(alert_id, None)
        self._hot[alert_id] = ctx
        self._hot.move_to_end(alert_id)
        while len(self._hot) > self._hot_size:
            old_id, old = self._hot.popitem(last=False)
            self._encoded[old_id] = old.model_dump_json().encode()

    def get(self, alert_id: str) -> AlertContext | None:
        """The context of ``alert_id``, or None if none is held."""
        ctx = self._hot.get(alert_id)
        if ctx is not None:
            self._hot.move_to_end(alert_id)
            return ctx
        encoded = self._encoded.get(alert_id)
        if encoded is None:
            return None
        ctx = AlertContext.model_validate_json(encoded)
        self.put(alert_id, ctx)
        return ctx

    def forget(self, alert_id: str) -> None:
        """The alert is closed: its context is no longer needed."""
        self._hot.pop(alert_id, None)
        self._encoded.pop(alert_id, None)
