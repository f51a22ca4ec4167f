"""A web-only instance (VIGIE_ROLE=web) beside one of role all, on one PostgreSQL.

The web instance serves the console and the provider's webhooks and takes no
alert from the broker; the operators are told when no instance takes alerts
any more, and told again when one does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from dispatcher.fleet.alert_takers import NO_TAKER
from sandbox.people import reply_text
from tests.scaleout.conftest import Cluster, Instance, sms_webhook
from tests.scaleout.test_console_instances import LIVE_S, add_operator, alerts_pushed, console, session_cookie
from tests.scaleout.test_two_instances import CHEF_DE_POSTE, provider_requests, send_rounds
from tests.support.feed import next_message

pytestmark = pytest.mark.faults

GRACE_S = 3
# A killed instance's presence runs out within 10 s, then the grace, then one 2-s pass, on a
# loaded machine: a safety net, not a goal.
ALARM_WITHIN_S = 40.0


async def start_pair(cluster: Cluster) -> tuple[Instance, Instance]:
    """d1 of role all, w1 web-only; both with a short alarm grace."""
    grace = {"VIGIE_NO_ALERT_TAKER_ALARM_S": str(GRACE_S)}
    taker = await cluster.start_instance("d1", **grace)
    web = await cluster.start_instance("w1", VIGIE_ROLE="web", **grace)
    return taker, web


async def system_message(ws: ClientConnection, key: str, within: float) -> dict[str, Any]:
    """The next system message of the feed that carries ``key`` ("alarm" or "cleared")."""

    async def read() -> dict[str, Any]:
        while True:
            message = await next_message(ws)
            if message["type"] == "system" and key in message:
                return message

    return await asyncio.wait_for(read(), within)


async def operator_events(cluster: Cluster, kind: str) -> list[str]:
    rows = await cluster.db.fetch("SELECT message FROM operator_events WHERE kind=$1 ORDER BY id", kind)
    return [str(r["message"]) for r in rows]


def first_tier_senders(cluster: Cluster, alert_ids: set[str]) -> set[int]:
    """The HTTP ports of the instances that sent these alerts' first tier (those that received them)."""
    return {port for _, _, ref, port in provider_requests(cluster) if ref.split("/")[0] in alert_ids}


@pytest.mark.timeout(240)
async def test_a_web_instance_takes_no_alert_yet_shows_and_acknowledges_them(cluster: Cluster) -> None:
    await add_operator(cluster)
    await cluster.add_devices(4)
    taker, web = await start_pair(cluster)
    cluster.sandbox.configure(sms_webhook_url=sms_webhook(web))  # the police's replies go to w1
    cookie = await session_cookie(web)
    async with console(web, cookie) as on_web:
        ids = await asyncio.to_thread(send_rounds, cluster.devices, 3)
        wanted = set(ids)
        assert await alerts_pushed(on_web, wanted) == wanted, cluster.logs()

    def chef_sms(alert_id: str) -> list[str]:
        return [
            r.params.get("Body", "")
            for r in cluster.sandbox.requests
            if r.kind == "message" and r.to == CHEF_DE_POSTE and (r.ref or "").startswith(alert_id)
        ]

    await cluster.sandbox.wait_for(lambda: all(chef_sms(a) for a in wanted), within=LIVE_S)
    # Every alert went to the instance of role all: its first tier left from there.
    assert first_tier_senders(cluster, wanted) == {taker.http_port}, cluster.logs()

    # The chef de poste acknowledges the first alert by SMS: the reply reaches w1, whose session
    # tells the device (a downlink), although the alert was received by d1.
    device = cluster.devices[0]
    first = ids[0]
    await cluster.sandbox.reply(CHEF_DE_POSTE, reply_text(chef_sms(first)[0]))
    await asyncio.to_thread(device.wait_downlinks, "acknowledged", first, 1, LIVE_S)
    assert await operator_events(cluster, "alarm") == []  # d1 took alerts all along


@pytest.mark.timeout(300)
async def test_operators_are_told_when_no_instance_takes_alerts_and_when_one_does_again(
    cluster: Cluster,
) -> None:
    await add_operator(cluster)
    await cluster.add_devices(2)
    taker, web = await start_pair(cluster)
    cookie = await session_cookie(web)
    async with console(web, cookie) as on_web:
        taker.kill()  # SIGKILL: its presence is not given up, it runs out
        alarm = await system_message(on_web, "alarm", ALARM_WITHIN_S)
        assert alarm["topic"] == "alert_takers", alarm
        assert alarm["alarm"] == NO_TAKER
        assert await operator_events(cluster, "alarm") == [NO_TAKER]

        # A press meanwhile waits at the broker, in d1's session, and is not lost.
        pressed = await asyncio.to_thread(cluster.devices[0].alert)
        await cluster.start_instance("d1", VIGIE_NO_ALERT_TAKER_ALARM_S=str(GRACE_S))
        cleared = await system_message(on_web, "cleared", ALARM_WITHIN_S)
        assert cleared["topic"] == "alert_takers" and "d1" in cleared["cleared"]
    await cluster.sandbox.wait_for(
        lambda: any(
            ref.startswith(pressed) for _, to, ref, _ in provider_requests(cluster) if to == CHEF_DE_POSTE
        ),
        within=LIVE_S,
    )
    # One alarm and one end for the episode, however many passes it lasted.
    assert await operator_events(cluster, "alarm") == [NO_TAKER]
    assert len(await operator_events(cluster, "alert_takers")) == 1
