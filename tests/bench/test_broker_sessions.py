"""bench.broker_sessions runs on the real production broker (tiny numbers): every figure, nothing lost.

The figures themselves are judged in docs/architecture.md, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from broker_config.pki import CaPaths
from broker_config.tls_runner import TlsBroker, TlsFiles
from tests.broker_config.helpers import make_pki


def run(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.broker_sessions", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def test_sessions_and_heartbeats_are_measured_and_every_heartbeat_delivered() -> None:
    figures = run("--devices", "30", "--rate", "200", "--seconds", "2")
    assert figures["devices"] == 30
    assert figures["heartbeats_sent"] >= 300 and figures["heartbeats_received"] == figures["heartbeats_sent"]
    assert figures["rss_online_mb"] > figures["rss_empty_mb"] > 0
    assert figures["persistence_db_bytes_per_session"] > 0  # the 30 persistent sessions were saved
    assert figures["broker_cpu_pct_per_1000_per_s"] > 0


def test_an_external_broker_gets_the_same_load_and_keeps_no_session(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    ca = CaPaths(pki.ca_dir)
    files = TlsFiles(ca.cert, pki.server_dir / "server.pem", pki.server_dir / "server.key", ca.crl)
    with TlsBroker(tmp_path / "broker", files) as broker:
        url = f"mqtts://localhost:{broker.tls_port}"
        load = ("--devices", "20", "--rate", "100", "--seconds", "2")
        figures = run(*load, "--broker", url, "--ca-dir", str(ca.root))
        log = broker.log_text()
    assert figures["heartbeats_received"] == figures["heartbeats_sent"]
    assert figures["rss_online_mb"] is None and figures["broker_cpu_pct"] is None  # not ours to measure
    last = {line.split("as ")[-1].split(" ")[0]: line for line in log.splitlines() if "New client" in line}
    bench = [line for client, line in last.items() if client.startswith("bench-")]
    # Each device's last login was a clean start: no session left on the broker.
    assert len(bench) == 20 and all(" c1," in line for line in bench)
