"""The schedule of device_health writes, and what a new leader may assume of the deferred ones."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.fleet.devicehealth import ARRIVAL_GRACE_S, OFFLINE, DeviceHealth, Monitored, evaluate
from dispatcher.fleet.healthwrites import HealthWrites, takeover_floor

DEFER_S = 60.0
DEVICES = ["btn-0", "btn-1", "btn-2"]

# One step a second: (heartbeats received this second, status message from, leading this pass, write fails)
seconds = st.lists(
    st.tuples(
        st.lists(st.sampled_from(DEVICES), max_size=3, unique=True),
        st.none() | st.sampled_from(DEVICES),
        st.booleans(),
        st.integers(0, 9).map(lambda n: n == 0),
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=300)
@given(steps=seconds)
def test_what_is_heard_is_written_within_its_bound(
    steps: list[tuple[list[str], str | None, bool, bool]],
) -> None:
    """Statuses and a non-leader's heartbeats at the next pass; the leader's from ``defer_s`` after the
    device's latest stored heartbeat (at once if none), never later; a failed write at the next pass;
    nothing ever dropped."""
    writes = HealthWrites(defer_s=DEFER_S)
    unwritten: dict[str, float] = {}  # device -> receipt of its oldest heartbeat not written
    status_due: set[str] = set()
    stored: dict[str, float] = {}  # device -> heard time of its latest heartbeat written
    latest: dict[str, float] = {}
    leading = False
    for second, (heard, status, leading_now, fails) in enumerate(steps):
        now = float(second)
        for device_id in heard:
            writes.heard(device_id, now, leading=leading)
            unwritten.setdefault(device_id, now)
            latest[device_id] = now
            if not leading:
                status_due.add(device_id)  # must go at this pass, like a status
        if status is not None:
            writes.changed(status)
            status_due.add(status)
        stepped_down = leading and not leading_now
        leading = leading_now
        plan = writes.due(now, leading=leading)
        assert status_due <= plan.devices
        assert plan.heartbeats <= plan.devices
        if stepped_down or not leading:
            assert (
                set(unwritten) <= plan.heartbeats
            )  # nothing waits for a pass that is no longer the leader's
        for device_id in plan.heartbeats:
            assert device_id in unwritten  # a heartbeat part is written only when there is one
        if fails:
            writes.failed(plan)
            # (everything handed over is due at the next pass: carried as "must go now")
            status_due = set(plan.devices)
            continue
        writes.written(plan)
        for device_id in plan.heartbeats:
            del unwritten[device_id]
            stored[device_id] = latest[device_id]
        status_due = set()
        for device_id in unwritten:  # what is left waits for the deferral, no longer
            assert leading
            assert device_id in stored and now < stored[device_id] + DEFER_S


# A device heartbeating every `interval` s (with jitter) to the leader, which dies and is replaced.
takeovers = st.fixed_dictionaries(
    {
        "interval": st.sampled_from([5.0, 30.0, 300.0]),
        "beats": st.integers(1, 40),
        "jitter": st.lists(st.floats(0, 0.5), min_size=40, max_size=40),
        "death_after": st.floats(0, 1),  # how far through its heartbeats the old leader dies
        "lease_wait": st.floats(0, 6),
        "lost_in_flight": st.booleans(),
        "stops_at_takeover": st.booleans(),
    }
)


def old_leader_store(beats: list[float], death: float) -> float | None:
    """The last heard time the old leader had written when it died (heartbeats before ``death``)."""
    writes = HealthWrites(defer_s=DEFER_S)
    old = DeviceHealth("btn-0")
    stored: float | None = None
    arrivals = iter([t for t in beats if t < death])
    upcoming = next(arrivals, None)
    t_pass = 1.0
    while t_pass < death:  # passes of 1 s
        while upcoming is not None and upcoming < t_pass:
            old.heard(upcoming, int(upcoming * 1000))
            writes.heard("btn-0", upcoming, leading=True)
            upcoming = next(arrivals, None)
        if writes.due(t_pass, leading=True).heartbeats:
            stored = old.last_seen
        t_pass += 1.0
    return stored


@settings(max_examples=500)
@given(case=takeovers)
def test_a_new_leader_never_flags_a_device_whose_heartbeats_died_unwritten(case: dict[str, object]) -> None:
    """The old leader defers its writes and dies (one more heartbeat may be lost in flight); the other
    instance writes what it receives meanwhile and takes over after the lease: it never flags a device
    that keeps heartbeating, and flags one that stopped at most ``defer_s`` + one interval + the grace
    later than usual."""
    interval = float(case["interval"])  # type: ignore[arg-type]
    jitter: list[float] = case["jitter"]  # type: ignore[assignment]
    beats = [i * interval + jitter[i] for i in range(int(case["beats"]))]  # type: ignore[call-overload]
    death = beats[-1] * float(case["death_after"]) + 0.25  # type: ignore[arg-type]
    takeover = death + float(case["lease_wait"])  # type: ignore[arg-type]
    if case["stops_at_takeover"]:
        beats = [t for t in beats if t < takeover] or beats[:1]
    stored = old_leader_store(beats, death)

    # After the death: the surviving instance receives the rest (but a first one lost in flight),
    # and writes at once what comes before its takeover (it does not lead yet).
    survivor = [t for t in beats if t >= death][1 if case["lost_in_flight"] else 0 :]
    before = [t for t in survivor if t < takeover]
    if before:
        stored = max(stored or before[-1], before[-1])
    new = DeviceHealth("btn-0")
    if stored is not None:
        new.heard(stored, 0)

    loaded = new.silent_since()

    def floors(_device_id: str, interval_s: float) -> float:
        return takeover_floor(loaded, interval_s, takeover=takeover, defer_s=DEFER_S)

    arrivals = iter([t for t in survivor if t >= takeover])
    upcoming = next(arrivals, None)
    flagged_at = None
    now = takeover
    while flagged_at is None and now <= beats[-1] + 3 * interval + DEFER_S + 10:
        while upcoming is not None and upcoming <= now:
            new.heard(upcoming, int(upcoming * 1000))
            upcoming = next(arrivals, None)
        changes = evaluate(
            [Monitored("btn-0", "", interval)], {"btn-0": new}, now=now, watching_since=takeover,
            missed_intervals=2.0, low_battery_pct=0, floors=floors,
        )  # fmt: skip
        if any(c.flag == OFFLINE and c.raised for c in changes):
            flagged_at = now
        now += 1.0

    assert flagged_at is not None  # every device ends up silent
    # Never early: 2 intervals + the grace after the last heartbeat any instance received, even if
    # the old leader never wrote it. (A lost heartbeat is one interval of that: its successor,
    # a device still beating, arrives in time.)
    last = max([t for t in beats if t < death] + survivor, default=takeover)  # (none: from the takeover)
    assert flagged_at > last + 2 * interval + ARRIVAL_GRACE_S
    late = DEFER_S + interval + ARRIVAL_GRACE_S if last < takeover else 0.0
    assert flagged_at <= last + 2 * interval + ARRIVAL_GRACE_S + 1.0 + late  # (+ the 1 s pass)


def test_the_floor_is_the_takeover_for_a_device_never_heard_of() -> None:
    assert takeover_floor(None, 30.0, takeover=1000.0, defer_s=DEFER_S) == 1000.0
    assert takeover_floor(500.0, 30.0, takeover=1000.0, defer_s=DEFER_S) == 500.0 + 60 + 30 + ARRIVAL_GRACE_S
    assert takeover_floor(990.0, 30.0, takeover=1000.0, defer_s=DEFER_S) == 1000.0


def test_a_stored_flag_is_not_cleared_by_the_floor() -> None:
    h = DeviceHealth("btn-0", last_seen=100.0, hb_seq=1, status="online", status_at=100.0, flags={OFFLINE})
    changes = evaluate(
        [Monitored("btn-0", "", 30.0)], {"btn-0": h}, now=1001.0, watching_since=1000.0,
        missed_intervals=2.0, low_battery_pct=0,
        floors=lambda _d, i: takeover_floor(100.0, i, takeover=1000.0, defer_s=DEFER_S),
    )  # fmt: skip
    assert changes == [] and OFFLINE in h.flags
