"""Finding 2 (critical): a device joined the dispatchers' shared subscription and swallowed alerts.

A device login subscribed to ``$share/dispatch/vigie/v1/dev/+/up/+``;
Mosquitto made it a member of the dispatchers' group, handed it every other
message of every device, then dropped them on its read ACL after the senders
had their PUBACK: 3 of 6 alerts lost until the device re-sent, 32 of 40
heartbeats with 4 sessions, and the theft went on from the persistent session
after the thief disconnected.

Mosquitto 2.0.11's ACL file never checks a SUBSCRIBE, so the broker now also
loads its dynamic-security plugin (``broker_config/dynsec.py``): every device
account is a client of it, in a group whose role denies ``$share/#``, and the
broker answers such a SUBSCRIBE with "not authorized" in its SUBACK — for the
dispatchers' real, secret group as for any other. The secret group name
(``deployment_secret``) stays as a second line of defence.
"""

from __future__ import annotations

import asyncio

import pytest

from protocol.topics import UplinkKind, shared_status_filter, shared_uplink_filter
from tests.security.mqtt_stack import Stack, eventually

THIEVES = 4
ALERTS = 6
HEARTBEATS = 40


async def ingested(stack: Stack, kind: str) -> float:
    return (await stack.metrics("vigie_ingested_total", "type")).get(kind, 0)


async def share_filters(stack: Stack) -> list[str]:
    """The dispatchers' real filters (secret group), the public default ones, and any other group."""
    group = await stack.system.store.deployment_secret("mqtt_share_group", "not-the-real-one")
    assert group != "not-the-real-one", "the dispatcher has no share group yet"
    return [
        shared_uplink_filter(group),
        shared_status_filter(group),
        shared_uplink_filter(),
        "$share/anything/#",
    ]


async def test_the_broker_refuses_a_device_login_the_dispatchers_share_group(stack: Stack) -> None:
    victims = [await stack.add_device(f"btn-victim-{n}") for n in range(3)]
    filters = await share_filters(stack)
    thieves = []
    for n in range(THIEVES):
        await stack.add_device(f"btn-thief-{n}", connect=False)
        thief = stack.login(f"btn-thief-{n}", clean_start=False, session_expiry=3600)
        for share in filters:
            codes = thief.subscribe(share)
            assert codes and all(c.is_failure for c in codes), f"{share}: SUBACK {codes}"
        thieves.append(thief)
    # Half of them leave; their persistent sessions would keep any subscription granted.
    for thief in thieves[: THIEVES // 2]:
        thief.close()

    # The dispatcher's own share subscription works: every alert is stored from its first publish.
    for n in range(ALERTS):  # from three devices: each stays under its alert rate limit
        victim = victims[n % len(victims)]
        alert_id = await asyncio.to_thread(victim.alert)
        await asyncio.to_thread(victim.wait_downlink, "received", alert_id, 15.0)
    before = await ingested(stack, "heartbeat")
    for _ in range(HEARTBEATS):
        await asyncio.to_thread(victim.send, UplinkKind.HEARTBEAT, firmware="fw/1", uptime_s=5)

    async def all_heartbeats() -> bool:
        assert await stack.rejected() == {}, "a heartbeat was refused"
        return await ingested(stack, "heartbeat") >= before + HEARTBEATS

    await eventually(all_heartbeats)
    for n, thief in enumerate(thieves[THIEVES // 2 :], start=THIEVES // 2):
        assert thief.messages == [], f"btn-thief-{n} received {len(thief.messages)} message(s)"
        thief.close()
    for n in range(THIEVES // 2):
        back = stack.login(f"btn-thief-{n}", clean_start=False, session_expiry=3600)
        # A marker through the thief's own downlink: anything queued for the session arrives before it.
        back.subscribe(f"vigie/v1/dev/btn-thief-{n}/down")
        stack.system.dispatcher.ingest.send_downlink(f"btn-thief-{n}", "received", "marker")
        back.wait_for(lambda m: any(x.topic.endswith("/down") for x in m))
        assert [m.topic for m in back.messages] == [f"vigie/v1/dev/btn-thief-{n}/down"]
        back.close()
    assert (await stack.rejected()) == {}


@pytest.mark.broker_process("utilise l'écouteur local à mot de passe du broker")
async def test_the_monitoring_login_cannot_join_a_share_group_either(stack: Stack) -> None:
    monitor = stack.login("vigie-monitor")
    for share in await share_filters(stack):
        codes = monitor.subscribe(share)
        assert codes and all(c.is_failure for c in codes), f"{share}: SUBACK {codes}"
    assert not any(c.is_failure for c in monitor.subscribe("$SYS/broker/uptime")), "its own rights remain"
    monitor.close()
