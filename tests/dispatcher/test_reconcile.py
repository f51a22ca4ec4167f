"""The reconciliation rule (pure): adopt what the provider has, re-send what it never got."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.alerting.reconcile import (
    CLOCK_SKEW_S,
    Adopt,
    Drop,
    ProviderRecord,
    Resend,
    Uncertain,
    Wait,
    decide_lost,
    decide_stuck,
)

PHONE = "+33639980101"
OTHER = "+33639980102"
T0 = 1_800_000_000.0

LOST = Uncertain(
    id=7,
    channel="sms",
    phone=PHONE,
    purpose="alert",
    status="unknown",
    provider_sid=None,
    created_at=T0,
    updated_at=T0 + 1,
    alert_state="notifying",
)


def rec(sid: str, at: float, *, to: str = PHONE, status: str = "delivered") -> ProviderRecord:
    return ProviderRecord(sid=sid, to=to, status=status, created_at=at)


def decide(
    records: list[ProviderRecord],
    *,
    taken: frozenset[str] = frozenset(),
    rivals: int = 0,
    now: float = T0 + 60,
) -> object:
    return decide_lost(LOST, records, taken_sids=taken, rivals=rivals, now=now, settle_s=10)


def test_a_request_the_provider_has_is_adopted_with_its_status() -> None:
    assert decide([rec("SM1", T0 + 0.5)]) == Adopt("SM1", "delivered")


def test_a_request_the_provider_never_got_is_sent_again() -> None:
    assert decide([]) == Resend()


def test_no_lookup_decides_before_the_request_had_time_to_settle() -> None:
    assert isinstance(decide([], now=T0 + 5), Wait)


def test_records_of_other_numbers_other_rows_or_before_the_row_do_not_count() -> None:
    records = [
        rec("SM-other-number", T0 + 1, to=OTHER),
        rec("SM-other-row", T0 + 1),
        rec("SM-older", T0 - CLOCK_SKEW_S - 1),
    ]
    assert decide(records, taken=frozenset({"SM-other-row"})) == Resend()


def test_within_the_clock_skew_margin_a_record_counts() -> None:
    assert decide([rec("SM1", T0 - CLOCK_SKEW_S + 1)]) == Adopt("SM1", "delivered")


def test_two_records_that_could_be_the_row_s_are_disowned_and_the_row_sent_again() -> None:
    # Which of the two is this row's is unknowable: adopting the wrong one would mark
    # another alert's call as this one's. A duplicate is the accepted cost.
    records = [rec("SM-late", T0 + 30), rec("SM-early", T0 + 2)]
    assert decide(records) == Resend(disowned=("SM-early", "SM-late"))


def test_another_row_in_doubt_to_the_same_number_forbids_adopting() -> None:
    assert decide([rec("SM1", T0 + 0.5)], rivals=1) == Resend(disowned=("SM1",))


def test_an_alert_no_longer_needed_is_dropped_but_a_notice_is_still_sent() -> None:
    closed = replace(LOST, alert_state="acknowledged")
    assert isinstance(
        decide_lost(closed, [], taken_sids=frozenset(), rivals=0, now=T0 + 60, settle_s=10), Drop
    )
    notice = replace(closed, purpose="ack_notice")
    assert decide_lost(notice, [], taken_sids=frozenset(), rivals=0, now=T0 + 60, settle_s=10) == Resend()


def test_a_stuck_row_takes_the_final_status_the_provider_reports() -> None:
    stuck = replace(LOST, status="queued", provider_sid="SM1")
    assert decide_stuck(stuck, rec("SM1", T0, status="delivered")) == Adopt("SM1", "delivered")
    assert isinstance(decide_stuck(stuck, rec("SM1", T0, status="sent")), Wait)
    assert isinstance(decide_stuck(stuck, None), Wait)
    call = replace(stuck, channel="voice", status="in-progress")
    assert decide_stuck(call, rec("CA1", T0, status="no-answer")) == Adopt("CA1", "no-answer")


@given(
    offsets=st.lists(st.floats(-300, 300, allow_nan=False), max_size=6),
    taken=st.sets(st.integers(0, 5)),
    rivals=st.integers(0, 3),
)
def test_never_adopts_a_record_another_row_holds_and_never_gives_up_on_a_wanted_alert(
    offsets: list[float], taken: set[int], rivals: int
) -> None:
    records = [rec(f"SM{i}", T0 + o) for i, o in enumerate(offsets)]
    taken_sids = frozenset(f"SM{i}" for i in taken)
    decision = decide(records, taken=taken_sids, rivals=rivals)
    # A wanted alert is always adopted or re-sent once settled: never left without a decision.
    assert isinstance(decision, Adopt | Resend)
    candidates = {r.sid for r in records if r.sid not in taken_sids and r.created_at >= T0 - CLOCK_SKEW_S}
    if isinstance(decision, Adopt):
        assert candidates == {decision.sid} and rivals == 0
    else:
        assert set(decision.disowned) == candidates


@given(
    # Several alerts' calls to one switchboard lost in the same crash: for each,
    # whether its request had reached the provider; then rows of later crashes.
    crashes=st.lists(st.lists(st.booleans(), min_size=1, max_size=5), min_size=1, max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_crash_after_crash_no_row_ever_adopts_another_row_s_call(
    crashes: list[list[bool]], order: object
) -> None:
    """The shell's loop in miniature: rows reconciled in any order, disowned records remembered."""
    records: list[ProviderRecord] = []
    owner: dict[str, int] = {}  # the truth the reconciliation cannot see
    taken: set[str] = set()
    next_id = 0
    for crash, reached in enumerate(crashes):
        rows = []
        for left in reached:
            row = replace(
                LOST, id=next_id, channel="voice", created_at=T0 + 10 * crash, updated_at=T0 + 10 * crash
            )
            next_id += 1
            rows.append(row)
            if left:
                sid = f"CA{row.id}"
                records.append(rec(sid, row.created_at + 0.2, status="completed"))
                owner[sid] = row.id
        order.shuffle(rows)  # type: ignore[attr-defined]
        in_doubt = {r.id for r in rows}
        for row in rows:
            in_doubt.discard(row.id)
            decision = decide_lost(
                row,
                records,
                taken_sids=frozenset(taken),
                rivals=len(in_doubt),
                now=row.updated_at + 60,
                settle_s=10,
            )
            assert isinstance(decision, Adopt | Resend)
            if isinstance(decision, Adopt):
                assert owner[decision.sid] == row.id, "adopted another alert's call"
                taken.add(decision.sid)
            else:  # re-sent: at worst a duplicate of its own call, which the rule accepts
                taken.update(decision.disowned)
