"""The alarm when no instance takes alerts: raised once per episode, never early, never on a blind spot.

Properties over any sequence of observations (takers or none, or the store
unreadable) at increasing times, against a reference computed from the
sequence itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.fleet.alert_takers import NO_TAKER, ClearNoTaker, RaiseNoTaker, TakerWatch, takers_back_text

GRACE = 10.0


@dataclass(frozen=True)
class Step:
    at: float
    takers: tuple[str, ...] | None  # None: the store could not be read


steps = st.lists(
    st.tuples(
        st.floats(min_value=0.1, max_value=8.0),
        st.one_of(st.none(), st.just(()), st.lists(st.sampled_from(["d1", "d2"]), max_size=2, unique=True)),
    ),
    max_size=60,
).map(lambda pairs: _timed(pairs))


def _timed(pairs: list[tuple[float, object]]) -> list[Step]:
    at, out = 0.0, []
    for gap, takers in pairs:
        at += gap
        out.append(Step(at, None if takers is None else tuple(takers)))  # type: ignore[arg-type]
    return out


def run(sequence: list[Step]) -> list[tuple[Step, list[object]]]:
    watch = TakerWatch(grace_s=GRACE, started_at=0.0)
    return [
        (s, watch.unknown(s.at) if s.takers is None else list(watch.observe(s.takers, s.at)))
        for s in sequence
    ]


@given(steps)
def test_raised_only_after_a_whole_grace_seen_without_taker_or_blind_spot(sequence: list[Step]) -> None:
    last_known_good = 0.0  # start, a taker seen, or the store unreadable: the silence counts from there
    for step, commands in run(sequence):
        if step.takers is None or step.takers:
            last_known_good = step.at
        if any(isinstance(c, RaiseNoTaker) for c in commands):
            assert step.takers == ()
            assert step.at - last_known_good >= GRACE


@given(steps)
def test_raises_and_clears_alternate_one_per_episode(sequence: list[Step]) -> None:
    said = [c for _, commands in run(sequence) for c in commands]
    kinds = [type(c) for c in said]
    assert kinds == [RaiseNoTaker, ClearNoTaker] * (len(kinds) // 2) + [RaiseNoTaker] * (len(kinds) % 2)


@given(steps)
def test_an_episode_long_enough_is_always_raised_and_its_end_always_cleared(sequence: list[Step]) -> None:
    raised = False
    silent_since: float | None = 0.0
    for step, commands in run(sequence):
        if step.takers is None:
            silent_since = step.at if not raised else silent_since
        elif step.takers:
            assert any(isinstance(c, ClearNoTaker) for c in commands) == raised
            if raised:
                cleared = next(c for c in commands if isinstance(c, ClearNoTaker))
                assert cleared.takers == tuple(sorted(step.takers))
            raised, silent_since = False, None
        else:
            if silent_since is None:
                silent_since = _previous_taker_time(sequence, step)
            due = not raised and step.at - silent_since >= GRACE
            assert any(isinstance(c, RaiseNoTaker) for c in commands) == due
            raised = raised or due


def _previous_taker_time(sequence: list[Step], step: Step) -> float:
    """When a taker or a blind spot was last seen before ``step`` (or the start)."""
    earlier = [s.at for s in sequence if s.at < step.at and (s.takers is None or s.takers)]
    return max(earlier, default=0.0)


def test_a_watch_started_alone_waits_its_grace() -> None:
    watch = TakerWatch(grace_s=GRACE, started_at=100.0)
    assert watch.observe([], 105.0) == []
    assert watch.observe([], 110.0) == [RaiseNoTaker(10.0)]
    assert watch.observe([], 200.0) == []  # once
    assert watch.observe(["d2", "d1"], 201.0) == [ClearNoTaker(("d1", "d2"))]


def test_a_grace_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TakerWatch(grace_s=0, started_at=0.0)


def test_the_operators_texts() -> None:
    assert NO_TAKER == (
        "aucune instance du dispatcher ne reçoit plus les alertes des balises : elles attendent chez le"
        " broker MQTT. Vérifiez les instances de rôle « all » et leur connexion au broker."
    )
    assert takers_back_text(["d2", "d1"]) == "alertes des balises de nouveau reçues (instance(s) d1, d2)"


def test_a_watch_taking_over_an_open_alarm_does_not_raise_it_again_and_clears_it() -> None:
    watch = TakerWatch(grace_s=GRACE, started_at=100.0, raised=True)
    assert watch.observe([], 200.0) == []
    assert watch.observe(["d1"], 201.0) == [ClearNoTaker(("d1",))]
    assert watch.observe([], 211.0) == [RaiseNoTaker(10.0)]  # a new episode
