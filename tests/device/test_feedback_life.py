"""What she feels over the whole life of an alert, read back from the mock motor pin.

A real Mosquitto carries every downlink, signed as the dispatcher signs them;
the motor's state history is decoded into rhythms (S = short, L = long), the
table of device/haptics.py and docs/protocol.md.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TypeVar

from broker_config.runner import DISPATCHER_USER, DevBroker
from device.haptics import Pattern
from protocol.codec import decode_uplink
from protocol.messages import Alert, Cancel, Heartbeat, TestAlert
from protocol.topics import parse_topic
from tests.device.conftest import (
    DEVICE_ID,
    READABLE_PULSES,
    DeviceFactory,
    Dispatcher,
    RunningDevice,
    felt_rhythms,
    wait_applied,
)
from tests.support.broker import Recorder, mqtt_recorder

UPLINKS = f"vigie/v1/dev/{DEVICE_ID}/up/+"
T = TypeVar("T")


def decoded(device: RunningDevice, rec: Recorder) -> list[object]:
    return [
        decode_uplink(bytes(m.payload), parse_topic(m.topic), lambda _d: device.key) for m in rec.messages
    ]


def wait_uplink(device: RunningDevice, rec: Recorder, kind: type[T], count: int = 1) -> list[T]:
    def found() -> list[T]:
        return [m for m in decoded(device, rec) if isinstance(m, kind)]

    with rec.cond:
        assert rec.cond.wait_for(lambda: len(found()) >= count, 10), f"no {kind.__name__} uplink"
    return found()


def felt(device: RunningDevice, count: int) -> list[str]:
    """Wait until ``count`` patterns have been played, and return what the motor did."""
    feedback = device.client.feedback
    assert feedback.wait_played(count, 10), feedback.played
    assert feedback.wait_idle(10)
    return felt_rhythms(device.motor)


def test_received_acknowledged_then_resolved_are_three_distinct_patterns(
    devices: DeviceFactory, device_broker: DevBroker, dispatcher: Dispatcher
) -> None:
    with mqtt_recorder(device_broker, DISPATCHER_USER, UPLINKS) as rec:
        device = devices.start(pulses=READABLE_PULSES)
        device.wait_connected()
        device.hold_until_alert()
        (alert,) = wait_uplink(device, rec, Alert)
    dispatcher.send("received", alert.id, device.key)
    assert felt(device, 1) == ["S"]
    dispatcher.send("acknowledged", alert.id, device.key)
    assert felt(device, 2) == ["S", "SSS"]
    dispatcher.send("resolved", alert.id, device.key)  # resolved and false alarm alike
    assert felt(device, 3) == ["S", "SSS", "L"]
    assert device.client.ledger.latest_active_alert() is None
    dispatcher.send("resolved", alert.id, device.key)  # the dispatcher's retry: felt once only
    wait_applied(device, 4)
    assert felt_rhythms(device.motor) == ["S", "SSS", "L"]


def test_refused_cancel_keeps_the_alert_open_and_a_confirmed_one_closes_it(
    devices: DeviceFactory, device_broker: DevBroker, dispatcher: Dispatcher
) -> None:
    with mqtt_recorder(device_broker, DISPATCHER_USER, UPLINKS) as rec:
        device = devices.start(manual_clock=True, pulses=READABLE_PULSES)
        device.wait_connected()
        for _ in range(3):
            device.tap()
        (alert,) = wait_uplink(device, rec, Alert)
        dispatcher.send("received", alert.id, device.key)
        assert felt(device, 1) == ["S"]
        for _ in range(5):
            device.tap()
        (cancel,) = wait_uplink(device, rec, Cancel)
        assert cancel.alert_id == alert.id
        assert device.client.ledger.latest_active_alert() is None  # the device believes it over...

        dispatcher.send("cancel_refused", alert.id, device.key)
        assert felt(device, 2) == ["S", "LL"]
        active = device.client.ledger.latest_active_alert()  # ...until the dispatcher says otherwise
        assert active is not None and active.event_id == alert.id
        assert device.client.pending() == []  # the refused cancel is not re-sent forever
        dispatcher.send("cancel_refused", alert.id, device.key)  # a repeat changes nothing
        wait_applied(device, 3)
        assert felt_rhythms(device.motor) == ["S", "LL"]

        for _ in range(5):  # the cancel gesture works again on the re-opened alert
            device.tap()
        second = wait_uplink(device, rec, Cancel, count=2)[1]
        assert second.alert_id == alert.id
    dispatcher.send("cancelled", alert.id, device.key)  # normal and duress PIN: the same answer
    assert felt(device, 3) == ["S", "LL", "L"]


def test_not_delivered_yet_repeats_until_received(
    devices: DeviceFactory, device_broker: DevBroker, dispatcher: Dispatcher
) -> None:
    config = devices.config_path(feedback="not_delivered_after_s = 0.5\nnot_delivered_repeat_s = 1.0")
    with mqtt_recorder(device_broker, DISPATCHER_USER, UPLINKS) as rec:
        device = devices.start(config, pulses=READABLE_PULSES)
        device.wait_connected()
        device.hold_until_alert()
        (alert,) = wait_uplink(device, rec, Alert)
    # Published, but no "received": the broker's PUBACK is not the dispatcher's word.
    feedback = device.client.feedback
    assert feedback.wait_played(2, 10), feedback.played
    dispatcher.send("received", alert.id, device.key)
    wait_applied(device, 1)
    reminders = feedback.played.count(Pattern.NOT_DELIVERED)
    assert reminders >= 2 and feedback.played[-1] == Pattern.RECEIVED
    # Asserting an absence needs a wait: two repeat periods without a new reminder.
    threading.Event().wait(2.0)
    assert feedback.played.count(Pattern.NOT_DELIVERED) == reminders
    assert felt_rhythms(device.motor) == ["LSL"] * reminders + ["S"]


def test_not_delivered_while_the_broker_is_down(devices: DeviceFactory, device_broker: DevBroker) -> None:
    config = devices.config_path(feedback="not_delivered_after_s = 0.3\nnot_delivered_repeat_s = 5")
    device = devices.start(config, pulses=READABLE_PULSES)
    device.wait_connected()
    device_broker.stop()
    device.hold_until_alert()
    assert felt(device, 1) == ["LSL"]


def test_test_gesture_sends_a_test_whose_received_is_not_an_alerts(
    devices: DeviceFactory, device_broker: DevBroker, dispatcher: Dispatcher
) -> None:
    with mqtt_recorder(device_broker, DISPATCHER_USER, UPLINKS) as rec:
        device = devices.start(manual_clock=True, pulses=READABLE_PULSES)
        device.wait_connected()
        device.tap()
        device.tap()
        assert device.clock is not None
        device.clock.advance(2.0)  # the window of a third tap is over: a test, not an alert
        (test,) = wait_uplink(device, rec, TestAlert)
        assert test.gesture == "multi_press"
        assert not [m for m in decoded(device, rec) if isinstance(m, Alert)]
    dispatcher.send("received", test.id, device.key)
    assert felt(device, 1) == ["SL"]
    assert device.client.stats().tests == 1


def test_battery_from_sysfs_goes_into_heartbeats_and_low_battery_is_felt(
    devices: DeviceFactory, device_broker: DevBroker, tmp_path: Path
) -> None:
    battery = tmp_path / "dev" / "power_supply" / "pisugar"
    battery.mkdir(parents=True)
    (battery / "type").write_text("Battery\n")
    (battery / "capacity").write_text("9\n")
    config = devices.config_path(battery='sysfs_root = "power_supply"\nlow_pct = 10\ninterval_s = 0.2')
    with mqtt_recorder(device_broker, DISPATCHER_USER, f"vigie/v1/dev/{DEVICE_ID}/up/heartbeat") as rec:
        device = devices.start(config, pulses=READABLE_PULSES)
        (beat,) = wait_uplink(device, rec, Heartbeat)
    assert beat.battery_pct == 9
    assert felt(device, 1) == ["SS"]
    assert device.client.feedback.played == [Pattern.LOW_BATTERY]  # once, not at every reading
