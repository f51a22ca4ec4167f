"""A notification's status never goes back, whatever order the send's answer and the callbacks come in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.alerting.status_order import Outcome, Row, admits, rank, settle, writes

SMS_LIFE = ("queued", "sending", "sent", "delivered")
CALL_LIFE = ("queued", "initiated", "ringing", "in-progress", "completed")
FINALS = ("delivered", "undelivered", "failed", "canceled", "completed", "busy", "no-answer")
CLAIMED = Row("sending", None, None, leased=True)
SID = "SM" + "a" * 32

provider_status = st.sampled_from(sorted({*SMS_LIFE, *CALL_LIFE, *FINALS, "accepted", "read", "new-one"}))
sids = st.one_of(st.none(), st.sampled_from([SID, "CA" + "b" * 32]))
outcome = st.builds(Outcome, st.just(1), provider_status, sids, st.one_of(st.none(), st.just("30003")))


def test_the_answer_to_the_send_coming_after_the_callbacks_keeps_their_status_and_brings_the_sid() -> None:
    after = settle(
        {1: CLAIMED},
        [Outcome(1, "sent", SID, None), Outcome(1, "delivered", SID, None), Outcome(1, "queued", SID, None)],
    )
    assert after == {1: Row("delivered", SID, None)}
    slow_answer_only_sid = settle({1: Row("delivered", None, None)}, [Outcome(1, "queued", SID, None)])
    assert slow_answer_only_sid == {1: Row("delivered", SID, None)}


def test_a_late_sent_callback_does_not_undo_delivered_nor_a_ringing_undo_completed() -> None:
    assert settle({1: Row("delivered", SID, None)}, [Outcome(1, "sent", SID, None)])[1].status == "delivered"
    assert (
        settle({1: Row("completed", SID, None)}, [Outcome(1, "ringing", SID, None)])[1].status == "completed"
    )
    assert settle({1: Row("in-progress", SID, None)}, [Outcome(1, "completed", SID, None)])[1].status == (
        "completed"
    )


def test_our_sending_is_the_leased_one_twilios_sending_is_a_provider_status() -> None:
    assert admits(CLAIMED, "queued")  # our claim: the answer's 'queued' replaces it
    theirs = Row("sending", SID, None, leased=False)
    assert not admits(theirs, "queued")
    assert admits(theirs, "sent")
    assert rank("sending") > rank("queued")


def test_rows_still_ours_take_any_outcome_and_our_outcomes_never_replace_the_providers() -> None:
    for ours in (
        CLAIMED,
        Row("retry_wait", None, "x", leased=True),
        Row("pending", None, None),
        Row("unknown", None, "t"),
    ):
        assert all(admits(ours, s) for s in ("queued", "unknown", "failed", "canceled", "delivered"))
    assert not admits(Row("queued", SID, None), "unknown")
    assert settle({1: Row("sent", SID, None)}, [Outcome(1, "unknown", None, "timeout")]) == {
        1: Row("sent", SID, None)
    }


@given(st.lists(outcome, min_size=1, max_size=8))
def test_from_our_claim_the_status_is_the_latest_in_the_life_whatever_the_arrival_order(
    outcomes: list[Outcome],
) -> None:
    after = settle({1: CLAIMED}, outcomes)[1]
    best = max(rank(o.status) for o in outcomes)
    assert rank(after.status) == best
    assert after.status in {o.status for o in outcomes}
    given_sids = [o.provider_sid for o in outcomes if o.provider_sid]
    assert after.provider_sid == (given_sids[-1] if given_sids else None)
    assert not after.leased


@given(st.lists(outcome, max_size=8))
def test_statuses_never_go_back_step_by_step(outcomes: list[Outcome]) -> None:
    row = CLAIMED
    for o in outcomes:
        before = row
        row = settle({1: row}, [o])[1]
        if not before.leased:
            assert rank(row.status) >= rank(before.status)
        if before.provider_sid is not None:
            assert row.provider_sid is not None  # a SID is never lost


@given(st.lists(outcome, max_size=8))
def test_writes_take_the_stored_rows_to_the_settled_ones(outcomes: list[Outcome]) -> None:
    current = {1: CLAIMED, 2: Row("delivered", SID, None)}
    outcomes = (
        outcomes
        + [Outcome(2, o.status, o.provider_sid, o.error) for o in outcomes]
        + [Outcome(3, "sent", None, None)]
    )
    stored = dict(current)
    plan = writes(current, outcomes)
    for nid, row in plan.recorded:
        stored[nid] = row
    for nid, sid in plan.sids:
        stored[nid] = Row(stored[nid].status, sid, stored[nid].error, stored[nid].leased)
    assert stored == {**current, **settle(current, outcomes)}
    assert 3 not in stored  # no such row: nothing written
