"""The reconciliation rule (pure): adopt what the provider has, re-send what it never got."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.reconcile import (
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
    records: list[ProviderRecord], *, taken: frozenset[str] = frozenset(), now: float = T0 + 60
) -> object:
    return decide_lost(LOST, records, taken_sids=taken, now=now, settle_s=10)


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


def test_the_oldest_unclaimed_record_is_adopted() -> None:
    assert decide([rec("SM-late", T0 + 30), rec("SM-early", T0 + 2)]) == Adopt("SM-early", "delivered")


def test_an_alert_no_longer_needed_is_dropped_but_a_notice_is_still_sent() -> None:
    closed = replace(LOST, alert_state="acknowledged")
    assert isinstance(decide_lost(closed, [], taken_sids=frozenset(), now=T0 + 60, settle_s=10), Drop)
    notice = replace(closed, purpose="ack_notice")
    assert decide_lost(notice, [], taken_sids=frozenset(), now=T0 + 60, settle_s=10) == Resend()


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
)
def test_never_adopts_a_record_another_row_holds_and_never_gives_up_on_a_wanted_alert(
    offsets: list[float], taken: set[int]
) -> None:
    records = [rec(f"SM{i}", T0 + o) for i, o in enumerate(offsets)]
    taken_sids = frozenset(f"SM{i}" for i in taken)
    decision = decide(records, taken=taken_sids)
    # A wanted alert is always adopted or re-sent once settled: never left without a decision.
    assert isinstance(decision, Adopt | Resend)
    if isinstance(decision, Adopt):
        assert decision.sid not in taken_sids
    else:
        assert all(r.sid in taken_sids or r.created_at < T0 - CLOCK_SKEW_S for r in records)
