"""The operator's escalation view (pure): tiers, deliveries, who took it, and the next tier's due time."""

from __future__ import annotations

from dispatcher.alerting.escalation import Acknowledged, AckTimeout, step
from dispatcher.alerting.escalation_plan import Recipient
from dispatcher.alerting.escalation_view import Sent, Timer, build
from tests.dispatcher.test_escalation import CIC, COMMISSAIRE, OFFICIER, started

FALLBACK = Recipient(contact_id="permanence", name="Permanence Vigie", phone="+33465710190", channels=())


def sms(who: Recipient, tier: int, status: str, *, round_: int = 0, purpose: str = "alert") -> Sent:
    return Sent(who.contact_id, who.name, who.phone, "sms", purpose, tier, round_, status)


def test_first_tier_running_counts_down_to_the_second() -> None:
    state = started()
    view = build(state, [sms(OFFICIER, 0, "delivered"), sms(CIC, 0, "failed")], [Timer(1090.0, 0, 0)])
    assert [t.status for t in view.tiers] == ["current", "upcoming"]
    assert [c.name for c in view.tiers[0].contacts] == [OFFICIER.name, CIC.name]
    assert [d.status for d in view.tiers[0].contacts[1].deliveries] == ["failed"]
    assert view.tiers[1].contacts[0].deliveries == ()  # listed before anyone texted him
    assert view.running and view.next is not None
    assert (view.next.due_at, view.next.tier, view.next.round, view.next.renotify) == (1090.0, 1, 0, False)


def test_after_the_timeout_the_second_tier_is_current_and_the_next_step_is_the_repeat() -> None:
    state, _ = step(started(), AckTimeout(tier=0, round=0))
    view = build(state, [sms(OFFICIER, 0, "delivered"), sms(COMMISSAIRE, 1, "sent")], [Timer(1210.0, 1, 0)])
    assert [t.status for t in view.tiers] == ["alerted", "current"]
    assert view.next is not None and (view.next.tier, view.next.round) == (0, 1)  # the chain again


def test_a_stale_timer_or_an_acknowledged_alert_has_no_countdown() -> None:
    state = started()
    assert build(state, [], [Timer(1000.0, 1, 3)]).next is None  # not the current position's timer
    taken, _ = step(state, Acknowledged(by=OFFICIER.contact_id, via="sms"))
    view = build(taken, [sms(OFFICIER, 0, "delivered")], [Timer(1090.0, 0, 0)])
    assert view.next is None and not view.running
    assert (view.acked_by, view.acked_via) == (OFFICIER.name, "sms")
    assert [c.acknowledged for c in view.tiers[0].contacts] == [True, False]
    assert [t.status for t in view.tiers] == ["alerted", "not_reached"]


def test_notices_are_not_deliveries_and_the_renotified_fallback_shows_under_its_tier() -> None:
    state = started()
    for position in [(0, 0), (1, 0), (0, 1), (1, 1)]:
        state, _ = step(state, AckTimeout(*position))
    assert state.renotifying
    sent = [
        sms(OFFICIER, 0, "delivered", purpose="ack_notice"),
        sms(FALLBACK, 1, "delivered", round_=2),
    ]
    view = build(state, sent, [Timer(2000.0, 1, 2)])
    assert view.tiers[0].contacts[0].deliveries == ()
    assert [c.name for c in view.tiers[1].contacts] == [COMMISSAIRE.name, FALLBACK.name]
    assert view.next is not None and view.next.renotify and (view.next.tier, view.next.round) == (1, 3)


def test_an_operator_name_is_kept_as_it_is() -> None:
    taken, _ = step(started(), Acknowledged(by="Olivier Opérateur (opérateur Vigie)", via="console"))
    view = build(taken, [], [])
    assert (view.acked_by, view.acked_via) == ("Olivier Opérateur (opérateur Vigie)", "console")
    assert not any(c.acknowledged for t in view.tiers for c in t.contacts)
