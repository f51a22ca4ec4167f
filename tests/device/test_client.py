"""The whole client against a real Mosquitto, with gpiozero mock pins on both sides."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from broker_config.runner import DISPATCHER_USER, DevBroker
from device.client import DeviceClient
from device.watchdog import SystemdNotifier
from protocol.codec import decode_status, decode_uplink
from protocol.messages import Alert, Cancel, Heartbeat
from protocol.topics import parse_topic, status_topic
from tests.device.conftest import DEVICE_ID, DeviceFactory, Dispatcher, RunningDevice, wait_applied
from tests.support.broker import Recorder, mqtt_recorder

UPLINKS = f"vigie/v1/dev/{DEVICE_ID}/up/+"


def uplink(device: RunningDevice, msg: mqtt.MQTTMessage) -> object:
    return decode_uplink(bytes(msg.payload), parse_topic(msg.topic), lambda _d: device.key)


def status_state(msg: mqtt.MQTTMessage) -> str:
    return decode_status(bytes(msg.payload), DEVICE_ID).state


def decode(device: RunningDevice, rec: Recorder, index: int) -> object:
    return uplink(device, rec.messages[index])


def alerts_in(device: RunningDevice, rec: Recorder) -> list[Alert]:
    return [m for i in range(len(rec.messages)) if isinstance(m := decode(device, rec, i), Alert)]


def wait_alerts(device: RunningDevice, rec: Recorder, count: int, timeout: float = 10.0) -> list[Alert]:
    with rec.cond:
        assert rec.cond.wait_for(lambda: len(alerts_in(device, rec)) >= count, timeout), "alert not received"
    return alerts_in(device, rec)


def motor_levels(device: RunningDevice) -> list[bool]:
    return [bool(s.state) for s in device.motor.states]


def test_hold_sends_exactly_one_signed_alert_and_received_pulses_once(
    devices: DeviceFactory, device_broker: DevBroker, dispatcher: Dispatcher
) -> None:
    with mqtt_recorder(device_broker, DISPATCHER_USER, UPLINKS) as rec:
        device = devices.start()
        device.wait_connected()
        device.hold_until_alert()
        (alert,) = wait_alerts(device, rec, 1)
        assert alert.gesture == "hold"
        assert alert.device == DEVICE_ID
        assert alert.location is None  # GNSS disabled: the alert goes without position

        dispatcher.send("received", alert.id, device.key)
        wait_applied(device, 1)
        assert motor_levels(device) == [False, True, False]  # one short pulse
        assert device.client.pending() == []

        # A duplicate "received" (dispatcher retry) must not vibrate again.
        dispatcher.send("received", alert.id, device.key)
        wait_applied(device, 2)
        assert motor_levels(device) == [False, True, False]
        assert {a.id for a in alerts_in(device, rec)} == {alert.id}
        assert device.client.stats().alerts == 1


def test_short_tap_does_nothing(devices: DeviceFactory) -> None:
    device = devices.start(manual_clock=True)
    device.wait_connected()
    device.tap()
    device.tap(length=0.001)  # bounce-length contact
    assert device.client.stats().alerts == 0
    assert device.client.pending() == []


def test_triple_press_raises_a_multi_press_alert(devices: DeviceFactory, device_broker: DevBroker) -> None:
    with mqtt_recorder(device_broker, DISPATCHER_USER, UPLINKS) as rec:
        device = devices.start(manual_clock=True)
        device.wait_connected()
        for _ in range(3):
            device.tap()
        (alert,) = wait_alerts(device, rec, 1)
        assert alert.gesture == "multi_press"


def test_acknowledged_gives_the_distinct_three_pulse_pattern(
    devices: DeviceFactory, device_broker: DevBroker, dispatcher: Dispatcher
) -> None:
    with mqtt_recorder(device_broker, DISPATCHER_USER, UPLINKS) as rec:
        device = devices.start()
        device.wait_connected()
        device.hold_until_alert()
        (alert,) = wait_alerts(device, rec, 1)
        dispatcher.send("received", alert.id, device.key)
        dispatcher.send("acknowledged", alert.id, device.key)
        wait_applied(device, 2)
        assert motor_levels(device) == [False, True, False] + [True, False] * 3


def test_bad_downlinks_are_ignored_and_logged_then_a_good_one_works(
    devices: DeviceFactory, device_broker: DevBroker, dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="device")
    with mqtt_recorder(device_broker, DISPATCHER_USER, UPLINKS) as rec:
        device = devices.start()
        device.wait_connected()
        device.hold_until_alert()
        (alert,) = wait_alerts(device, rec, 1)

        dispatcher.send_raw(DEVICE_ID, b"\xff not json")
        dispatcher.send("acknowledged", alert.id, b"\x00" * 32)  # signed with the wrong key
        dispatcher.send("acknowledged", "someone-elses-alert", device.key)  # valid, but not ours
        assert device.client.wait_for(lambda s: s.downlinks_rejected >= 2 and s.downlinks_ignored >= 1, 5)
        assert motor_levels(device) == [False]
        assert "not_json" in caplog.text and "bad_signature" in caplog.text
        assert "someone-elses-alert n'est pas une alerte récente" in caplog.text
        assert [p.event_id for p in device.client.pending()] == [alert.id]

        dispatcher.send("received", alert.id, device.key)
        wait_applied(device, 1)
        assert motor_levels(device) == [False, True, False]
        assert device.client.pending() == []


def test_alert_pressed_while_broker_is_down_is_delivered_when_it_returns(
    devices: DeviceFactory, device_broker: DevBroker
) -> None:
    device = devices.start()
    device.wait_connected()
    device_broker.stop()
    device.hold_until_alert()
    (queued,) = device.client.pending()
    device_broker.start()
    # A fresh subscriber: the broker restarted, and the device keeps re-sending until "received".
    with mqtt_recorder(device_broker, DISPATCHER_USER, UPLINKS) as rec:
        alerts = wait_alerts(device, rec, 1, timeout=15)
    assert alerts[0].id == queued.event_id
    assert alerts[0].seq == queued.seq


def test_cancel_and_duress_cancel_target_the_latest_alert_with_their_pins(
    devices: DeviceFactory, device_broker: DevBroker, dispatcher: Dispatcher
) -> None:
    with mqtt_recorder(device_broker, DISPATCHER_USER, f"vigie/v1/dev/{DEVICE_ID}/up/cancel") as rec:
        device = devices.start(manual_clock=True)
        device.wait_connected()
        for _ in range(3):
            device.tap()
        assert device.client.wait_for(lambda s: s.alerts == 1, 5)
        alert_id = device.client.pending()[0].event_id

        device.client.request_alert()  # a second alert, then cancel: targets the latest
        assert device.client.wait_for(lambda s: s.alerts == 2, 5)
        latest = device.client.pending()[-1].event_id
        for _ in range(5):
            device.tap()
        rec.wait_for(1)
        cancel = decode(device, rec, 0)
        assert isinstance(cancel, Cancel)
        assert (cancel.alert_id, cancel.pin) == (latest, "1234")

        # Duress: four taps then a hold, against the remaining alert; it looks like any cancel.
        for _ in range(4):
            device.tap()
        device.button.drive_low()
        device.clock.advance(0.25)  # type: ignore[union-attr]
        device.button.drive_high()
        rec.wait_for(2)
        duress = decode(device, rec, 1)
        assert isinstance(duress, Cancel)
        assert (duress.alert_id, duress.pin) == (alert_id, "9999")

        dispatcher.send("cancelled", alert_id, device.key)
        wait_applied(device, 1)
        assert motor_levels(device) == [False, True, False]  # the same feedback for both PINs


def test_unwritable_state_dir_still_publishes_and_logs_critically(
    devices: DeviceFactory, device_broker: DevBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be")  # fails even for root
    config = devices.config_path(state_dir=str(blocker / "state"))
    with (
        caplog.at_level(logging.CRITICAL, logger="device"),
        mqtt_recorder(device_broker, DISPATCHER_USER, UPLINKS) as rec,
    ):
        device = devices.start(config)
        device.wait_connected()
        device.hold_until_alert()
        (alert,) = wait_alerts(device, rec, 1)
    assert "STOCKAGE DURABLE INDISPONIBLE" in caplog.text
    assert f"ALERTE {alert.id} NON ENREGISTRÉE DURABLEMENT" in caplog.text
    assert device.client.stats().storage_failures == 1


def test_database_write_failure_still_publishes(
    devices: DeviceFactory, device_broker: DevBroker, caplog: pytest.LogCaptureFixture
) -> None:
    with mqtt_recorder(device_broker, DISPATCHER_USER, UPLINKS) as rec:
        device = devices.start()
        device.wait_connected()
        assert device.client.outbox is not None
        device.client.outbox.close()  # every further SQLite call now fails, like a dead SD card
        with caplog.at_level(logging.CRITICAL, logger="device"):
            device.hold_until_alert()
            (alert,) = wait_alerts(device, rec, 1)
    assert f"ALERTE {alert.id} NON ENREGISTRÉE DURABLEMENT" in caplog.text


def test_status_is_retained_online_then_offline_and_heartbeats_flow(
    devices: DeviceFactory, device_broker: DevBroker
) -> None:
    with mqtt_recorder(device_broker, DISPATCHER_USER, f"vigie/v1/dev/{DEVICE_ID}/#") as rec:
        device = devices.start()
        device.wait_connected()
        assert device.client.wait_for(lambda s: s.heartbeats >= 1, 5)
        with rec.cond:
            rec.cond.wait_for(lambda: any(m.topic.endswith("/heartbeat") for m in rec.messages), 5)
        heartbeat = next(m for m in rec.messages if m.topic.endswith("/heartbeat"))
        beat = uplink(device, heartbeat)
        assert isinstance(beat, Heartbeat) and beat.battery_pct is None and beat.firmware
        devices.stop(device)
        with rec.cond:
            rec.cond.wait_for(
                lambda: (
                    [status_state(m) for m in rec.messages if m.topic == status_topic(DEVICE_ID)][-1:]
                    == ["offline"]
                ),
                5,
            )
        states = [status_state(m) for m in rec.messages if m.topic == status_topic(DEVICE_ID)]
    assert states == ["online", "offline"]
    with mqtt_recorder(device_broker, DISPATCHER_USER, status_topic(DEVICE_ID)) as late:
        (retained,) = late.wait_for(1)
    assert retained.retain and status_state(retained) == "offline"


def test_restart_resends_a_pending_alert_with_the_same_bytes(
    devices: DeviceFactory, device_broker: DevBroker
) -> None:
    config = devices.config_path()
    device = devices.start(config)
    device.wait_connected()
    device_broker.stop()
    device.hold_until_alert()
    (queued,) = device.client.pending()
    devices.stop(device)
    device_broker.start()
    with mqtt_recorder(device_broker, DISPATCHER_USER, UPLINKS) as rec:
        again = devices.start(config)
        wait_alerts(again, rec, 1, timeout=10)
        first_alert = next(m for m in rec.messages if m.topic.endswith("/alert"))
        assert bytes(first_alert.payload) == queued.payload
    assert isinstance(again.client, DeviceClient)


class _Turns:
    """The watchdog's clock, counting the logic thread's turns (it pings on every turn)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> float:
        self.count += 1
        return time.monotonic()


