"""``vigie-device`` as a real process: SIGKILL with an undelivered alert, restart, delivered."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from broker_config.runner import DISPATCHER_USER, DevBroker
from protocol.codec import decode_uplink
from protocol.messages import Alert, TestAlert
from protocol.topics import parse_topic
from tests.device.conftest import DEVICE_ID, write_device_config
from tests.support.broker import mqtt_recorder

STORED = re.compile(r"alerte ([0-9a-f-]{36}) enregistrée \(seq (\d+)")
CONNECTED = "connectée à 127.0.0.1"


class DeviceProcess:
    """``vigie-device --simulate`` with its stderr collected line by line."""

    def __init__(self, config: Path, *options: str) -> None:
        command = [sys.executable, "-c", "from device.cli import main; main()"]
        self.proc = subprocess.Popen(
            [*command, "--simulate", "--config", str(config), "--resend-interval-s", "0.5", *options],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        assert self.proc.stderr is not None
        threading.Thread(target=self._collect, args=(self.proc.stderr,), daemon=True).start()

    def _collect(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_line(self, pattern: str | re.Pattern[str], timeout: float = 15.0) -> re.Match[str]:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        with self._cond:
            found = self._cond.wait_for(lambda: any(regex.search(line) for line in self.lines), timeout)
            assert found, f"no {regex.pattern!r} in:\n{''.join(self.lines)}"
            return next(m for line in self.lines if (m := regex.search(line)))

    def press(self, key: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(key + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def processes() -> Iterator[list[DeviceProcess]]:
    started: list[DeviceProcess] = []
    yield started
    for proc in started:
        proc.terminate()


def test_killed_process_delivers_its_alert_after_restart_with_the_same_id(
    tmp_path: Path, device_broker: DevBroker, processes: list[DeviceProcess]
) -> None:
    config = write_device_config(
        tmp_path / "dev", port=device_broker.port, password=device_broker.accounts[DEVICE_ID]
    )
    first = DeviceProcess(config)
    processes.append(first)
    first.wait_line(CONNECTED)
    device_broker.stop()  # nobody can receive it: the alert only exists in the outbox
    first.press("a")
    stored = first.wait_line(STORED)
    alert_id, seq = stored.group(1), int(stored.group(2))
    first.kill()

    device_broker.start()
    with mqtt_recorder(device_broker, DISPATCHER_USER, f"vigie/v1/dev/{DEVICE_ID}/up/alert") as rec:
        second = DeviceProcess(config)
        processes.append(second)
        (message, *_) = rec.wait_for(1, timeout=20)
    key = bytes.fromhex((config.parent / "hmac.key").read_text().strip())
    alert = decode_uplink(bytes(message.payload), parse_topic(message.topic), lambda _d: key)
    assert isinstance(alert, Alert)
    assert (alert.id, alert.seq, alert.gesture) == (alert_id, seq, "hold")
    assert second.terminate() == 0  # SIGTERM: clean shutdown


def run_once(config: Path) -> subprocess.CompletedProcess[str]:
    """``vigie-device --config`` run to its end (a configuration error ends it at once)."""
    return subprocess.run(
        [sys.executable, "-c", "from device.cli import main; main()", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_malformed_config_exits_with_a_message_naming_the_field(tmp_path: Path) -> None:
    config = write_device_config(tmp_path / "dev", port=1883, extra_gestures="hold_seconds = 2")
    result = run_once(config)
    assert result.returncode == 2
    assert "gestures.hold_seconds: clé inconnue" in result.stderr


def test_duress_gesture_without_duress_pin_refuses_to_start(tmp_path: Path) -> None:
    config = write_device_config(tmp_path / "dev", port=1883, cancel='pin = "1234"')
    result = run_once(config)
    assert result.returncode == 2
    assert "erreur de configuration : cancel.duress_pin: manquant" in result.stderr


def test_simulator_t_key_makes_the_test_gesture_and_a_test_goes_out(
    tmp_path: Path, device_broker: DevBroker, processes: list[DeviceProcess]
) -> None:
    config = write_device_config(
        tmp_path / "dev", port=device_broker.port, password=device_broker.accounts[DEVICE_ID]
    )
    with mqtt_recorder(device_broker, DISPATCHER_USER, f"vigie/v1/dev/{DEVICE_ID}/up/test") as rec:
        device = DeviceProcess(config)
        processes.append(device)
        device.wait_line(CONNECTED)
        device.press("t")  # two real taps on the mock pin, then the window runs out
        (message,) = rec.wait_for(1, timeout=15)
    device.wait_line(re.escape("geste reconnu : test [test]"))
    key = bytes.fromhex((config.parent / "hmac.key").read_text().strip())
    test = decode_uplink(bytes(message.payload), parse_topic(message.topic), lambda _d: key)
    assert isinstance(test, TestAlert) and test.gesture == "multi_press"
