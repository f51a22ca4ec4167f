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
from dispatcher.alerting.engine import ALARM_PROVIDER_DOWN
from tests.faults.conftest import MakeCluster, provider_log
from tests.faults.harness import ResendingFleet, persisted, provider_requests, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]


def test_provider_down_is_not_a_contact_failure_one_alarm_and_first_tier_first_when_back(
    make_cluster: MakeCluster, fast_directory: Path
) -> None:
    """A 12 s outage with 5 s acknowledgement timers: the timers walk the chain, but no
    unreachable request counts as a failed contact, nothing is written off, operators get
    one alarm, and when the provider answers again the first tier's requests go first."""
    cluster = make_cluster(devices=2, directory=fast_directory)
    assert cluster.sandbox is not None
    fleet = ResendingFleet(cluster)
    try:
        cluster.sandbox.stop()
        alert = fleet.press("dev-00000")
        assert fleet.wait_received({alert}, 20)
        assert wait_until(lambda: any(ALARM_PROVIDER_DOWN in m for m in alarms(cluster)), 20), alarms(cluster)
        # Timers move on (an unanswered tier), the requests wait: no 'failed', nothing given up.
        assert wait_until(lambda: tiers_planned(cluster, alert) >= {0, 1}, 20)
        # Long enough for the first tier's waiting requests to probe by themselves (after
        # 10 s behind the prober), so that some are in their backoff when the provider is back.
        assert wait_until(lambda: min(first_tier_refusals(cluster, alert)) >= 2, 40)
        outage_rows = read_db(cluster.db, "SELECT status FROM notifications WHERE alert_id=?", (alert,))
        assert {s for (s,) in outage_rows} <= {"pending", "sending", "retry_wait"}, outage_rows
        cluster.start_sandbox()  # the provider is back
        assert wait_until(lambda: len(requests_of(cluster, alert)) >= len(outage_rows), 40)
        # On a loaded machine the last first-tier request can still be on its way: wait for it.
        assert wait_until(lambda: first_tier_created(cluster, alert) >= 3, 40), requests_of(cluster, alert)
    finally:
        fleet.close()
    assert persisted(cluster, {alert}) == {alert}
    assert len([m for m in alarms(cluster) if ALARM_PROVIDER_DOWN in m]) == 1  # one alarm per outage
    tier_of = dict(
        read_db(cluster.db, "SELECT id, tier + 10 * round FROM notifications WHERE alert_id=?", (alert,))
    )
    sent_order = [tier_of[int(str(r["ref"]).split("/")[1])] for r in requests_of(cluster, alert)]
    # Pending first-tier requests first; at most one other request (the probe that found
    # the provider back) may precede them.
    first_tier = sent_order.count(0)
    assert first_tier == 3 and sent_order[: first_tier + 1].count(0) == first_tier, sent_order
    rows = read_db(cluster.db, "SELECT status FROM notifications WHERE alert_id=?", (alert,))
    assert not [s for (s,) in rows if s == "failed"], rows  # an outage is not a failed contact
    retried = sum(
        v
        for (name, labels), v in promstats.samples(cluster.metrics()).items()
        if name == "vigie_provider_errors_total" and dict(labels).get("outcome") == "retried"
    )
    assert retried >= 1
    state = read_db(cluster.db, "SELECT state FROM alerts WHERE id=?", (alert,))[0][0]
    assert state == "notifying"  # still open and escalating


def first_tier_created(cluster: Cluster, alert_id: str) -> int:
    """How many of the alert's round-0 tier-0 notifications the provider has created."""
    first = {
        int(i) for (i,) in read_db(
            cluster.db, "SELECT id FROM notifications WHERE alert_id=? AND tier=0 AND round=0", (alert_id,)
        )
    }
    return sum(int(str(r["ref"]).split("/")[1]) in first for r in requests_of(cluster, alert_id))


def first_tier_refusals(cluster: Cluster, alert_id: str) -> list[int]:
    """How many times the provider could not be reached, for each first-tier request."""
    assert cluster.dispatcher is not None
    log = cluster.dispatcher.log_path.read_text()
    sql = "SELECT id FROM notifications WHERE alert_id=? AND tier=0 AND round=0"
    ids = read_db(cluster.db, sql, (alert_id,))
    return [log.count(f"(réf. {alert_id}/{i}) : refusé") for (i,) in ids] or [0]


def alarms(cluster: Cluster) -> list[str]:
    return [str(m) for (m,) in read_db(cluster.db, "SELECT message FROM operator_events WHERE kind='alarm'")]


def tiers_planned(cluster: Cluster, alert_id: str) -> set[int]:
    rows = read_db(cluster.db, "SELECT DISTINCT tier FROM notifications WHERE alert_id=?", (alert_id,))
    return {int(t) for (t,) in rows}


def requests_of(cluster: Cluster, alert_id: str) -> list[dict[str, object]]:
    """The provider's created requests for this alert, in arrival order (across its restarts)."""
    return [
        r
        for r in provider_requests(provider_log(cluster))
        if str(r.get("ref") or "").startswith(alert_id + "/") and r.get("status") == 201
    ]


def critical_logged(cluster: Cluster, count: int = 1) -> bool:
    assert cluster.dispatcher is not None
    return (
        cluster.dispatcher.log_path.read_text().count(
            "CRITIQUE dispatcher.alerting.ingest : BASE INDISPONIBLE"
        )
        >= count
    )


def test_locked_store_leaves_the_alert_unacknowledged_and_recovers(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(devices=2)
    fleet = ResendingFleet(cluster, resend=False)  # no re-send: only the broker can redeliver
    # Taking the lock waits for the dispatcher's write in progress (notification outcomes,
    # health leases): with timeout=0 it failed as "database is locked" under load.
    lock = sqlite3.connect(cluster.db, timeout=30, isolation_level=None)
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
    # Unbuffered: a buffered file keeps what the full disk refused and raises ENOSPC again when
    # closed (whenever the free space is not a multiple of the chunk, e.g. after a migration).
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * (1 << 16))
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
