"""The pure core of device health: merging instances' observations, deciding flags once."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.fleet.devicehealth import (
    DeviceHealth,
    HealthChange,
    Monitored,
    Watch,
    evaluate,
    is_offline,
    merge,
)

# An observation: (time, kind, battery): a heartbeat, or a status message.
observations = st.lists(
    st.tuples(
        st.integers(0, 10_000).map(float),
        st.sampled_from(["heartbeat", "online", "offline"]),
        st.integers(0, 100),
    ),
    max_size=30,
    unique_by=lambda o: o[0],
).map(sorted)


def observe(h: DeviceHealth, obs: tuple[float, str, int]) -> None:
    at, kind, battery = obs
    if kind == "heartbeat":
        h.heard(at, int(at), battery_pct=battery)  # a device numbers its heartbeats in time order
    else:
        h.set_status(kind, at)


def one_instance_view(obs: list[tuple[float, str, int]]) -> DeviceHealth:
    h = DeviceHealth("btn-1")
    for o in obs:
        observe(h, o)
    return h


@settings(max_examples=300)
@given(
    obs=observations,
    owners=st.lists(st.integers(0, 2), min_size=30, max_size=30),
    order=st.permutations([0, 1, 2]),
)
def test_merging_instances_views_equals_one_instance_seeing_everything(
    obs: list[tuple[float, str, int]], owners: list[int], order: list[int]
) -> None:
    """Whichever instance received what, merged in any order, gives the same health."""
    views = [DeviceHealth("btn-1") for _ in range(3)]
    for o, owner in zip(obs, owners, strict=False):
        observe(views[owner], o)
    merged = DeviceHealth("btn-1")
    for i in order:
        merge(merged, views[i])
        merge(merged, views[i])  # idempotent: a snapshot flushed twice
    truth = one_instance_view(obs)
    assert (merged.last_seen, merged.status, merged.status_at) == (
        truth.last_seen,
        truth.status,
        truth.status_at,
    )
    if not any(kind == "online" for _, kind, _ in obs):  # readings ride with the latest heartbeat
        assert merged.battery_pct == truth.battery_pct


@settings(max_examples=300)
@given(obs=observations, now=st.integers(0, 12_000).map(float), interval=st.sampled_from([5.0, 30.0, 300.0]))
def test_flags_are_raised_once_and_say_the_truth(
    obs: list[tuple[float, str, int]], now: float, interval: float
) -> None:
    h = one_instance_view(obs)
    health = {"btn-1": h}
    devices = [Monitored("btn-1", "Bouton accueil", interval)]
    kwargs = {"now": now, "watching_since": 0.0, "missed_intervals": 2.0, "low_battery_pct": 20}
    first = evaluate(devices, health, **kwargs)  # type: ignore[arg-type]
    assert evaluate(devices, health, **kwargs) == []  # type: ignore[arg-type]
    expected_offline = is_offline(copy.copy(h), interval, missed=2.0, now=now, watching_since=0.0)
    assert ("offline" in h.flags) == expected_offline
    assert ("low_battery" in h.flags) == (h.battery_pct is not None and h.battery_pct < 20)
    assert all(c.raised for c in first)  # from no flags, only raises
    assert all("hors ligne" in c.message or "batterie faible" in c.message for c in first)


def test_a_heartbeat_after_the_last_will_brings_the_device_back() -> None:
    h = DeviceHealth("btn-1")
    h.heard(100.0, 1, battery_pct=80)
    h.set_status("offline", 110.0)
    assert is_offline(h, 30.0, missed=2.0, now=111.0, watching_since=0.0)
    late_will = DeviceHealth("btn-1")
    late_will.set_status("offline", 105.0)  # another instance, flushed late: older than the heartbeat below
    h.heard(120.0, 2, battery_pct=79)
    merge(h, late_will)
    assert not is_offline(h, 30.0, missed=2.0, now=121.0, watching_since=0.0)


def test_the_message_names_the_device_without_empty_brackets() -> None:
    health = {"btn-1": DeviceHealth("btn-1"), "btn-2": DeviceHealth("btn-2")}
    devices = [Monitored("btn-1", "", 30.0), Monitored("btn-2", "Bouton accueil", 30.0)]
    changes = evaluate(
        devices, health, now=100.0, watching_since=0.0, missed_intervals=2.0, low_battery_pct=20
    )
    assert [c.message for c in changes] == [
        "balise btn-1 hors ligne",
        "balise btn-2 (Bouton accueil) hors ligne",
    ]


def test_a_replayed_heartbeat_changes_nothing_even_merged_from_another_instance() -> None:
    original = DeviceHealth("btn-1")
    assert original.heard(100.0, 7, battery_pct=80)
    assert not original.heard(400.0, 7, battery_pct=3)  # the same bytes again, later
    assert not original.heard(400.0, 6, battery_pct=3)  # an older one
    assert (original.last_seen, original.battery_pct) == (100.0, 80)
    other = DeviceHealth("btn-1")  # the instance the replay was sent to never saw seq 7
    assert other.heard(400.0, 7, battery_pct=3)
    merge(original, other)
    assert (original.last_seen, original.hb_seq, original.battery_pct) == (100.0, 7, 80)


# A pass's events: (time, device index, kind) with kind a heartbeat, a status, or nothing (a pass).
steps = st.lists(
    st.tuples(
        st.floats(0.0, 40.0),
        st.integers(0, 3),
        st.sampled_from(["heartbeat", "online", "offline", "low", "pass"]),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(steps=steps)
def test_the_watch_finds_every_change_a_full_scan_finds(steps: list[tuple[float, int, str]]) -> None:
    """Driven by deadlines, touches and heartbeats (which touch only a device with a flag to
    change), the leader raises and clears exactly what scanning every device at every pass would."""
    devices = [Monitored(f"btn-{i}", "", interval) for i, interval in enumerate((5.0, 5.0, 10.0, 30.0))]
    scanned = {d.device_id: DeviceHealth(d.device_id) for d in devices}
    watched = copy.deepcopy(scanned)
    watch = Watch(missed_intervals=2.0, low_battery_pct=20)
    watch.watch(devices)
    kwargs = {"watching_since": 0.0, "missed_intervals": 2.0, "low_battery_pct": 20}
    now = 0.0
    for seq, (advance, index, kind) in enumerate(steps):
        now += advance
        device_id = devices[index].device_id
        for health in (scanned, watched):
            h = health[device_id]
            if kind in ("heartbeat", "low"):
                h.heard(now, seq, battery_pct=10 if kind == "low" else 90)
            elif kind in ("online", "offline"):
                h.set_status(kind, now)
        if kind in ("heartbeat", "low"):
            watch.heard(device_id, watched[device_id])
        elif kind != "pass":
            watch.touch(device_id)
        expected = evaluate(devices, scanned, now=now, **kwargs)  # type: ignore[arg-type]
        found = watch.due(watched, now=now, watching_since=0.0)
        assert sorted(found, key=_order) == sorted(expected, key=_order)
        assert {d: h.flags for d, h in watched.items()} == {d: h.flags for d, h in scanned.items()}
        assert watch.flagged == {d for d, h in watched.items() if h.flags}


def _order(change: HealthChange) -> tuple[str, str]:
    return change.device_id, change.flag


# Steps that also edit the directory (an interval changed, a device removed or added back) and
# hand the lead over (a full evaluation taken in slices of one device).
edits = st.lists(
    st.tuples(
        st.floats(0.0, 40.0),
        st.integers(0, 3),
        st.sampled_from(["heartbeat", "offline", "low", "pass", "interval", "remove", "add", "leader"]),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(steps=edits)
def test_directory_edits_and_a_sliced_full_evaluation_find_what_a_full_scan_finds(
    steps: list[tuple[float, int, str]],
) -> None:
    """A directory edit makes only the devices it changed due (given the whole directory or only
    its changes), and a new leader's full evaluation is taken a device at a time; the flags are
    still exactly those of a full scan at every pass (a device whose interval was shortened is
    flagged at its new deadline, not its old one)."""
    intervals = {f"btn-{i}": interval for i, interval in enumerate((5.0, 5.0, 10.0, 3600.0))}
    present = set(intervals)
    scanned = {d: DeviceHealth(d) for d in intervals}
    watched = copy.deepcopy(scanned)
    watch = Watch(missed_intervals=2.0, low_battery_pct=20)

    def directory() -> list[Monitored]:
        return [Monitored(d, f"Bouton {d}", intervals[d]) for d in sorted(present)]

    assert sorted(watch.watch(directory())) == sorted(intervals)
    kwargs = {"watching_since": 0.0, "missed_intervals": 2.0, "low_battery_pct": 20}
    now = 0.0
    for seq, (advance, index, kind) in enumerate(steps):
        now += advance
        device_id = f"btn-{index}"
        if kind in ("interval", "remove", "add"):
            if kind == "interval":
                intervals[device_id] = 5.0 if intervals[device_id] > 5.0 else 3600.0
            (present.discard if kind == "remove" else present.add)(device_id)
            if seq % 2:  # the whole directory, as after a full read
                watch.watch(directory())
            else:  # only what the edit changed, as after a read of the change log
                changed = {d.device_id: d for d in directory()}.get(device_id)
                watch.watch_changes({device_id: changed})
        elif kind == "leader":
            watch.evaluate_all()
        elif kind != "pass":
            for health in (scanned, watched):
                h = health[device_id]
                if kind == "offline":
                    h.set_status("offline", now)
                else:
                    h.heard(now, seq, battery_pct=10 if kind == "low" else 90)
            if kind == "offline":
                watch.touch(device_id)
            else:
                watch.heard(device_id, watched[device_id])
        expected = evaluate(directory(), scanned, now=now, **kwargs)  # type: ignore[arg-type]
        found = watch.due(watched, now=now, watching_since=0.0, limit=1)
        while watch.backlog:
            found += watch.due(watched, now=now, watching_since=0.0, limit=1)
        assert sorted(found, key=_order) == sorted(expected, key=_order)
        assert {d: h.flags for d, h in watched.items()} == {d: h.flags for d, h in scanned.items()}
        assert watch.flagged == {d for d in present if watched[d].flags}


def test_a_directory_edit_evaluates_only_the_devices_it_changed() -> None:
    """At 100,000 devices every edit (a visit starting, a device added) reloads the directory:
    the next pass must not evaluate the whole fleet again."""
    devices = [Monitored(f"btn-{i}", "", 30.0) for i in range(1_000)]
    health = {d.device_id: DeviceHealth(d.device_id) for d in devices}
    watch = Watch(missed_intervals=2.0, low_battery_pct=20)
    watch.watch(devices)
    watch.due(health, now=1.0, watching_since=0.0)  # the first pass evaluates them all
    added = Monitored("btn-new", "", 30.0)
    health["btn-new"] = DeviceHealth("btn-new")
    changed = devices[7]._replace(heartbeat_interval_s=5.0)
    assert watch.watch([*devices[:7], changed, *devices[8:], added]) == ["btn-new"]
    # A reading changed behind the watch's back (no touch): only a full scan would see it.
    health["btn-3"].battery_pct = 5
    # btn-7 is now silent past its new limit (5 s x 2 + grace, from watching_since), flagged at
    # once; the new device, at 30 s, is not; and nothing else was evaluated again.
    flagged = watch.due(health, now=13.0, watching_since=0.0)
    assert {(c.device_id, c.flag) for c in flagged} == {("btn-7", "offline")}
    watch.evaluate_all()  # a new leader does scan them all
    assert {c.device_id for c in watch.due(health, now=13.0, watching_since=0.0)} == {"btn-3"}
