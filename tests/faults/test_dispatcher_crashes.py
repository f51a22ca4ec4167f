"""The dispatcher process killed (-9) at random, and between persist and notify."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter

import pytest

from bench.cluster import device_ids, read_db
from dispatcher.alerting.responder_links import hash_token
from tests.faults.conftest import MakeCluster, provider_log
from tests.faults.harness import (
    ResendingFleet,
    all_first_tier_sent,
    assert_exactly_once,
    first_tier_counts,
    notification_statuses,
    persisted,
    provider_requests,
    random_moments,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
RESPONDER_LINK = re.compile(r"/r/([A-Za-z0-9_-]{22})")


def test_kill9_at_random_moments_loses_no_alert_and_sends_nothing_twice(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(devices=50)
    # Every 2 s (real devices: every 10 s): at every 0.5 s, the ~130 alerts pressed while
    # the dispatcher restarts pile up ~10,000 copies at the broker, which a loaded 2-core
    # machine cannot answer within the test's 90 s; that measures the harness, not a loss.
    fleet = ResendingFleet(cluster, resend_s=2.0)
    devices = device_ids("dev", 50)
    flow_s, count = 10.0, 200
    kills = random_moments(seed=20260611, count=3, within_s=flow_s)

    def killer() -> None:
        start = time.monotonic()
        for moment in kills:
            time.sleep(max(0.0, start + moment - time.monotonic()))
            cluster.restart_dispatcher(signal.SIGKILL)

    chaos = threading.Thread(target=killer)
    chaos.start()
    try:
        start = time.monotonic()
        ids = []
        for i in range(count):
            time.sleep(max(0.0, start + i * flow_s / count - time.monotonic()))
            ids.append(fleet.press(devices[i % len(devices)]))
        chaos.join()
        alerts = set(ids)
        assert fleet.wait_received(alerts, 90), f"{len(alerts - fleet.received)} alerts never got 'received'"
    finally:
        chaos.join()
        fleet.close()
    assert persisted(cluster, alerts) == alerts
    # Uncertain sends are looked up at the provider and settled: adopted, or re-sent.
    assert wait_until(all_first_tier_sent(cluster, provider_log(cluster), alerts), 90), Counter(
        notification_statuses(cluster, alerts).values()
    )
    statuses = assert_exactly_once(cluster, provider_log(cluster), alerts)
    assert not statuses["unknown"]


def test_kill9_between_persist_and_notify_sends_each_notification_once_after_restart(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(devices=2)
    fleet = ResendingFleet(cluster)
    try:
        assert cluster.sandbox is not None
        cluster.sandbox.stop()  # the provider refuses connections: nothing can be sent
        alert = fleet.press("dev-00000")
        assert fleet.wait_received({alert}, 20)  # committed and acknowledged
        cluster.dispatcher.stop(signal.SIGKILL)  # type: ignore[union-attr]
    finally:
        fleet.close()
    at_kill = notification_statuses(cluster, {alert})
    assert len(at_kill) == 3 and set(at_kill.values()) <= {"pending", "sending", "retry_wait"}, at_kill
    cluster.start_sandbox()
    cluster.start_dispatcher()
    # A row in flight at the kill is 'unknown': the provider (stopped then) has no record of it,
    # so the reconciliation sends it. Every first-tier notification is sent, each exactly once.
    assert wait_until(all_first_tier_sent(cluster, provider_log(cluster), {alert}), 60)
    assert_exactly_once(cluster, provider_log(cluster), {alert})
    assert set(first_tier_counts(provider_log(cluster), {alert}).values()) == {1}
    # The SMS left from the restarted process, which never saw the token minted with the decision
    # (only its hash is stored): it minted another and committed it before writing the SMS.
    sms = [
        r
        for r in provider_requests(provider_log(cluster))
        if r["kind"] == "message" and r.get("status") == 201
    ]
    links = [RESPONDER_LINK.search(str(r["params"]["Body"])) for r in sms]  # type: ignore[index]
    stored = {h for (h,) in read_db(cluster.db, "SELECT token_hash FROM responder_links")}
    assert sms and all(link is not None and hash_token(link.group(1)) in stored for link in links), links
    assert len(stored) == 2, "the decision's link and the one the restarted process sent"
