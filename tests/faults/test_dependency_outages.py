"""The provider down, the store locked, the disk full: alerts kept, operators told, recovery."""

from __future__ import annotations

import contextlib
import errno
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import promstats
from bench.cluster import Cluster, read_db
from tests.faults.conftest import MakeCluster, provider_log
from tests.faults.harness import ResendingFleet, persisted, provider_requests, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]


def alarms_for(cluster: Cluster, alert_id: str) -> list[str]:
    rows = read_db(
        cluster.db, "SELECT message FROM operator_events WHERE kind='alarm' AND alert_id=?", (alert_id,)
    )
    return [str(m) for (m,) in rows]


def test_provider_down_retries_falls_back_raises_the_alarm_and_loses_nothing(
    make_cluster: MakeCluster, fast_directory: Path
) -> None:
    """10 s of outage instead of 30: the retry budget (3 attempts, ~1.5 s) and the whole
    fallback chain (5 s timers, or at once when a tier is unreachable) are spent within
    ~6 s, so a longer outage only adds waiting, not new states."""
    cluster = make_cluster(devices=2, directory=fast_directory)
    assert cluster.sandbox is not None
    fleet = ResendingFleet(cluster)
    try:
        cluster.sandbox.stop()
        alert = fleet.press("dev-00000")
        assert fleet.wait_received({alert}, 20)
        assert wait_until(lambda: any("escalade" in m for m in alarms_for(cluster, alert)), 30), alarms_for(
            cluster, alert
        )
        cluster.start_sandbox()  # the provider is back
        after = fleet.press("dev-00001")
        assert fleet.wait_received({after}, 20)
        assert wait_until(
            lambda: any(str(r["ref"]).startswith(after) for r in provider_requests(provider_log(cluster))), 20
        )
    finally:
        fleet.close()
    assert persisted(cluster, {alert, after}) == {alert, after}
    rows = read_db(
        cluster.db, "SELECT tier, round, status, attempts FROM notifications WHERE alert_id=?", (alert,)
    )
    assert all(status == "failed" for _, _, status, _ in rows)
    assert {(tier, rnd) for tier, rnd, _, _ in rows} > {(0, 0)}  # fell back past the first tier
    metrics = cluster.metrics()
    retried = sum(
        v
        for (name, labels), v in promstats.samples(metrics).items()
        if name == "vigie_provider_errors_total" and dict(labels).get("outcome") == "retried"
    )
    assert retried >= len(rows)  # every provably failed request was retried before giving up
    state = read_db(cluster.db, "SELECT state FROM alerts WHERE id=?", (alert,))[0][0]
    assert state == "notifying"  # still open: an operator takes over


def critical_logged(cluster: Cluster, count: int = 1) -> bool:
    assert cluster.dispatcher is not None
    return (
        cluster.dispatcher.log_path.read_text().count("CRITICAL dispatcher.ingest: STORE UNAVAILABLE")
        >= count
    )


def test_locked_store_leaves_the_alert_unacknowledged_and_recovers(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(devices=2)
    fleet = ResendingFleet(cluster, resend=False)  # no re-send: only the broker can redeliver
    lock = sqlite3.connect(cluster.db, timeout=0, isolation_level=None)
    try:
        # 1. The store comes back while the dispatcher waits: committed, then acknowledged.
        lock.execute("BEGIN EXCLUSIVE")
        first = fleet.press("dev-00000")
        assert wait_until(lambda: critical_logged(cluster), 30)
        assert first not in fleet.received
        lock.execute("ROLLBACK")
        assert fleet.wait_received({first}, 20)
        # 2. The dispatcher dies while the store is locked: the broker still holds the message.
        lock.execute("BEGIN EXCLUSIVE")
        second = fleet.press("dev-00001")
        assert wait_until(lambda: critical_logged(cluster, 2), 30)
        assert cluster.dispatcher is not None
        cluster.dispatcher.stop(signal.SIGKILL)
        lock.execute("ROLLBACK")
        cluster.start_dispatcher()
        assert fleet.wait_received({second}, 30)  # redelivered by the broker: it was never PUBACKed
    finally:
        with contextlib.suppress(sqlite3.Error):
            lock.execute("ROLLBACK")
        lock.close()
        fleet.close()
    assert persisted(cluster, {first, second}) == {first, second}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (root only); skipped elsewhere (the locked-store test covers the same path)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write until the file system refuses (ENOSPC)."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 16))
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_disk_full_leaves_the_alert_unacknowledged_and_recovers(
    make_cluster: MakeCluster, small_disk: Path
) -> None:
    cluster = make_cluster(devices=2, db_path=small_disk / "vigie.db")
    fleet = ResendingFleet(cluster)  # a real device keeps re-sending meanwhile
    try:
        filler = fill(small_disk)
        alert = fleet.press("dev-00000")
        assert wait_until(lambda: critical_logged(cluster), 30)
        assert alert not in fleet.received
        assert cluster.dispatcher is not None
        assert "disk is full" in cluster.dispatcher.log_path.read_text()
        filler.unlink()
        assert fleet.wait_received({alert}, 30)
    finally:
        fleet.close()
        shutil.rmtree(small_disk / "filler", ignore_errors=True)
    assert persisted(cluster, {alert}) == {alert}
