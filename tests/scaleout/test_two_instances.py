"""Two dispatcher processes, one broker, one PostgreSQL: each alert handled once, survivors take over.

Counted at the provider (the Twilio sandbox records every API request with
the notifier's ``alert/notification`` reference and the status-callback URL,
which names the instance that sent it).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx
import pytest

from protocol.topics import UplinkKind
from sandbox.fleet import SimulatedDevice
from tests.scaleout.conftest import Cluster, sms_webhook
from tests.support.system import METRICS_HEADERS

CHEF_DE_POSTE = "+33639980101"  # commissariat de Montpellier, tier 1: SMS + call

pytestmark = pytest.mark.faults


def send_rounds(devices: list[SimulatedDevice], rounds: int, per_s: float = 0) -> list[str]:
    """Each device presses ``rounds`` times, interleaved (a device never exceeds its rate burst).

    ``per_s`` paces the presses (0: as fast as the broker acknowledges them).
    """
    ids = []
    start = time.monotonic()
    for i, device in enumerate(d for _ in range(rounds) for d in devices):
        if per_s:
            time.sleep(max(0.0, start + i / per_s - time.monotonic()))  # pacing, not waiting on a result
        ids.append(device.alert())
    return ids


def provider_requests(cluster: Cluster) -> list[tuple[str, str, str, int]]:
    """(kind, to, reference, port of the instance that sent it) of every SMS and call."""
    rows = []
    for r in cluster.sandbox.requests:
        if r.kind in ("message", "call") and r.ref:
            port = urlsplit(r.params.get("StatusCallback", "")).port or 0
            rows.append((r.kind, r.to or "", r.ref, port))
    return rows


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str, cluster: Cluster) -> None:
    """Poll the shared database until ``check()`` holds (no in-process event to wait on here)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{what} not reached within {within} s\n{await activity(cluster)}\n{cluster.logs()}"
            )
        await asyncio.sleep(0.2)


async def activity(cluster: Cluster) -> str:
    """What every database session is doing (for failure messages)."""
    rows = await cluster.db.fetch(
        "SELECT pid, application_name, state, wait_event_type, wait_event, left(query, 120) AS q"
        " FROM pg_stat_activity WHERE datname = current_database()"
    )
    return "\n".join(str(dict(r)) for r in rows)


async def count(cluster: Cluster, sql: str, *args: object) -> int:
    return int(await cluster.db.fetchval(sql, *args))


UNSETTLED = "SELECT count(*) FROM notifications WHERE status IN ('pending', 'sending', 'retry_wait')"


@pytest.mark.timeout(420)
async def test_500_alerts_are_each_notified_once_across_two_instances(cluster: Cluster) -> None:
    await cluster.add_devices(100)
    a = await cluster.start_instance("dispatcher-1")
    b = await cluster.start_instance("dispatcher-2")
    cluster.sandbox.configure(sms_webhook_url=sms_webhook(a))

    started = time.monotonic()
    # 25 alerts/s for 20 s: 75 provider requests/s plus their callbacks, on 2 shared cores.
    alert_ids = await asyncio.to_thread(send_rounds, cluster.devices, 5, 25.0)
    assert len(set(alert_ids)) == 500

    def chef_sms_alerts() -> set[str]:
        return {
            ref.split("/")[0]
            for kind, to, ref, _ in provider_requests(cluster)
            if kind == "message" and to == CHEF_DE_POSTE
        }

    await cluster.sandbox.wait_for(lambda: len(chef_sms_alerts()) >= 500, within=240)
    first_sms_s = time.monotonic() - started

    async def settled() -> bool:
        return await count(cluster, UNSETTLED) == 0

    await until(settled, 120, "every notification answered by the provider", cluster)

    assert await count(cluster, "SELECT count(*) FROM alerts") == 500
    assert chef_sms_alerts() == set(alert_ids)
    requests = provider_requests(cluster)
    per_ref = Counter(ref for _, _, ref, _ in requests)
    assert max(per_ref.values()) == 1, f"sent twice: {[r for r, n in per_ref.items() if n > 1][:5]}"
    chef_sms = Counter(
        ref.split("/")[0] for kind, to, ref, _ in requests if kind == "message" and to == CHEF_DE_POSTE
    )
    assert set(chef_sms.values()) == {1}  # exactly one first-tier SMS per contact per alert
    rows = await cluster.db.fetch("SELECT id, alert_id FROM notifications")
    assert {f"{r['alert_id']}/{r['id']}" for r in rows} == set(per_ref)  # every row sent, nothing else
    by_instance = Counter(port for *_, port in requests)
    assert set(by_instance) == {a.http_port, b.http_port}, by_instance  # both instances did work
    print(f"500 alerts: first SMS for all after {first_sms_s:.1f} s; per instance {dict(by_instance)}")


