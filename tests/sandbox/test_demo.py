"""``make demo`` keeps working: one full alert cycle through every real part."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_one_alert_to_acknowledgement(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox.demo",
            "--once",
            "--http-port",
            "0",
            "--workdir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "SMS to +33639980101" in out and "Dr Claire Fabre" in out
    assert "one short vibration" in out and "three pulses" in out
    assert "/console/" in out and "login 'operateur'" in out
