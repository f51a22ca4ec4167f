"""The open alerts' contexts: what is handed out is what was put, at a small cost to the collector."""

from __future__ import annotations

import gc

from dispatcher.alerting.alert_contexts import AlertContexts
from dispatcher.directory.location import LocationPolicy, resolve_location
from dispatcher.domain import AlertContext, AlertKind, Device, DeviceKind, Practitioner, Site, SiteKind
from tests.dispatcher.test_location import NOW, VISIT, VISIT_POINT, fix_at, offset


def context(alert_id: str) -> AlertContext:
    """A context as rich as a real one: a practitioner, her practice, a fix near her visit."""
    fix = fix_at(offset(VISIT_POINT, 40, 90), accuracy_m=12)
    return AlertContext(
        alert_id=alert_id,
        kind=AlertKind.ALERT,
        received_at=NOW,
        practitioner=Practitioner(
            id="dr-martin", first_name="Paul", last_name="Martin", rpps="10001234567", phones=["+33639980150"]
        ),
        site=Site(id="cab-1", name="Cabinet des Arceaux", kind=SiteKind.CABINET, address=VISIT.address),
        device=Device(id="bracelet-1", kind=DeviceKind.BRACELET),
        location=resolve_location(fix=fix, now=NOW, visit=VISIT, policy=LocationPolicy()),
        convention_name="SSJ Montpellier",
        duress=True,
        operator_scope=["SSJ Montpellier"],
    )


def test_every_context_put_is_handed_out_equal_long_after_it_left_the_recent_ones() -> None:
    contexts = AlertContexts(hot=4)
    put = {f"a-{n}": context(f"a-{n}") for n in range(20)}
    for alert_id, ctx in put.items():
        contexts.put(alert_id, ctx)
    assert len(contexts) == 20
    for alert_id, ctx in put.items():  # the oldest first: long since encoded
        assert contexts.get(alert_id) == ctx
    assert contexts.get("a-never") is None


def test_a_closed_alert_is_forgotten_whether_recent_or_encoded() -> None:
    contexts = AlertContexts(hot=2)
    for n in range(5):
        contexts.put(f"a-{n}", context(f"a-{n}"))
    contexts.forget("a-0")  # encoded
    contexts.forget("a-4")  # recent
    assert contexts.get("a-0") is None and contexts.get("a-4") is None
    assert len(contexts) == 3


def test_open_alerts_cost_the_garbage_collector_little_however_many_they_are() -> None:
    # Each full collection walks every tracked object with the event loop stopped: thousands of open
    # alerts' contexts held as pydantic objects (some 30 objects each) made those pauses grow.
    contexts = AlertContexts(hot=16)
    contexts.put("a-warm", context("a-warm"))  # anything built once per process is built now
    gc.collect()
    before = len(gc.get_objects())
    for n in range(1_000):
        contexts.put(f"a-{n}", context(f"a-{n}"))
    gc.collect()
    per_alert = (len(gc.get_objects()) - before) / 1_000
    assert per_alert < 1, f"{per_alert:.1f} tracked objects per open alert's context"
    assert len(contexts) == 1_001
