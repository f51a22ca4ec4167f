"""``make demo`` keeps working: one full alert cycle, a busy port, and (in test_demo_soak) minutes of it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker_config.runner import free_port


def _demo(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run the demo; if it outlives ``timeout``, fail with every thread's stack (SIGUSR1)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the demo still ran after {timeout} s:\n{out[-3000:]}\n{err[-6000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_demo_runs_one_alert_to_acknowledgement(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = _demo("--once", "--http-port", "0", "--broker-port", "0", "--workdir", str(workdir), timeout=100)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "SMS à +33639980101" in out and "Dr Claire Fabre" in out
    assert "une vibration courte" in out and "trois impulsions" in out
    assert "prise en charge par Chef de poste" in out
    assert "/console/" in out
    for login in ("operateur", "admin", "praticienne"):
        assert f"identifiant {login} / mot de passe " in out
    assert "make demo-device" in out
    assert (workdir / "appareil" / "device.toml").is_file()
    assert "Traceback" not in result.stderr


def test_busy_port_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _demo(
            "--http-port", str(port), "--broker-port", str(free_port()), "--workdir", str(tmp_path / "d"),
            timeout=30,
        )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"le port {port} est déjà utilisé (HTTP_PORT)" in lines[0]
    assert "make demo HTTP_PORT=" in lines[0]
    assert not (tmp_path / "d").exists()  # refused before touching anything
