"""A console feed answers the events waiting together once per alert, device and account."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.events import RESYNC_EVENT
from dispatcher.web.console.coalesce import ALERT_KINDS, coalesce

ALERT_IDS = st.sampled_from(["a1", "a2", "a3"])
EVENTS = st.one_of(
    st.builds(lambda k, a: {"kind": k, "alert_id": a}, st.sampled_from(["alert", "notification"]), ALERT_IDS),
    st.builds(
        lambda a, r: {"kind": "operator_alarm", "alert_id": a, "reason": r}, ALERT_IDS, st.sampled_from("xyz")
    ),
    st.builds(
        lambda d, f: {"kind": "device_health", "device_id": d, "flag": f, "raised": True},
        st.sampled_from(["btn-1", "btn-2"]),
        st.sampled_from(["offline", "battery"]),
    ),
    st.just({"kind": "visit"}),
    st.builds(lambda u: {"kind": "account", "user_id": u}, st.integers(1, 3)),
    st.just({"kind": RESYNC_EVENT}),
)


def _alerts(events: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for e in events:
        if e["kind"] in ALERT_KINDS and e["alert_id"] not in seen:
            seen.append(e["alert_id"])
    return seen


def _after_last_resync(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    starts = [i for i, e in enumerate(events) if e["kind"] == RESYNC_EVENT]
    return events[starts[-1] :] if starts else events


@given(st.lists(EVENTS, max_size=40))
def test_every_alert_waiting_is_answered_once_in_order_of_first_appearance(
    events: list[dict[str, Any]],
) -> None:
    answered = coalesce(events, RESYNC_EVENT)
    assert _alerts(answered) == _alerts(_after_last_resync(events))
    assert len(answered) == len(
        {repr(sorted(e.items())) if e["kind"] not in ALERT_KINDS else e["alert_id"] for e in answered}
    )


@given(st.lists(EVENTS, max_size=40))
def test_an_alarm_is_never_coalesced_away_and_keeps_its_latest_reason(events: list[dict[str, Any]]) -> None:
    kept = _after_last_resync(events)
    answered = {e["alert_id"]: e for e in coalesce(events, RESYNC_EVENT) if e["kind"] in ALERT_KINDS}
    for alert_id in {e["alert_id"] for e in kept if e["kind"] in ALERT_KINDS}:
        alarms = [e for e in kept if e["kind"] == "operator_alarm" and e["alert_id"] == alert_id]
        if alarms:
            assert answered[alert_id] == alarms[-1]
        else:
            assert answered[alert_id]["kind"] != "operator_alarm"


@given(st.lists(EVENTS, max_size=40))
def test_nothing_but_duplicates_and_what_a_resync_supersedes_is_dropped(events: list[dict[str, Any]]) -> None:
    kept = _after_last_resync(events)
    answered = coalesce(events, RESYNC_EVENT)
    others = [e for e in kept if e["kind"] not in ALERT_KINDS]
    for event in others:
        if event["kind"] == "device_health":
            assert any(
                a["kind"] == "device_health"
                and (a["device_id"], a["flag"]) == (event["device_id"], event["flag"])
                for a in answered
            )
        else:
            assert event in answered
    if any(e["kind"] == RESYNC_EVENT for e in events):
        assert answered[0] == {"kind": RESYNC_EVENT}


def test_an_alert_and_its_notifications_waiting_together_make_one_read() -> None:
    events = [
        {"kind": "alert", "alert_id": "a1"},
        {"kind": "notification", "alert_id": "a1"},
        {"kind": "alert", "alert_id": "a2"},
        {"kind": "operator_alarm", "alert_id": "a1", "reason": "aucun accusé"},
        {"kind": "notification", "alert_id": "a1"},
    ]
    assert coalesce(events, RESYNC_EVENT) == [
        {"kind": "operator_alarm", "alert_id": "a1", "reason": "aucun accusé"},
        {"kind": "alert", "alert_id": "a2"},
    ]


def test_an_alarm_standing_for_later_events_names_the_latest_alert_version() -> None:
    # The feed answers from memory only with a record as new as the version named: an alarm
    # kept for a later event must not vouch for its own older version (nor for none at all).
    alarm = {"kind": "operator_alarm", "alert_id": "a1", "reason": "contrainte", "version": 3}
    newer = coalesce([alarm, {"kind": "alert", "alert_id": "a1", "version": 4}], RESYNC_EVENT)
    assert newer == [{**alarm, "version": 4}]
    unnamed = coalesce([alarm, {"kind": "notification", "alert_id": "a1"}], RESYNC_EVENT)
    assert unnamed == [{**alarm, "version": None}]
