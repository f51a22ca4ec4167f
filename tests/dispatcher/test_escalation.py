"""The escalation state machine: lifecycle, idempotence, duress, delivery fallback, persistence."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.alerting.escalation import (
    ALARM_EXHAUSTED,
    PRACTITIONER_CONTACT_ID,
    Acknowledged,
    AckTimeout,
    Cancelled,
    CancelTimers,
    Command,
    DeliveryFailed,
    EscalationPlan,
    EscalationState,
    Event,
    MarkedFalseAlarm,
    Notify,
    OperatorTookOver,
    PlanTier,
    PushConsole,
    RaiseOperatorAlarm,
    Recipient,
    Resolved,
    SendDownlink,
    StartTimer,
    start,
    step,
)
from dispatcher.domain import AlertKind, AlertState, Channel

SMS, VOICE = Channel.SMS, Channel.VOICE

OFFICIER = Recipient(
    contact_id="officier-permanence",
    name="Officier de permanence",
    phone="+33639980101",
    channels=(SMS, VOICE),
    unit_id="dipn-34-montpellier",
    unit_name="Commissariat central de Montpellier",
)
CIC = Recipient(
    contact_id="cic-montpellier",
    name="CIC Montpellier",
    phone="+33465710101",
    channels=(VOICE,),
    unit_id="dipn-34-montpellier",
    unit_name="Commissariat central de Montpellier",
    priority=2,
)
COMMISSAIRE = Recipient(
    contact_id="commissaire",
    name="Commissaire référent SSJ",
    phone="+33639980102",
    channels=(SMS, VOICE),
    unit_id="dipn-34-montpellier",
    unit_name="Commissariat central de Montpellier",
    priority=3,
)
PLAN = EscalationPlan(
    tiers=(
        PlanTier(recipients=(OFFICIER, CIC), ack_timeout_s=90),
        PlanTier(recipients=(COMMISSAIRE,), ack_timeout_s=120),
    ),
    repeats=1,
)
PRACTITIONER_PHONE = "+33639980150"


def started(plan: EscalationPlan = PLAN) -> EscalationState:
    return start("alerte-1", AlertKind.ALERT, plan, practitioner_phone=PRACTITIONER_PHONE)[0]


def notifies(commands: list[Command]) -> set[tuple[str, Channel, str]]:
    return {(c.recipient.contact_id, c.channel, c.purpose) for c in commands if isinstance(c, Notify)}


def of_type(commands: list[Command], kind: type) -> list[Command]:
    return [c for c in commands if isinstance(c, kind)]


def run(state: EscalationState, *events: Event) -> tuple[EscalationState, list[Command]]:
    """Apply events in order; returns the final state and the commands of the last step."""
    commands: list[Command] = []
    for event in events:
        state, commands = step(state, event)
    return state, commands


# --- start ---------------------------------------------------------------------------------


def test_start_alerts_the_whole_first_tier_on_every_channel_and_arms_its_timer() -> None:
    state, commands = start("alerte-1", AlertKind.ALERT, PLAN, practitioner_phone=PRACTITIONER_PHONE)
    assert state.state is AlertState.NOTIFYING
    assert (state.tier, state.round, state.version) == (0, 0, 1)
    assert state.notified == ("officier-permanence", "cic-montpellier")
    assert notifies(commands) == {
        ("officier-permanence", SMS, "alert"),
        ("officier-permanence", VOICE, "alert"),
        ("cic-montpellier", VOICE, "alert"),
    }
    assert of_type(commands, StartTimer) == [StartTimer(delay_s=90, tier=0, round=0)]
    assert of_type(commands, PushConsole) == [PushConsole()]
    assert not of_type(commands, SendDownlink)  # "received" is the engine's job


@pytest.mark.parametrize(
    "plan", [None, EscalationPlan(), EscalationPlan(tiers=(PlanTier((), 60),), repeats=2)]
)
def test_start_without_recipient_raises_an_operator_alarm_and_stays_open(plan: EscalationPlan | None) -> None:
    state, commands = start("alerte-1", AlertKind.ALERT, plan, practitioner_phone=None)
    assert state.state is AlertState.NOTIFYING
    assert state.exhausted
    assert of_type(commands, RaiseOperatorAlarm)
    assert not notifies(commands) and not of_type(commands, StartTimer)
    # Operators can still take it and close it.
    acked, cmds = step(state, Acknowledged(by="operateur-urps", via="console"))
    assert acked.state is AlertState.ACKNOWLEDGED
    assert SendDownlink("acknowledged") in cmds


def test_start_skips_an_empty_first_tier() -> None:
    plan = EscalationPlan(tiers=(PlanTier((), 30), PlanTier((COMMISSAIRE,), 120)), repeats=0)
    state, commands = start("alerte-1", AlertKind.ALERT, plan, practitioner_phone=None)
    assert (state.tier, state.round) == (1, 0)
    assert of_type(commands, StartTimer) == [StartTimer(delay_s=120, tier=1, round=0)]


def test_test_alert_never_reaches_a_responder() -> None:
    state, commands = start("test-1", AlertKind.TEST, PLAN, practitioner_phone=PRACTITIONER_PHONE)
    assert state.state is AlertState.RESOLVED
    assert state.plan == PLAN  # who would have been alerted stays visible
    [notify] = of_type(commands, Notify)
    assert isinstance(notify, Notify)
    assert notify.purpose == "test" and notify.channel is SMS
    assert notify.recipient.phone == PRACTITIONER_PHONE
    assert notify.recipient.contact_id == PRACTITIONER_CONTACT_ID
    assert SendDownlink("acknowledged") in commands
    assert not of_type(commands, StartTimer)
    assert state.notified == ()


def test_test_alert_without_known_phone_only_gives_the_device_feedback() -> None:
    _, commands = start("test-1", AlertKind.TEST, PLAN, practitioner_phone=None)
    assert not notifies(commands)
    assert SendDownlink("acknowledged") in commands


def test_events_on_a_test_alert_never_notify() -> None:
    state, _ = start("test-1", AlertKind.TEST, PLAN, practitioner_phone=PRACTITIONER_PHONE)
    for event in (
        AckTimeout(0, 0),
        Acknowledged("officier-permanence", "sms"),
        Resolved("op"),
        OperatorTookOver("op"),
    ):
        assert step(state, event) == (state, [])
    assert step(state, Cancelled(duress=False)) == (state, [SendDownlink("cancelled")])
    new, commands = step(state, Cancelled(duress=True))
    assert new is state
    assert commands[0] == SendDownlink("cancelled")
    assert of_type(commands, RaiseOperatorAlarm)


# --- timeouts ------------------------------------------------------------------------------


def test_timeouts_walk_tiers_then_rounds_then_exhaust() -> None:
    state = started()
    state, commands = step(state, AckTimeout(0, 0))
    assert (state.tier, state.round, state.version) == (1, 0, 2)
    assert notifies(commands) == {("commissaire", SMS, "alert"), ("commissaire", VOICE, "alert")}
    assert of_type(commands, StartTimer) == [StartTimer(delay_s=120, tier=1, round=0)]
    assert PushConsole() in commands

    state, commands = step(state, AckTimeout(1, 0))
    assert (state.tier, state.round) == (0, 1)
    assert {n[0] for n in notifies(commands)} == {"officier-permanence", "cic-montpellier"}
    assert of_type(commands, StartTimer) == [StartTimer(delay_s=90, tier=0, round=1)]

    state, commands = step(state, AckTimeout(0, 1))
    assert (state.tier, state.round) == (1, 1)

    state, commands = step(state, AckTimeout(1, 1))
    assert state.exhausted
    assert state.state is AlertState.NOTIFYING  # still open: operators must act
    assert of_type(commands, RaiseOperatorAlarm) == [RaiseOperatorAlarm(ALARM_EXHAUSTED)]
    assert state.notified == ("officier-permanence", "cic-montpellier", "commissaire")
    assert step(state, AckTimeout(1, 1)) == (state, [])


def test_an_exhausted_chain_keeps_re_notifying_the_last_tier_until_acknowledged() -> None:
    state = run(started(), AckTimeout(0, 0), AckTimeout(1, 0), AckTimeout(0, 1))[0]
    state, commands = step(state, AckTimeout(1, 1))
    # The chain is run out: one alarm, and the last tier alerted again on the re-notification period.
    assert (state.tier, state.round) == (1, 2)
    assert notifies(commands) == {("commissaire", SMS, "alert"), ("commissaire", VOICE, "alert")}
    assert of_type(commands, StartTimer) == [StartTimer(delay_s=PLAN.renotify_s, tier=1, round=2)]
    for round_ in (3, 4, 5):
        state, commands = step(state, AckTimeout(1, round_ - 1))
        assert (state.tier, state.round) == (1, round_)
        assert of_type(commands, StartTimer) == [StartTimer(PLAN.renotify_s, 1, round_)]
        assert len(of_type(commands, Notify)) == 2
        assert not of_type(commands, RaiseOperatorAlarm)  # the alarm was raised once
    state, commands = step(state, Acknowledged(by="commissaire", via="voice"))
    assert state.state is AlertState.ACKNOWLEDGED and CancelTimers() in commands


def test_a_re_notification_also_alerts_the_deployment_fallback_contact() -> None:
    fallback = Recipient("deployment-fallback", "Astreinte Vigie", "+33465719999", (VOICE,))
    plan = replace(PLAN, repeats=0, renotify_also=fallback)
    state, commands = run(started(plan), AckTimeout(0, 0), AckTimeout(1, 0))
    assert notifies(commands) == {
        ("commissaire", SMS, "alert"),
        ("commissaire", VOICE, "alert"),
        ("deployment-fallback", VOICE, "alert"),
    }
    assert "deployment-fallback" in state.notified  # and so gets the later notices
    assert EscalationState.from_json(json.loads(json.dumps(state.to_json()))) == state


def test_a_re_notification_waits_for_its_period_even_when_every_delivery_fails() -> None:
    state = run(started(replace(PLAN, repeats=0)), AckTimeout(0, 0), AckTimeout(1, 0))[0]
    assert (state.tier, state.round) == (1, 1)
    state, commands = run(state, DeliveryFailed("commissaire", SMS), DeliveryFailed("commissaire", VOICE))
    assert (state.tier, state.round) == (1, 1)  # no tight loop on a dead number
    assert not of_type(commands, StartTimer)


def test_the_re_notification_period_comes_from_the_plan_and_survives_json() -> None:
    plan = replace(PLAN, repeats=0, renotify_s=42)
    state, commands = run(started(plan), AckTimeout(0, 0), AckTimeout(1, 0))
    assert of_type(commands, StartTimer) == [StartTimer(42, 1, 1)]
    assert EscalationState.from_json(json.loads(json.dumps(state.to_json()))).plan.renotify_s == 42
    legacy = state.to_json()
    del legacy["plan"]["renotify_s"]  # a state written before re-notification existed
    assert EscalationState.from_json(legacy).plan.renotify_s == PLAN.renotify_s


def test_no_repeat_exhausts_after_the_last_tier() -> None:
    state = started(replace(PLAN, repeats=0))
    state, _ = step(state, AckTimeout(0, 0))
    state, commands = step(state, AckTimeout(1, 0))
    assert state.exhausted
    assert of_type(commands, RaiseOperatorAlarm) == [RaiseOperatorAlarm(ALARM_EXHAUSTED)]


@pytest.mark.parametrize("event", [AckTimeout(1, 0), AckTimeout(0, 1), AckTimeout(5, 0)])
def test_stale_timeout_is_ignored(event: AckTimeout) -> None:
    state = started()
    assert step(state, event) == (state, [])


def test_timer_firing_twice_moves_the_escalation_once() -> None:
    state = started()
    once, _ = step(state, AckTimeout(0, 0))
    twice, commands = step(once, AckTimeout(0, 0))
    assert twice is once and commands == []


# --- acknowledgement -----------------------------------------------------------------------


def test_acknowledgement_stops_escalation_and_tells_the_others() -> None:
    state, _ = step(started(), AckTimeout(0, 0))  # the commissaire is alerted too
    state, commands = step(state, Acknowledged(by="commissaire", via="sms"))
    assert state.state is AlertState.ACKNOWLEDGED
    assert (state.acked_by, state.acked_via) == ("commissaire", "sms")
    assert CancelTimers() in commands
    assert SendDownlink("acknowledged") in commands
    # Only the other SMS-capable contacts get the notice; the CIC desk is voice-only.
    assert notifies(commands) == {("officier-permanence", SMS, "ack_notice")}
    assert commands[-1] == PushConsole()

    assert step(state, Acknowledged(by="officier-permanence", via="voice")) == (state, [])
    assert step(state, AckTimeout(1, 0)) == (state, [])


def test_operator_acknowledgement_from_the_console_notifies_every_responder() -> None:
    state, commands = step(started(), Acknowledged(by="Mme Roux (opératrice)", via="console"))
    assert state.acked_by == "Mme Roux (opératrice)"
    assert notifies(commands) == {("officier-permanence", SMS, "ack_notice")}


def test_late_acknowledgement_after_exhaustion_still_counts() -> None:
    state = run(started(), AckTimeout(0, 0), AckTimeout(1, 0), AckTimeout(0, 1), AckTimeout(1, 1))[0]
    assert state.exhausted
    state, commands = step(state, Acknowledged(by="cic-montpellier", via="voice"))
    assert state.state is AlertState.ACKNOWLEDGED
    assert SendDownlink("acknowledged") in commands


# --- cancellation and duress -------------------------------------------------------------------


def test_normal_cancel_stands_everyone_down() -> None:
    state, commands = step(started(), Cancelled(duress=False))
    assert state.state is AlertState.CANCELLED
    assert CancelTimers() in commands
    assert SendDownlink("cancelled") in commands
    # The voice-only desk is called: a stand-down changes what responders do.
    assert notifies(commands) == {
        ("officier-permanence", SMS, "cancelled"),
        ("cic-montpellier", VOICE, "cancelled"),
    }


def test_duress_cancel_looks_normal_to_the_device_but_escalation_goes_on() -> None:
    state, commands = step(started(), Cancelled(duress=True))
    assert state.state is AlertState.DURESS and state.duress
    assert SendDownlink("cancelled") in commands
    assert CancelTimers() not in commands  # the tier-0 timer keeps running
    assert RaiseOperatorAlarm("annulation sous contrainte") in commands
    assert notifies(commands) == {
        ("officier-permanence", SMS, "duress_notice"),
        ("cic-montpellier", VOICE, "duress_notice"),
    }

    state, commands = step(state, AckTimeout(0, 0))
    assert notifies(commands) == {("commissaire", SMS, "alert"), ("commissaire", VOICE, "alert")}
    assert state.state is AlertState.DURESS

    # No "acknowledged"/"resolved" feedback: the device must keep believing it was cancelled.
    state, commands = step(state, Acknowledged(by="commissaire", via="voice"))
    assert state.state is AlertState.ACKNOWLEDGED and state.duress
    assert not of_type(commands, SendDownlink)
    state, commands = step(state, Resolved(by="commissaire"))
    assert state.state is AlertState.RESOLVED
    assert not of_type(commands, SendDownlink)


def test_no_cancel_can_undo_a_duress() -> None:
    state, _ = step(started(), Cancelled(duress=True))
    for cancel in (Cancelled(duress=False), Cancelled(duress=True)):
        new, commands = step(state, cancel)
        assert new is state
        assert commands == [SendDownlink("cancelled")]


def test_cancel_after_acknowledgement() -> None:
    acked, _ = step(started(), Acknowledged(by="officier-permanence", via="sms"))
    state, commands = step(acked, Cancelled(duress=False))
    assert state.state is AlertState.CANCELLED
    assert ("officier-permanence", SMS, "cancelled") in notifies(commands)

    state, commands = step(acked, Cancelled(duress=True))
    assert state.state is AlertState.DURESS
    assert state.acked_by == "officier-permanence"
    assert ("officier-permanence", SMS, "duress_notice") in notifies(commands)
    assert not of_type(commands, StartTimer)
    assert step(state, AckTimeout(0, 0)) == (state, [])  # acknowledged: nothing left to escalate


@pytest.mark.parametrize("closing", [Cancelled(duress=False), Resolved(by="op"), MarkedFalseAlarm(by="op")])
def test_cancel_after_the_end_only_answers_the_device(closing: Event) -> None:
    closed, _ = step(started(), closing)
    assert step(closed, Cancelled(duress=False)) == (closed, [SendDownlink("cancelled")])
    new, commands = step(closed, Cancelled(duress=True))
    assert new is closed
    assert not notifies(commands)
    assert commands[0] == SendDownlink("cancelled") and of_type(commands, RaiseOperatorAlarm)


def test_a_duress_after_an_acknowledgement_rings_again_until_an_operator_takes_it() -> None:
    acked, _ = step(started(), Acknowledged(by="officier-permanence", via="sms"))
    assert acked.alarm is None
    state, _ = step(acked, Cancelled(duress=True))
    assert state.alarm == "annulation sous contrainte"
    # What she may be shown: exactly what a normal cancel would have left.
    assert state.cover == replace(step(acked, Cancelled(duress=False))[0], version=state.version)
    assert (
        state.cover is not None and not state.cover.duress and state.cover.acked_by == "officier-permanence"
    )
    taken, _ = step(state, OperatorTookOver(by="Mme Roux"))
    assert taken.alarm is None and taken.taken_over_by == "Mme Roux" and taken.state is AlertState.DURESS
    assert step(taken, OperatorTookOver(by="M. Blanc")) == (taken, [])
    assert EscalationState.from_json(json.loads(json.dumps(taken.to_json()))) == taken


def test_an_exhausted_or_unrouted_alert_keeps_its_alarm_until_a_human_has_it() -> None:
    state = started()
    for _ in range(4):
        state, _ = step(state, AckTimeout(state.tier, state.round))
    assert state.exhausted and state.alarm == ALARM_EXHAUSTED
    acked, _ = step(state, Acknowledged(by="commissaire", via="voice"))
    assert acked.alarm is None
    unrouted, _ = start("a-2", AlertKind.ALERT, EscalationPlan(), practitioner_phone=None)
    assert unrouted.alarm is not None and "aucun destinataire" in unrouted.alarm
    assert step(unrouted, OperatorTookOver(by="Mme Roux"))[0].alarm is None


# --- closing ---------------------------------------------------------------------------------


def test_resolve_without_acknowledgement() -> None:
    state, commands = step(started(), Resolved(by="Mme Roux"))
    assert state.state is AlertState.RESOLVED
    assert state.closed_by == "Mme Roux"
    assert commands[0] == CancelTimers() and commands[-2:] == [SendDownlink("resolved"), PushConsole()]
    # Those alerted are told it is over, by the operator's name.
    assert notifies(commands) == {
        ("officier-permanence", SMS, "resolved"),
        ("cic-montpellier", VOICE, "resolved"),
    }
    assert {n.actor for n in of_type(commands, Notify) if isinstance(n, Notify)} == {"Mme Roux"}
    assert step(state, Resolved(by="Mme Roux")) == (state, [])
    assert step(state, Acknowledged(by="officier-permanence", via="sms")) == (state, [])


def test_false_alarm_tells_the_responders_and_the_device() -> None:
    acked, _ = step(started(), Acknowledged(by="officier-permanence", via="sms"))
    state, commands = step(acked, MarkedFalseAlarm(by="Mme Roux"))
    assert state.state is AlertState.FALSE_ALARM
    assert CancelTimers() in commands
    assert SendDownlink("resolved") in commands
    assert notifies(commands) == {
        ("officier-permanence", SMS, "false_alarm"),
        ("cic-montpellier", VOICE, "false_alarm"),
    }
    assert step(state, MarkedFalseAlarm(by="Mme Roux")) == (state, [])


# --- delivery failures -------------------------------------------------------------------------


def test_failures_of_a_whole_tier_escalate_without_waiting() -> None:
    state = started()
    state, commands = step(state, DeliveryFailed("officier-permanence", SMS))
    assert commands == [PushConsole()]  # voice was already sent to him: nothing to fall back to
    assert state.failed == (("officier-permanence", SMS),)
    state, _ = step(state, DeliveryFailed("officier-permanence", VOICE))
    state, commands = step(state, DeliveryFailed("cic-montpellier", VOICE, tier=0, round=0))
    assert (state.tier, state.round) == (1, 0)
    assert notifies(commands) == {("commissaire", SMS, "alert"), ("commissaire", VOICE, "alert")}
    assert StartTimer(delay_s=120, tier=1, round=0) in commands
    assert state.failed == ()
    # The tier-0 timer still fires later: harmless.
    assert step(state, AckTimeout(0, 0)) == (state, [])


def test_failure_falls_back_to_an_unused_channel() -> None:
    state = replace(started(), sent=(("officier-permanence", SMS), ("cic-montpellier", VOICE)))
    state, commands = step(state, DeliveryFailed("officier-permanence", SMS))
    assert notifies(commands) == {("officier-permanence", VOICE, "alert")}
    assert ("officier-permanence", VOICE) in state.sent
    assert (state.tier, state.round) == (0, 0)


@pytest.mark.parametrize(
    "event",
    [
        DeliveryFailed("officier-permanence", SMS, tier=1, round=0),  # callback about another position
        DeliveryFailed("commissaire", SMS),  # not alerted at this position
        DeliveryFailed("cic-montpellier", SMS),  # never sent on that channel
        DeliveryFailed("officier-permanence", SMS, purpose="duress_notice"),  # a notice, not the alert
    ],
)
def test_failures_outside_the_current_position_only_refresh_the_console(event: DeliveryFailed) -> None:
    state = started()
    assert step(state, event) == (state, [PushConsole()])


def test_duplicate_failure_callback_counts_once() -> None:
    state, _ = step(started(), DeliveryFailed("officier-permanence", SMS))
    assert step(state, DeliveryFailed("officier-permanence", SMS)) == (state, [PushConsole()])


def test_failure_after_the_end_only_refreshes_the_console() -> None:
    state, _ = step(started(), Resolved(by="op"))
    assert step(state, DeliveryFailed("officier-permanence", SMS)) == (state, [PushConsole()])


def test_every_contact_failing_exhausts_quickly_and_raises_the_alarm() -> None:
    state = started(replace(PLAN, repeats=0))
    state, _ = run(
        state,
        DeliveryFailed("officier-permanence", SMS),
        DeliveryFailed("officier-permanence", VOICE),
        DeliveryFailed("cic-montpellier", VOICE),
        DeliveryFailed("commissaire", SMS),
    )
    state, commands = step(state, DeliveryFailed("commissaire", VOICE))
    assert state.exhausted
    assert RaiseOperatorAlarm(ALARM_EXHAUSTED) in commands
    assert of_type(commands, StartTimer) == [StartTimer(PLAN.renotify_s, 1, 1)]  # and re-notifies


# --- operator takeover -------------------------------------------------------------------------


def test_operator_takeover_stops_automatic_escalation_but_keeps_the_alert_open() -> None:
    state, commands = step(started(), OperatorTookOver(by="Mme Roux"))
    assert state.taken_over_by == "Mme Roux"
    assert state.state is AlertState.NOTIFYING
    assert commands == [CancelTimers(), PushConsole()]
    assert step(state, AckTimeout(0, 0)) == (state, [])
    assert step(state, OperatorTookOver(by="M. Blanc")) == (state, [])
    acked, _ = step(state, Acknowledged(by="officier-permanence", via="voice"))
    assert acked.state is AlertState.ACKNOWLEDGED


def test_operator_can_take_over_an_exhausted_escalation() -> None:
    state = run(started(replace(PLAN, repeats=0)), AckTimeout(0, 0), AckTimeout(1, 0))[0]
    assert state.exhausted
    state, _ = step(state, OperatorTookOver(by="Mme Roux"))
    assert state.taken_over_by == "Mme Roux"


# --- persistence -----------------------------------------------------------------------------------


def test_json_round_trip_through_text() -> None:
    states = [
        started(),
        run(started(), AckTimeout(0, 0), DeliveryFailed("commissaire", VOICE))[0],
        run(started(), Cancelled(duress=True), Acknowledged("officier-permanence", "sms"))[0],
        run(started(), OperatorTookOver("op"), MarkedFalseAlarm("op"))[0],
        start("test-1", AlertKind.TEST, PLAN, practitioner_phone=None)[0],
        start("alerte-2", AlertKind.ALERT, None, practitioner_phone=None)[0],
    ]
    for state in states:
        again = EscalationState.from_json(json.loads(json.dumps(state.to_json())))
        assert again == state
        assert isinstance(again.plan.tiers, tuple) and isinstance(again.notified, tuple)


def test_unknown_schema_is_refused() -> None:
    data = started().to_json()
    data["schema"] = 99
    with pytest.raises(ValueError, match="schema"):
        EscalationState.from_json(data)


def test_version_moves_only_with_the_state() -> None:
    state = started()
    changed, _ = step(state, AckTimeout(0, 0))
    assert changed.version == state.version + 1
    same, _ = step(changed, AckTimeout(0, 0))
    assert same.version == changed.version


# --- properties -----------------------------------------------------------------------------------

CONTACTS = ["officier-permanence", "cic-montpellier", "commissaire", "cdt-brigade", "regulation-samu"]


@st.composite
def recipients(draw: st.DrawFn) -> Recipient:
    contact = draw(st.sampled_from(CONTACTS))
    channels = draw(st.sampled_from([(SMS,), (VOICE,), (SMS, VOICE), (VOICE, SMS)]))
    return Recipient(
        contact_id=contact, name=contact, phone=f"+3363998{CONTACTS.index(contact):04d}", channels=channels
    )


@st.composite
def tiers(draw: st.DrawFn) -> PlanTier:
    people = draw(st.lists(recipients(), max_size=3, unique_by=lambda r: r.contact_id))
    return PlanTier(recipients=tuple(people), ack_timeout_s=draw(st.integers(5, 600)))


plans = st.builds(EscalationPlan, tiers=st.lists(tiers(), max_size=4).map(tuple), repeats=st.integers(0, 3))
events: st.SearchStrategy[Event] = st.one_of(
    st.builds(AckTimeout, tier=st.integers(0, 4), round=st.integers(0, 4)),
    st.builds(
        Acknowledged,
        by=st.sampled_from([*CONTACTS, "operateur"]),
        via=st.sampled_from(["sms", "voice", "console"]),
    ),
    st.builds(Cancelled, duress=st.booleans()),
    st.builds(Resolved, by=st.just("operateur")),
    st.builds(MarkedFalseAlarm, by=st.just("operateur")),
    st.builds(
        DeliveryFailed,
        contact_id=st.sampled_from(CONTACTS),
        channel=st.sampled_from([SMS, VOICE]),
        tier=st.none() | st.integers(0, 4),
        round=st.none() | st.integers(0, 4),
        purpose=st.sampled_from(["alert", "alert", "ack_notice", "duress_notice"]),
    ),
    st.builds(OperatorTookOver, by=st.just("operateur")),
)
# Timeouts for the current position are what real timers produce: make them frequent.
current_timeout = st.just("current-timeout")


@settings(max_examples=400, deadline=None)
@given(
    plan=plans,
    kind=st.sampled_from([AlertKind.ALERT, AlertKind.ALERT, AlertKind.TEST]),
    script=st.lists(st.one_of(events, current_timeout), max_size=40),
)
def test_any_event_sequence_is_safe(plan: EscalationPlan, kind: AlertKind, script: list[Event | str]) -> None:
    state, commands = start("alerte-p", kind, plan, practitioner_phone="+33639980199")
    history = list(commands)
    positions: list[tuple[int, int]] = []

    for item in script:
        event = AckTimeout(state.tier, state.round) if isinstance(item, str) else item
        before = state
        state, commands = step(before, event)  # never raises
        history += commands

        # Nobody is bothered once the alert is over, and tests never reach a responder.
        if before.terminal or kind is AlertKind.TEST:
            assert not of_type(commands, Notify)
            assert not of_type(commands, StartTimer)
        # After a duress cancel the device only ever hears "cancelled".
        if before.duress:
            assert all(c == SendDownlink("cancelled") for c in of_type(commands, SendDownlink))
        # Versioning: a new object iff a new version, PushConsole on every change.
        if state is before:
            assert all(not isinstance(c, Notify | StartTimer) for c in commands)
        else:
            assert state.version == before.version + 1
            assert commands[-1] == PushConsole()
        if before.exhausted:  # only re-notification timers after the chain ran out
            assert all(
                isinstance(t, StartTimer) and t.delay_s == plan.renotify_s
                for t in of_type(commands, StartTimer)
            )
        # An alarm is only pending on an open alert; a duress keeps what a cancel would have shown.
        assert state.alarm is None or not state.terminal
        assert (state.cover is not None) == state.duress
        assert state.cover is None or (state.cover.state is AlertState.CANCELLED and not state.cover.duress)
        positions += [(t.round, t.tier) for t in of_type(commands, StartTimer) if isinstance(t, StartTimer)]
        assert EscalationState.from_json(json.loads(json.dumps(state.to_json()))) == state

    # Positions only move forward, each armed once.
    assert positions == sorted(set(positions))
    alerts = [c for c in history if isinstance(c, Notify) and c.purpose == "alert"]
    planned = [n for n in alerts if n.round <= plan.repeats]
    bound = sum(len(r.channels) for t in plan.tiers for r in t.recipients) * (plan.repeats + 1)
    assert len(planned) <= bound
    # Re-notifications: one round per timer, each at most the last tier's channels.
    renotified = Counter(n.round for n in alerts if n.round > plan.repeats)
    last = [t for t in plan.tiers if t.recipients][-1] if renotified else None
    assert last is None or all(
        n <= sum(len(r.channels) for r in last.recipients) for n in renotified.values()
    )
    # Nobody is alerted twice on the same channel at the same position.
    per_position = Counter((n.recipient.contact_id, n.channel, n.tier, n.round) for n in alerts)
    assert all(count == 1 for count in per_position.values())
    if kind is AlertKind.TEST:
        assert {c.purpose for c in history if isinstance(c, Notify)} <= {"test"}


@settings(max_examples=200, deadline=None)
@given(plan=plans)
def test_unanswered_alert_always_ends_in_an_operator_alarm(plan: EscalationPlan) -> None:
    state, commands = start("alerte-p", AlertKind.ALERT, plan, practitioner_phone=None)
    alarms = of_type(commands, RaiseOperatorAlarm)
    for _ in range(len(plan.tiers) * (plan.repeats + 1) + 1):
        state, commands = step(state, AckTimeout(state.tier, state.round))
        alarms += of_type(commands, RaiseOperatorAlarm)
    assert state.exhausted
    assert len(alarms) == 1
    assert state.state is AlertState.NOTIFYING
    if not plan.is_empty:  # and it still has a timer: the next re-notification
        assert of_type(commands, StartTimer) == [StartTimer(plan.renotify_s, state.tier, state.round)]
