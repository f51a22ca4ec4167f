"""The battery level, from Linux's power-supply class or from a configured command.

Common Raspberry Pi UPS boards (PiSugar, Waveshare UPS HAT, Geekworm X7xx with
their kernel drivers) expose ``/sys/class/power_supply/<name>/capacity`` (0-100);
others ship a tool that prints the level, hence the command. A reading that
cannot be trusted is ``None`` (the heartbeat then says nothing about the
battery), never a guess: a wrong "full" would hide a dying button.

Reading happens on :class:`BatteryMonitor`'s own thread, which only reports to
the client's logic thread: a slow command never delays an alert.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

SYSFS_ROOT = Path("/sys/class/power_supply")
COMMAND_TIMEOUT_S = 5.0
_PERCENT = re.compile(r"^\s*(\d{1,3})(?:\.\d+)?\s*%?\s*$")


def parse_percent(text: str) -> int | None:
    """``"87"``, ``"87%"`` or ``"87.4"`` → 87; anything else (or > 100) → None."""
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    match = _PERCENT.match(first_line)
    if match is None:
        return None
    value = int(match.group(1))
    return value if value <= 100 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def read_sysfs(root: Path = SYSFS_ROOT) -> int | None:
    """The capacity of the first battery under ``root``, or None.

    Supplies whose ``type`` says something else than ``Battery`` (the mains
    adapter, USB) are skipped; a supply without a ``type`` file still counts,
    as some UPS drivers omit it.
    """
    for supply in sorted(root.glob("*/capacity")):
        kind = _read(supply.parent / "type")
        if kind is not None and kind.lower() != "battery":
            continue
        text = _read(supply)
        value = parse_percent(text) if text is not None else None
        if value is not None:
            return value
        log.warning("batterie : capacité illisible dans %s : %r", supply, text)
    return None


def read_command(command: str, timeout_s: float = COMMAND_TIMEOUT_S) -> int | None:
    """Run ``command`` (no shell) and parse the first line of its output as a percentage."""
    try:
        done = subprocess.run(  # the administrator's own configured command, without a shell
            shlex.split(command), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        log.warning("batterie : la commande %r a échoué : %s", command, exc)
        return None
    if done.returncode != 0:
        log.warning("batterie : la commande %r a fini avec le code %d", command, done.returncode)
        return None
    value = parse_percent(done.stdout)
    if value is None:
        log.warning("batterie : la commande %r a affiché %r, pas un pourcentage", command, done.stdout[:40])
    return value


def battery_reader(*, sysfs_root: Path = SYSFS_ROOT, command: str | None = None) -> Callable[[], int | None]:
    """The configured way to read the level: the command if one is set, else sysfs."""
    if command:
        return lambda: read_command(command)
    return lambda: read_sysfs(sysfs_root)


class BatteryMonitor:
    """Reads the battery every ``interval_s`` on its own thread and reports each reading."""

    def __init__(
        self, read: Callable[[], int | None], on_reading: Callable[[int | None], None], *, interval_s: float
    ) -> None:
        self._read = read
        self._on_reading = on_reading
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigie-battery", daemon=True)

    def start(self) -> None:
        """First reading now (before the link starts: the first heartbeat has it), then one per interval."""
        self._report()
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current reading."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=COMMAND_TIMEOUT_S + 1)

    def _report(self) -> None:
        try:
            value = self._read()
        except Exception:  # a broken driver must not take the client down
            log.exception("batterie : échec de la lecture")
            value = None
        self._on_reading(value)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._report()
