"""The "Sur place" button: an event on the alert's timeline, written like any transition."""

from __future__ import annotations

import time

from dispatcher.alerting.responder_links import CLOSED_STATES
from dispatcher.events import EventBus
from dispatcher.live_alerts import after_transition
from dispatcher.store.base import Conflict, Store, Transition
from dispatcher.web.responder.view import ON_SITE

MAX_TRIES = 5


async def record_on_site(store: Store, bus: EventBus, alert_id: str, contact_id: str) -> bool:
    """Record that ``contact_id`` is on site; False when already recorded or the alert is closed.

    The state is left as it is: the event rides a transition of the same state,
    with the alert's version, so it never overwrites a concurrent decision (on a
    conflict it is re-read and tried again). A closed alert gets nothing: a
    write would move its closing time, and with it the links' expiry.
    """
    for _ in range(MAX_TRIES):
        record = await store.get_alert(alert_id)
        if record.state in CLOSED_STATES or record.escalation is None:
            return False
        events = await store.alert_events(alert_id)
        if any(e["kind"] == ON_SITE and e["detail"].get("by") == contact_id for e in events):
            return False
        transition = Transition(
            alert_id=alert_id,
            expected_version=record.version,
            state=record.state,
            escalation=record.escalation,
            events=((ON_SITE, {"by": contact_id, "via": "link"}),),
        )
        try:
            await store.apply_transition(transition)
        except Conflict:
            continue
        bus.alerts.committed(after_transition(record, transition), now=time.monotonic())
        bus.publish("alert", alert_id=alert_id, version=record.version + 1)
        return True
    raise Conflict(f"alert {alert_id} kept changing under us")
