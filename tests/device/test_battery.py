"""Battery level from a fake sysfs power-supply tree and from a real command."""

from __future__ import annotations

import queue
import sys
from pathlib import Path

import pytest

from device.battery import BatteryMonitor, battery_reader, parse_percent, read_command, read_sysfs


def supply(root: Path, name: str, capacity: str | None, kind: str | None = "Battery") -> None:
    folder = root / name
    folder.mkdir(parents=True)
    if capacity is not None:
        (folder / "capacity").write_text(capacity + "\n")
    if kind is not None:
        (folder / "type").write_text(kind + "\n")


def test_reads_the_battery_and_skips_the_mains_adapter(tmp_path: Path) -> None:
    supply(tmp_path, "AC", "100", kind="Mains")
    supply(tmp_path, "pisugar-battery", "37")
    assert read_sysfs(tmp_path) == 37


def test_supply_without_type_file_still_counts(tmp_path: Path) -> None:
    supply(tmp_path, "ups", "64", kind=None)
    assert read_sysfs(tmp_path) == 64


def test_no_battery_or_garbage_is_unknown_never_a_guess(tmp_path: Path) -> None:
    assert read_sysfs(tmp_path) is None
    assert read_sysfs(tmp_path / "missing") is None
    supply(tmp_path, "BAT0", "full")
    supply(tmp_path, "BAT1", "250")
    assert read_sysfs(tmp_path) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("87", 87),
        ("87%\n", 87),
        (" 87.6 ", 87),
        ("0", 0),
        ("100", 100),
        ("101", None),
        ("-3", None),
        ("", None),
        ("battery: 50", None),
        ("42\nextra", 42),
    ],
)
def test_parse_percent(text: str, expected: int | None) -> None:
    assert parse_percent(text) == expected


def test_command_output_is_parsed_and_failures_are_unknown(tmp_path: Path) -> None:
    python = sys.executable
    assert read_command(f"{python} -c 'print(\"42%\")'") == 42
    assert read_command(f"{python} -c 'import sys; print(42); sys.exit(1)'") is None
    assert read_command(f"{python} -c 'print(\"no idea\")'") is None
    assert read_command(str(tmp_path / "no-such-tool")) is None
    assert read_command(f"{python} -c 'import time; time.sleep(5)'", timeout_s=0.2) is None


def test_configured_command_wins_over_sysfs(tmp_path: Path) -> None:
    supply(tmp_path, "BAT0", "90")
    assert battery_reader(sysfs_root=tmp_path)() == 90
    assert battery_reader(sysfs_root=tmp_path, command=f"{sys.executable} -c 'print(12)'")() == 12


def test_monitor_reports_readings_from_its_own_thread(tmp_path: Path) -> None:
    supply(tmp_path, "BAT0", "55")
    readings: queue.Queue[int | None] = queue.Queue()
    monitor = BatteryMonitor(battery_reader(sysfs_root=tmp_path), readings.put, interval_s=0.05)
    monitor.start()
    try:
        assert readings.get(timeout=5) == 55
        (tmp_path / "BAT0" / "capacity").write_text("54\n")
        while (value := readings.get(timeout=5)) == 55:
            pass
        assert value == 54
    finally:
        monitor.stop()
