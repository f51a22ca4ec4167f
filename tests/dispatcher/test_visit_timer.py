"""The visit timer's invariants (dispatcher/visits/timer.py docstring), as properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.visits import timer as vt

T0 = 1_800_000_000.0


def fresh(duration_s: int = 900, grace_s: int = 300) -> vt.VisitTimerState:
    state, commands = vt.start("visit-1", "dr-a", now=T0, duration_s=duration_s, grace_s=grace_s)
    assert commands == [vt.Record("visit.open", (("duration_s", str(duration_s)),))]
    return state


events = st.one_of(
    st.builds(vt.TimerFired, now=st.floats(T0, T0 + 10_000)),
    st.builds(vt.Extend, now=st.floats(T0, T0 + 10_000), by_s=st.integers(-5, 3600)),
    st.builds(
        vt.CheckOut,
        now=st.floats(T0, T0 + 10_000),
        via=st.sampled_from(["page", "sms"]),
        duress=st.booleans(),
    ),
)


@given(st.lists(events, max_size=12))
def test_invariants_hold_on_any_sequence_of_events(sequence: list[vt.Event]) -> None:
    state = fresh()
    alerts = 0
    for event in sequence:
        before = state
        state, commands = vt.step(state, event)
        raised = [c for c in commands if isinstance(c, vt.RaiseAlert)]
        alerts += len(raised)
        # 1. unfinished ⇔ exactly one due time
        assert (state.due_at is None) == state.finished
        # 2. time alone never closes a visit
        if isinstance(event, vt.TimerFired):
            assert state.phase != "closed" or before.phase == "closed"
        # 3. at most one alert, only on entering 'escalated'
        if raised:
            assert before.phase in ("open", "checking") and state.phase == "escalated"
        # 5. early timers change nothing
        if isinstance(event, vt.TimerFired) and before.due_at is not None and event.now < before.due_at:
            assert state is before and commands == []
        # 6. extending never moves the end back
        if isinstance(event, vt.Extend) and state is not before:
            assert state.ends_at >= before.ends_at
        if state is not before:
            assert state.version == before.version + 1
        assert vt.VisitTimerState.from_json(state.to_json()) == state
    assert alerts <= 1


@given(st.sampled_from(["page", "sms"]), st.floats(T0, T0 + 5_000))
def test_a_duress_answer_looks_exactly_like_an_ok(via: vt.Via, now: float) -> None:
    ok, ok_commands = vt.step(fresh(), vt.CheckOut(now=now, via=via))
    duress, duress_commands = vt.step(fresh(), vt.CheckOut(now=now, via=via, duress=True))
    assert ok.public_phase == duress.public_phase == "closed"
    assert [c for c in ok_commands if isinstance(c, vt.Reply)] == [
        c for c in duress_commands if isinstance(c, vt.Reply)
    ]
    assert not any(isinstance(c, vt.RaiseAlert) for c in ok_commands)
    assert vt.RaiseAlert(vt.REASON, duress=True) in duress_commands


def test_the_whole_path_open_check_alert() -> None:
    state = fresh(duration_s=900, grace_s=300)
    assert state.due_at == T0 + 900
    state, commands = vt.step(state, vt.TimerFired(now=T0 + 901))
    assert state.phase == "checking" and commands[0] == vt.SendCheck(deadline=T0 + 1201)
    assert state.due_at == T0 + 1201
    same, nothing = vt.step(state, vt.TimerFired(now=T0 + 1000))  # early duplicate
    assert same is state and nothing == []
    state, commands = vt.step(state, vt.TimerFired(now=T0 + 1201))
    assert state.phase == "escalated" and vt.RaiseAlert(vt.REASON, duress=False) in commands
    assert vt.step(state, vt.CheckOut(now=T0 + 1300, via="sms")) == (state, [])


def test_extending_during_the_check_cancels_it() -> None:
    state, _ = vt.step(fresh(duration_s=900), vt.TimerFired(now=T0 + 900))
    state, commands = vt.step(state, vt.Extend(now=T0 + 950, by_s=600))
    assert state.phase == "open" and state.ends_at == T0 + 1550 and state.check_deadline is None
    assert vt.SyncVisit(T0 + 1550, None) in commands
