"""The device a visit's alert is filed under (dispatcher/visits/alert_device.py invariants), as properties."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.domain import Device, DeviceKind, DeviceState
from dispatcher.visits.alert_device import alert_device, is_carried

T0 = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)


def dev(device_id: str, kind: DeviceKind, state: DeviceState = DeviceState.REVOKED) -> Device:
    return Device(id=device_id, kind=kind, state=state, practitioner_id="dr-a")


@st.composite
def hers(draw: st.DrawFn) -> tuple[list[Device], dict[str, datetime]]:
    """Her devices (distinct ids, any kind and state) and when some of them, and others, were heard."""
    ids = draw(st.lists(st.sampled_from([f"d{i}" for i in range(12)]), unique=True, max_size=8))
    devices = [
        dev(i, draw(st.sampled_from(list(DeviceKind))), draw(st.sampled_from(list(DeviceState)))) for i in ids
    ]
    # Few distinct instants, so that ties between heard devices happen.
    instants = st.integers(0, 5).map(lambda m: T0 + timedelta(minutes=m))
    heard = draw(st.dictionaries(st.sampled_from([f"d{i}" for i in range(14)]), instants))
    return devices, heard


def standing(d: Device) -> tuple[bool, bool]:
    return d.state is DeviceState.ACTIVE, is_carried(d)


@given(hers())
def test_one_of_hers_and_none_only_when_she_has_none(case: tuple[list[Device], dict[str, datetime]]) -> None:
    devices, heard = case
    chosen = alert_device(devices, heard)
    assert (chosen is None) == (not devices)
    assert chosen is None or chosen in devices


@given(hers())
def test_an_active_device_whenever_she_has_one(case: tuple[list[Device], dict[str, datetime]]) -> None:
    devices, heard = case
    chosen = alert_device(devices, heard)
    if any(d.state is DeviceState.ACTIVE for d in devices):
        assert chosen is not None and chosen.state is DeviceState.ACTIVE


@given(hers())
def test_carried_before_a_button_of_the_same_standing(case: tuple[list[Device], dict[str, datetime]]) -> None:
    devices, heard = case
    chosen = alert_device(devices, heard)
    if chosen is not None and not is_carried(chosen):
        same = [d for d in devices if d.state is chosen.state]
        assert not any(is_carried(d) for d in same)


@given(hers())
def test_the_latest_heard_among_equals_and_never_heard_last(
    case: tuple[list[Device], dict[str, datetime]],
) -> None:
    devices, heard = case
    chosen = alert_device(devices, heard)
    if chosen is None:
        return
    equals = [d for d in devices if standing(d) == standing(chosen)]
    if chosen.id not in heard:
        assert not any(d.id in heard for d in equals), "a heard device of the same standing was passed over"
    else:
        assert all(heard[d.id] <= heard[chosen.id] for d in equals if d.id in heard)


@given(hers(), st.randoms(use_true_random=False))
def test_deterministic_whatever_the_order_and_the_devices_that_are_not_hers(
    case: tuple[list[Device], dict[str, datetime]], rnd: random.Random
) -> None:
    devices, heard = case
    chosen = alert_device(devices, heard)
    shuffled = list(devices)
    rnd.shuffle(shuffled)
    mine = {d.id for d in devices}
    assert alert_device(shuffled, {i: at for i, at in heard.items() if i in mine}) == chosen
    assert alert_device(iter(devices), heard) == chosen, "any iterable, read once"


def test_her_suspended_bracelet_heard_earlier_beats_her_revoked_button_heard_last() -> None:
    """The end-to-end case of tests/practitioner/test_visit_without_active_device.py, spelled out."""
    button = dev("bouton-fabre", DeviceKind.BUTTON)
    bracelet = dev("bracelet-fabre", DeviceKind.BRACELET)
    pocket = dev("ancienne-poche-fabre", DeviceKind.POCKET)  # replaced before it was ever heard
    heard = {button.id: T0 + timedelta(minutes=5), bracelet.id: T0}
    assert alert_device([button, pocket, bracelet], heard) == bracelet
    assert alert_device([button, pocket, bracelet], {}) == pocket, "times unknown: carried, then the id"
    assert alert_device([button, pocket], heard) == pocket, "carried, even never heard"
    assert alert_device([button], {}) == button, "a button rather than no alert"
    assert alert_device([], heard) is None
