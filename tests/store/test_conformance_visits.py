"""Store conformance of the visit timers, server-raised alerts and incident reports (issue 14).

Same fixtures as test_conformance.py: every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from dispatcher.domain import HomeVisit
from dispatcher.store.base import (
    AlreadyExists,
    Conflict,
    NotFound,
    SideTextRecord,
    StepAlarm,
    VisitTimerWrite,
)
from tests.store.coverage import covers
from tests.store.test_conformance import NOW, PRACTITIONER, SITE, first, new_alert, seed, spec

VISIT = HomeVisit(
    id="visit-1",
    practitioner_id=PRACTITIONER.id,
    address=SITE.address,
    starts_at=NOW,
    ends_at=NOW + timedelta(minutes=30),
)


def write(version: int, phase: str = "open", due: float | None = 100.0, **kw: Any) -> VisitTimerWrite:
    return VisitTimerWrite(
        visit_id="visit-1",
        practitioner_id=PRACTITIONER.id,
        phase=phase,
        due_at=due,
        state={"phase": phase, "n": version},
        expected_version=version,
        **kw,
    )


@covers("write_visit_timer", "get_visit_timer", "list_visit_timers", "claim_due_visit_timers")
async def test_visit_timers_are_optimistic_and_leased(store: Any) -> None:
    await seed(store)
    await store.write_visit_timer(write(0, visit=VISIT))
    with pytest.raises(AlreadyExists):
        await store.write_visit_timer(write(0))
    assert await store.list_visits(PRACTITIONER.id) == [VISIT]
    record = await store.get_visit_timer("visit-1")
    assert (record.phase, record.due_at, record.version, record.alert_id) == ("open", 100.0, 1, None)
    assert record.state == {"phase": "open", "n": 0}

    assert await store.claim_due_visit_timers("a", now=99.0) == []
    (claimed,) = await store.claim_due_visit_timers("a", now=100.0, lease_s=30)
    assert claimed.visit_id == "visit-1"
    assert await store.claim_due_visit_timers("b", now=120.0) == [], "leased to a"
    assert [r.visit_id for r in await store.claim_due_visit_timers("b", now=131.0)] == ["visit-1"]

    await store.write_visit_timer(write(1, phase="checking", due=200.0))
    with pytest.raises(Conflict):
        await store.write_visit_timer(write(1, phase="closed", due=None))
    assert [r.visit_id for r in await store.claim_due_visit_timers("c", now=200.0)] == ["visit-1"], (
        "a write releases the lease"
    )
    assert [r.phase for r in await store.list_visit_timers(practitioner_id=PRACTITIONER.id)] == ["checking"]
    assert await store.list_visit_timers(phases=("closed",)) == []
    assert await store.list_visit_timers(practitioner_id="dr-other") == []
    with pytest.raises(NotFound):
        await store.get_visit_timer("visit-2")


@covers("next_visit_timer_due", "write_visit_timer")
async def test_a_visit_alert_is_written_with_its_timer(store: Any) -> None:
    await seed(store)
    assert await store.next_visit_timer_due() is None
    await store.write_visit_timer(write(0, due=150.0))
    assert await store.next_visit_timer_due() == 150.0
    windows = await store.replay_windows()
    alert = new_alert("visit-1-alerte", seq=-1, raw=b"")
    await store.write_visit_timer(
        write(1, phase="escalated", due=None, alert=alert, first=first(alert.id, spec("chef")))
    )
    record = await store.get_visit_timer("visit-1")
    assert (record.phase, record.alert_id, record.version) == ("escalated", "visit-1-alerte", 2)
    assert (await store.get_alert("visit-1-alerte")).state == "notifying"
    assert [n.contact_id for n in await store.notifications_for("visit-1-alerte")] == ["chef"]
    assert await store.replay_windows() == windows, "a server-raised alert leaves the device's window alone"
    assert await store.next_visit_timer_due() is None


@covers("insert_server_alert", "save_incident_report", "get_incident_report")
async def test_server_alerts_and_incident_reports(store: Any) -> None:
    await seed(store)
    windows = await store.replay_windows()
    alert = new_alert("test-1", kind="test", seq=-1, raw=b"")
    await store.insert_server_alert(alert, first("test-1", spec("practitioner", purpose="test")))
    assert (await store.get_alert("test-1")).kind == "test"
    assert await store.replay_windows() == windows
    assert await store.get_incident_report("test-1") is None
    with pytest.raises(NotFound):
        await store.save_incident_report("nope", {"facts": "x"}, user_id=1, author="Claire")
    await store.save_incident_report("test-1", {"facts": "insultes"}, user_id=1, author="Claire")
    await store.save_incident_report("test-1", {"facts": "menaces"}, user_id=2, author="Claire F.")
    report = await store.get_incident_report("test-1")
    assert report is not None
    assert (report.doc, report.author, report.user_id) == ({"facts": "menaces"}, "Claire F.", 2)
    assert report.updated_at.tzinfo is not None


def side_text(key: str, *, owner: str = "a", lease_until: float = 130.0) -> SideTextRecord:
    return SideTextRecord(
        key=key,
        reference="visit-1-check",
        phone="+33639980150",
        body="Vigie : tout va bien ?",
        what="visite visit-1 : SMS de vérification",
        not_after=400.0,
        lease_owner=owner,
        lease_until=lease_until,
    )


@covers("write_visit_timer", "claim_side_texts", "mark_side_text", "drop_side_text")
async def test_a_visit_s_texts_are_written_with_its_step_and_taken_over_only_after_the_lease(
    store: Any,
) -> None:
    await seed(store)
    await store.write_visit_timer(write(0, texts=(side_text("k1"),)))
    with pytest.raises(Conflict):  # a step that loses the race writes nothing, its texts neither
        await store.write_visit_timer(write(5, texts=(side_text("k-lost"),)))
    await store.write_visit_timer(write(1, phase="checking", texts=(side_text("k2", lease_until=140.0),)))

    assert await store.claim_side_texts("b", now=120.0, lease_s=60) == [], "both leased to their writer"
    (first_one,) = await store.claim_side_texts("b", now=135.0, lease_s=60)
    assert first_one == side_text("k1", owner="b", lease_until=195.0), "as written, leased to b"
    assert await store.claim_side_texts("c", now=150.0, lease_s=60) == [
        side_text("k2", owner="c", lease_until=210.0)
    ]

    # The sender marks each attempt, which renews its lease; a restart of the same instance
    # takes back its own rows at once, whatever their lease.
    await store.mark_side_text("k2", "sending", owner="c", lease_until=300.0)
    assert [t.key for t in await store.claim_side_texts("b", now=250.0, lease_s=60)] == ["k1"], "not k2"
    assert await store.claim_side_texts("c", now=250.0, lease_s=60, own_before=100.0) == [], "written since"
    (again,) = await store.claim_side_texts("c", now=250.0, lease_s=60, own_before=time.time() + 1)
    assert (again.key, again.status, again.lease_owner) == ("k2", "sending", "c")

    await store.drop_side_text("k2")
    await store.drop_side_text("k2")  # gone already: nothing
    (left,) = await store.claim_side_texts("d", now=1_000.0, lease_s=60)
    assert left.key == "k1" and left.status == "pending"


@covers("write_visit_timer", "open_scoped_alarms", "operator_event")
async def test_the_alarm_of_a_visit_alert_not_raised_is_written_with_its_step(store: Any) -> None:
    await seed(store)
    assert await store.write_visit_timer(write(0)) is None, "no alarm, no event"
    alarm = StepAlarm("ALERTE DE VISITE NON DÉCLENCHÉE : Claire Fabre", ("Convention SSJ Hérault",))
    with pytest.raises(Conflict):  # a step that loses the race raises nothing either
        await store.write_visit_timer(write(7, phase="escalated", due=None, alarm=alarm))
    assert await store.open_scoped_alarms() == []

    event_id = await store.write_visit_timer(write(1, phase="escalated", due=None, alarm=alarm))
    assert [e["id"] for e in await store.open_scoped_alarms()] == [event_id]
    event = await store.operator_event(event_id)
    assert event is not None
    assert (event["kind"], event["message"], event["scope"]) == ("alarm", alarm.message, list(alarm.scope))
    assert event["alert_id"] is None and event["device_id"] is None