def test_out_of_reach_of_the_broker_with_a_heartbeat_due_the_device_waits_instead_of_spinning(
    devices: DeviceFactory, device_broker: DevBroker
) -> None:
    """A bracelet in a basement or out in the countryside: its heartbeat falls due while no
    broker can be reached. The logic thread must sleep until the link comes back, not turn
    in a loop that keeps a core busy and drains the battery before her next alert."""
    turns = _Turns()
    watched = SystemdNotifier(env={"WATCHDOG_USEC": "60000000"}, clock=turns)  # a ping per turn
    device = devices.start(devices.config_path(heartbeat_interval_s=1), systemd=watched)
    device.wait_connected()
    assert device.client.wait_for(lambda s: s.heartbeats >= 1, 5)
    device_broker.stop()
    deadline = time.monotonic() + 10
    while device.client.link.is_connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not device.client.link.is_connected

    before = turns.count
    time.sleep(3)  # the window measured: the heartbeat falls due 1 s into it
    # Waking for its timers (at most every second, the re-send every 0.5 s) is a few turns.
    assert turns.count - before < 60

    device_broker.start()
    assert device.client.wait_for(lambda s: s.connects >= 2, 15)
    assert device.client.wait_for(lambda s: s.heartbeats >= 2, 5)  # and it says hello again
