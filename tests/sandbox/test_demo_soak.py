"""Soak test of ``make demo``: its own entry point for three minutes, pressed every few seconds.

The demo runs as ``make demo`` runs it (people who answer or not, heartbeats,
the console), with a short press interval and short tiers so that three
minutes hold dozens of alerts and every path. A person's keyboard device
(``make demo-device``: ``vigie-device --simulate``) presses once too. The
verdict comes from the dispatcher's own store and the logs, after the demo
stopped by itself.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dispatcher.alerting.escalation import EscalationState
from dispatcher.store.sqlite import SqliteStore

SOAK_S = 185.0
VIGIE_DEVICE = Path(sys.executable).with_name("vigie-device")
pytestmark = pytest.mark.timeout(SOAK_S + 150)


class _Lines:
    """Collects a process's output in a thread; lets the test wait for a line."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: any(text in line for line in self.lines), timeout):
                tail = "".join(self.lines)[-3000:]
                raise TimeoutError(f"no line with {text!r} within {timeout} s:\n{tail}")

    @property
    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)


def _start_demo(workdir: Path) -> tuple[subprocess.Popen[str], _Lines]:
    args = ["--http-port", "0", "--broker-port", "0", "--interval", "4", "--ack-timeout", "6"]
    args += ["--duration", str(SOAK_S), "--seed", "12", "--workdir", str(workdir)]
    demo = subprocess.Popen(
        [sys.executable, "-m", "sandbox.demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return demo, _Lines(demo.stdout)


def _press_by_hand(config: Path) -> tuple[subprocess.Popen[str], _Lines]:
    """``make demo-device``, with a key typed once it is connected."""
    device = subprocess.Popen(
        [str(VIGIE_DEVICE), "--simulate", "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = _Lines(device.stdout)
    lines.wait_for("en marche", 30)
    assert device.stdin is not None
    device.stdin.write("a\n")
    device.stdin.flush()
    return device, lines


async def _verdict(db: Path) -> tuple[dict[str, int], list[str], list[dict[str, object]]]:
    """Outcome counts, alerts stuck (neither final nor escalating), offline flags raised."""
    store = await SqliteStore.open(db)
    try:
        counts = {"acknowledged": 0, "escalated": 0, "exhausted": 0, "escalating": 0, "by_hand": 0}
        stuck: list[str] = []
        for record in await store.list_alerts(limit=10_000):
            counts["by_hand"] += record.device_id == "btn-demo-clavier"
            state = EscalationState.from_json(record.escalation) if record.escalation else None
            notified = await store.notifications_for(record.id)
            if state is None or not notified:
                stuck.append(f"{record.id} ({record.state}, {len(notified)} notifications)")
                continue
            counts["escalated"] += state.tier > 0 or state.round > 0
            if state.acked_by is not None or state.terminal:
                counts["acknowledged"] += 1
            elif state.exhausted:
                counts["exhausted"] += 1
            elif state.escalating:
                counts["escalating"] += 1
            else:
                stuck.append(f"{record.id} ({record.state})")
        offline = [e for e in await store.operator_events(limit=1000) if e.get("kind") == "offline"]
        return counts, stuck, offline
    finally:
        await store.close()


def test_demo_soak_three_minutes(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    started = time.monotonic()
    demo, out = _start_demo(workdir)
    device = None
    try:
        out.wait_for("Ctrl-C pour arrêter", 60)
        device, device_out = _press_by_hand(workdir / "appareil" / "device.toml")
        # The keyboard press reached the dispatcher: she feels that it was received.
        device_out.wait_for("retour ressenti : alerte reçue [received]", 30)
        assert demo.wait(SOAK_S + 90) == 0, out.text[-3000:]
    finally:
        if device is not None:
            device.terminate()
            device.wait(15)
        if demo.poll() is None:
            demo.kill()
    ran = time.monotonic() - started
    log = out.text
    assert ran >= 180, f"the demo stopped after {ran:.0f} s"
    assert "Traceback" not in log and "CRITIQUE" not in log, log[-3000:]
    assert "Traceback" not in device_out.text, device_out.text[-3000:]

    counts, stuck, offline = asyncio.run(_verdict(workdir / "vigie.db"))
    print(f"soak: {ran:.0f} s, {counts}")
    assert not stuck, stuck
    assert not offline, offline  # both simulated devices and the keyboard one heartbeat
    assert counts["by_hand"] == 1
    total = counts["acknowledged"] + counts["exhausted"] + counts["escalating"]
    assert total >= 40  # one press every 4 s
    # Every path of the demo showed: taken, escalated, exhausted.
    assert counts["acknowledged"] > 0 and counts["escalated"] > 0 and counts["exhausted"] > 0, counts
    assert "alertes simulées" in log  # stopped cleanly, summary printed
