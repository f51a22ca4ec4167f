"""The console's view of recent alerts: as fresh as the store, or silent (dispatcher/live_alerts.py)."""

from __future__ import annotations

import gc
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from dispatcher.live_alerts import LiveAlerts, after_transition, started_record
from dispatcher.store.base import AlertRecord, NewAlert, Transition
from tests.support.records import alert_record


def record(version: int, state: str = "notifying", alert_id: str = "a-1") -> AlertRecord:
    return alert_record(id=alert_id, state=state, context={"convention_name": "Hérault"}, version=version)


def test_a_version_never_goes_back() -> None:
    live = LiveAlerts(sole_writer=True)
    live.committed(record(3, "acknowledged"), now=0)
    live.read(record(2, "notifying"), now=1)  # a read that started before the commit
    held = live.current("a-1", now=2)
    assert held is not None and held.version == 3 and held.state == "acknowledged"
    live.read(record(4, "resolved"), now=3)
    assert live.current("a-1", now=4) == record(4, "resolved")


def test_with_other_writers_only_a_version_an_event_names_is_trusted() -> None:
    # Several instances: another one may have moved the alert since this process last saw it.
    live = LiveAlerts(sole_writer=False)
    live.committed(record(3), now=0)
    assert live.current("a-1", now=1) is None  # an event naming no version: read the store
    assert live.current("a-1", version=4, now=1) is None  # newer than what is held: read
    assert live.current("a-1", version=3, now=1) == record(3)
    assert live.current("a-1", version=2, now=1) == record(3)  # newer than the event: fresher still


def test_the_only_writer_is_trusted_for_any_event_within_the_ttl() -> None:
    live = LiveAlerts(sole_writer=True, ttl_s=10)
    assert live.current("a-1", now=0) is None  # never seen: read the store
    live.committed(record(1), now=0)
    assert live.current("a-1", now=10) == record(1)
    assert live.current("a-1", now=10.5) is None
    live.read(record(1), now=11)  # confirmed by a read: trusted again
    assert live.current("a-1", now=12) == record(1)


def test_an_event_naming_a_newer_version_is_never_answered_with_an_older_one() -> None:
    # The only writer too: between a commit and its record reaching memory, the event says more.
    live = LiveAlerts(sole_writer=True)
    live.committed(record(3, "notifying"), now=0)
    assert live.current("a-1", version=4, now=1) is None  # read the store, which has version 4
    assert live.current("a-1", version=3, now=1) == record(3, "notifying")


def test_a_change_it_was_not_given_makes_it_forget() -> None:
    live = LiveAlerts(sole_writer=True)
    live.committed(record(1, alert_id="a-1"), now=0)
    live.committed(record(1, alert_id="a-2"), now=0)
    live.forget("a-1")
    assert live.current("a-1", now=0) is None and live.current("a-2", now=0) is not None
    live.forget()
    assert len(live) == 0
    # Same version, other content (the retention purge does not move the version): replaced.
    live.read(record(1), now=0)
    purged = replace(record(1), context={})
    live.read(purged, now=1)
    assert live.current("a-1", now=1) == purged


def test_it_holds_at_most_its_capacity_dropping_the_least_recently_recorded() -> None:
    live = LiveAlerts(sole_writer=True, capacity=2)
    for i in range(3):
        live.committed(record(1, alert_id=f"a-{i}"), now=i)
    live.read(record(1, alert_id="a-1"), now=3)
    live.committed(record(1, alert_id="a-3"), now=4)
    assert [a for a in ("a-0", "a-1", "a-2", "a-3") if live.current(a, now=5)] == ["a-1", "a-3"]
    with pytest.raises(ValueError):
        LiveAlerts(sole_writer=True, capacity=0)


def test_a_summary_is_kept_for_the_very_record_it_was_built_from() -> None:
    live = LiveAlerts(sole_writer=True)
    first = record(1)
    live.committed(first, now=0)
    live.keep_summary(first, False, {"state": "notifying"})
    assert live.summary_of(first, False) == {"state": "notifying"}
    assert live.summary_of(first, True) is None  # hers is built apart (a duress shown as a cancel)
    live.read(record(1), now=1)  # the same record confirmed: its summaries stay
    assert live.summary_of(first, False) == {"state": "notifying"}
    second = record(2, "acknowledged")
    live.committed(second, now=2)
    assert live.summary_of(second, False) is None
    live.keep_summary(first, False, {"state": "stale"})  # not the one held any more: ignored
    assert live.summary_of(second, False) is None and live.summary_of(first, False) is None