@pytest.mark.timeout(300)
async def test_killed_instance_timers_are_taken_over_after_the_lease(fast_cluster: Cluster) -> None:
    """Instance 1 dies (SIGKILL) holding the leases of every due timer; instance 2 escalates them all.

    Staging, deterministic: a transaction of the test row-locks the alerts so
    that instance 1, having claimed the due timers, blocks on its first
    escalation write; instance 2 is frozen (SIGSTOP) meanwhile so that it
    claims nothing. Instance 1 is killed there; instance 2 resumes, escalates
    the timers nobody held at once and the dead one's after its lease.
    """
    cluster = fast_cluster
    await cluster.add_devices(10)
    a = await cluster.start_instance("dispatcher-1")
    b = await cluster.start_instance("dispatcher-2")
    cluster.sandbox.configure(sms_webhook_url=sms_webhook(a))
    alert_ids = await asyncio.to_thread(send_rounds, cluster.devices, 2)

    async def tier1_settled() -> bool:
        stored = await count(cluster, "SELECT count(*) FROM alerts WHERE escalation IS NOT NULL")
        return stored == len(alert_ids) and await count(cluster, UNSETTLED) == 0

    await until(tier1_settled, 10, "first tier sent for every alert", cluster)
    assert await count(cluster, "SELECT count(*) FROM timers WHERE lease_owner IS NOT NULL") == 0

    lock = cluster.db.transaction()
    await lock.start()
    await cluster.db.execute("SELECT 1 FROM alerts FOR UPDATE")
    b.kill(signal.SIGSTOP)
    try:

        async def leased_by_1() -> bool:
            return await count(cluster, "SELECT count(*) FROM timers WHERE lease_owner='dispatcher-1'") > 0

        await until(leased_by_1, 30, "instance 1 leasing due timers", cluster)
        # Instance 1 is now stuck on its first escalation write, holding these leases.
        leases = await cluster.db.fetch(
            "SELECT alert_id, lease_until FROM timers WHERE lease_owner='dispatcher-1'"
        )
        a.kill(signal.SIGKILL)
    finally:
        b.kill(signal.SIGCONT)
        await lock.rollback()
    held = {r["alert_id"] for r in leases}
    lease_until = min(r["lease_until"] for r in leases)

    async def tier2_everywhere() -> bool:
        sent = await count(
            cluster,
            "SELECT count(DISTINCT alert_id) FROM notifications"
            " WHERE tier=1 AND purpose='alert' AND provider_sid IS NOT NULL",
        )
        return sent == len(alert_ids)

    await until(tier2_everywhere, 60, "tier 2 sent for every alert by the survivor", cluster)

    tier2 = {
        f"{r['alert_id']}/{r['id']}"
        for r in await cluster.db.fetch(
            "SELECT id, alert_id FROM notifications WHERE tier=1 AND purpose='alert'"
        )
    }
    requests = [r for r in cluster.sandbox.requests if r.kind in ("message", "call") and r.ref]
    per_ref = Counter(r.ref for r in requests)
    assert max(per_ref.values()) == 1  # nothing sent twice, before or after the takeover
    tier2_requests = [r for r in requests if r.ref in tier2]
    assert {urlsplit(r.params["StatusCallback"]).port for r in tier2_requests} == {b.http_port}
    # For the alerts whose timer the dead instance held: nothing before its lease ran out.
    held_requests = [r for r in tier2_requests if (r.ref or "").split("/")[0] in held]
    assert held_requests and min(r.wall_time for r in held_requests) >= lease_until - 0.05

    # After the kill, Mosquitto still counts the dead instance's persistent session
    # in the share group and queues part of the new alerts for it. A real device
    # re-sends an unconfirmed alert (same signed bytes) until 'received': a re-send
    # reaches the survivor, and the copies queued for the dead session are
    # de-duplicated by alert id once it restarts.
    late = [signed_alert(d) for d in cluster.devices[:6]]
    for device, (_, payload) in zip(cluster.devices, late, strict=False):
        await asyncio.to_thread(device.publish_raw, UplinkKind.ALERT, payload)
    late_ids = [alert_id for alert_id, _ in late]

    async def late_stored() -> bool:
        stored = await count(cluster, "SELECT count(*) FROM alerts WHERE id = ANY($1::text[])", late_ids)
        return stored == len(late_ids)

    resends = 0
    deadline = time.monotonic() + 60
    while not await late_stored():
        assert time.monotonic() < deadline, (
            f"late alerts not stored after {resends} re-sends\n{cluster.logs()}"
        )
        stored = {
            r["id"]
            for r in await cluster.db.fetch("SELECT id FROM alerts WHERE id = ANY($1::text[])", late_ids)
        }
        for device, (alert_id, payload) in zip(cluster.devices, late, strict=False):
            if alert_id not in stored:
                await asyncio.to_thread(device.publish_raw, UplinkKind.ALERT, payload)
                resends += 1
        await asyncio.sleep(1.0)  # the device client's re-send period, shortened
    print(f"late alerts stored by the survivor after {resends} device re-send(s)")

    # Instance 1 comes back (systemd Restart=always): it drains what its session
    # queued meanwhile; those are duplicates, acknowledged without a second alert.
    cluster.instances.remove(a)
    again = await cluster.start_instance("dispatcher-1")
    if resends:  # some copies were queued for the dead session: the restarted one drains them

        async def drained() -> bool:
            async with httpx.AsyncClient() as http:
                text = (await http.get(again.url + "/metrics", headers=METRICS_HEADERS)).text
            return any(
                line.startswith("vigie_duplicates_total ") and float(line.split()[1]) > 0
                for line in text.splitlines()
            )

        await until(drained, 30, "restarted instance draining its queued copies", cluster)
    assert await count(cluster, "SELECT count(*) FROM alerts") == len(alert_ids) + len(late_ids)
    refs = Counter(r.ref for r in cluster.sandbox.requests if r.kind in ("message", "call") and r.ref)
    assert max(refs.values()) == 1


def signed_alert(device: SimulatedDevice) -> tuple[str, bytes]:
    """A signed alert uplink the test can re-send byte for byte, as the device client does."""
    return device.encode(UplinkKind.ALERT, gesture="hold")
