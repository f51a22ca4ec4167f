"""bench.broker_sessions runs on the real production broker (tiny numbers): every figure, nothing lost.

The figures themselves are judged in docs/architecture.md, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys


def test_sessions_and_heartbeats_are_measured_and_every_heartbeat_delivered() -> None:
    args = ["--devices", "30", "--rate", "200", "--seconds", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.broker_sessions", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["devices"] == 30
    assert figures["heartbeats_sent"] >= 300 and figures["heartbeats_received"] == figures["heartbeats_sent"]
    assert figures["rss_online_mb"] > figures["rss_empty_mb"] > 0
    assert figures["persistence_db_bytes_per_session"] > 0  # the 30 persistent sessions were saved
    assert figures["broker_cpu_pct_per_1000_per_s"] > 0