def test_the_records_it_is_given_are_what_the_store_writes() -> None:
    t = Transition(
        alert_id="a-1",
        expected_version=0,
        state="notifying",
        escalation={"duress": False, "tier": 0},
        context={"convention_name": "Hérault"},
    )
    alert = NewAlert(
        id="a-1",
        device_id="btn-1",
        kind="test",
        seq=7,
        device_ts=datetime(2026, 1, 1, tzinfo=UTC),
        received_at=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
        gesture="hold",
        fix=None,
        raw=b"",
    )
    started = started_record(alert, "drill", t)
    assert (started.kind, started.state, started.version, started.seq) == ("drill", "notifying", 1, 7)
    ack = Transition(alert_id="a-1", expected_version=1, state="acknowledged", escalation={"acked_by": "x"})
    after = after_transition(started, ack)
    assert (after.state, after.escalation, after.version) == ("acknowledged", {"acked_by": "x"}, 2)
    assert after.context == started.context  # a transition without a context keeps the stored one


def escalated(alert_id: str, version: int = 1) -> AlertRecord:
    """An alert with documents the size of a real one: two tiers of recipients, a fix, a context."""
    recipient = {"contact_id": "csp-chef", "name": "Chef de poste", "channels": ["sms", "voice"]}
    tiers = [{"ack_timeout_s": 120, "recipients": [dict(recipient), dict(recipient)]} for _ in range(2)]
    place = {"label": "45 rue du Faubourg Boutonnet", "floor": None}
    return alert_record(
        id=alert_id,
        version=version,
        fix={"lat": 43.62153, "lon": 3.87269, "accuracy_m": 12.5, "source": "gnss"},
        escalation={"schema": 1, "plan": {"tiers": tiers}, "attempts": [[0, "sms"], [0, "voice"]]},
        context={"convention_name": "Hérault", "place": place},
    )


def test_a_held_alert_costs_the_garbage_collector_a_few_objects_whatever_its_documents() -> None:
    # Each full collection walks every tracked object with the event loop stopped: thousands of
    # recent alerts held as dicts and lists made those pauses grow to 160 ms (docs/performance.md).
    live = LiveAlerts(sole_writer=True)
    gc.collect()
    before = len(gc.get_objects())
    for n in range(1_000):
        live.committed(escalated(f"a-{n}"), now=0)
    gc.collect()
    per_alert = (len(gc.get_objects()) - before) / 1_000
    assert per_alert <= 4, f"{per_alert:.1f} tracked objects per held alert"


def test_what_it_hands_out_is_the_record_it_was_given() -> None:
    live = LiveAlerts(sole_writer=True)
    original = escalated("a-1")
    live.committed(original, now=0)
    held = live.current("a-1", now=1)
    assert held == original and held is not original
    live.keep_summary(held, False, {"state": "notifying", "tiers": [1, 2]})
    assert live.summary_of(original, False) == {"state": "notifying", "tiers": [1, 2]}  # same content


def test_a_record_whose_documents_cannot_be_held_is_read_from_the_store_instead() -> None:
    live = LiveAlerts(sole_writer=True)
    live.committed(record(1), now=0)
    live.committed(replace(record(2), context={"odd": object()}), now=0)  # never from the store
    assert live.current("a-1", now=0) is None  # not the older version 1: the feed reads the store


def test_a_snapshot_takes_a_held_summary_only_for_the_very_version_the_store_holds() -> None:
    live = LiveAlerts(sole_writer=False, ttl_s=10)
    live.committed(record(3), now=0)
    assert live.summary_at("a-1", 3, False, now=1) is None  # no feed built it yet
    live.keep_summary(record(3), False, {"id": "a-1", "state": "notifying"})
    assert live.summary_at("a-1", 3, False, now=1) == '{"id":"a-1","state":"notifying"}'
    assert live.summary_at("a-1", 3, True, now=1) is None  # hers is another summary
    assert live.summary_at("a-1", 4, False, now=1) is None  # another writer moved it on
    assert live.summary_at("a-1", 2, False, now=1) is None
    assert live.summary_at("a-1", 3, False, now=10.5) is None  # past the TTL: read again
    assert live.summary_at("a-2", 1, False, now=1) is None
