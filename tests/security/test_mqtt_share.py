"""Finding 2 (critical): a device joined the dispatchers' shared subscription and swallowed alerts.

A device login subscribed to ``$share/dispatch/vigie/v1/dev/+/up/+``;
Mosquitto made it a member of the dispatchers' group, handed it every other
message of every device, then dropped them on its read ACL after the senders
had their PUBACK: 3 of 6 alerts lost until the device re-sent, 32 of 40
heartbeats with 4 sessions, and the theft went on from the persistent session
after the thief disconnected.

Mosquitto 2.0.11's ACL file never checks a SUBSCRIBE (``security_default.c``:
subscriptions always pass), so the broker still grants the thief its SUBACK;
what it can no longer do is name the dispatchers' group: that name is a random
secret kept in the store (``deployment_secret``), and the broker routes a share
group by its exact name. The thief's group is its own, and its read ACL gives
it nothing.
"""

from __future__ import annotations

import asyncio

from protocol.topics import UplinkKind, shared_status_filter, shared_uplink_filter
from tests.security.mqtt_stack import Stack, eventually

THIEVES = 4
ALERTS = 6
HEARTBEATS = 40


async def ingested(stack: Stack, kind: str) -> float:
    return (await stack.metrics("vigie_ingested_total", "type")).get(kind, 0)


async def test_a_device_login_cannot_steal_from_the_dispatchers_share_group(stack: Stack) -> None:
    victims = [await stack.add_device(f"btn-victim-{n}") for n in range(3)]
    thieves = []
    for n in range(THIEVES):
        await stack.add_device(f"btn-thief-{n}", connect=False)
        thief = stack.login(
            f"btn-thief-{n}", client_id=f"btn-thief-{n}", clean_start=False, session_expiry=3600
        )
        for public_filter in (shared_uplink_filter(), shared_status_filter()):
            codes = thief.subscribe(public_filter)
            # Mosquitto 2.0.11 grants it (its ACL file does not check subscriptions); refused would do too.
            assert all(not c.is_failure for c in codes) or all(c.is_failure for c in codes)
        thieves.append(thief)
    # Half of them leave; their persistent sessions stay subscribed.
    for thief in thieves[: THIEVES // 2]:
        thief.close()

    # Every alert is stored from its first and only publish: no re-send is needed.
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
    # The thieves still connected got nothing; the sessions left behind got nothing queued either.
    for n, thief in enumerate(thieves[THIEVES // 2 :], start=THIEVES // 2):
        assert thief.messages == [], f"btn-thief-{n} received {len(thief.messages)} message(s)"
        thief.close()
    for n in range(THIEVES // 2):
        back = stack.login(
            f"btn-thief-{n}", client_id=f"btn-thief-{n}", clean_start=False, session_expiry=3600
        )
        # A marker through the thief's own downlink: anything queued for the session arrives before it.
        back.subscribe(f"vigie/v1/dev/btn-thief-{n}/down")
        stack.system.dispatcher.ingest.send_downlink(f"btn-thief-{n}", "received", "marker")
        back.wait_for(lambda m: any(x.topic.endswith("/down") for x in m))
        assert [m.topic for m in back.messages] == [f"vigie/v1/dev/btn-thief-{n}/down"]
        back.close()
    assert (await stack.rejected()) == {}
