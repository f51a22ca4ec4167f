"""Low finding: a loopback monitoring or device login could take the dispatcher's MQTT client id.

Mosquitto closes a session's connection when another client connects with
the same id, and hands the newcomer the session: an alert was lost during such
a takeover. The TLS listener forces the id to the certificate CN; on password
listeners (dev, prod loopback) the dynamic-security plugin now binds each
device and the monitor to its own id (``broker_config/dynsec.py``), so the
broker refuses the CONNECT and the dispatcher keeps its session.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.security.mqtt_stack import MONITOR, Stack

TAKEOVER = "Client {} already connected, closing old connection."


@pytest.mark.broker_process("utilise l'écouteur local à mot de passe du broker et lit son journal")
async def test_no_password_login_can_take_another_client_id(stack: Stack) -> None:
    dispatcher_id = stack.system.dispatcher.settings.mqtt.client_id
    victim = await stack.add_device("btn-victim")
    logins = [(MONITOR, dispatcher_id), (MONITOR, "btn-victim"), (MONITOR, "monitoring-2")]
    if stack.profile == "dev":  # in prod a device only has its certificate, whose CN is its client id
        await stack.add_device("btn-rogue", connect=False)
        logins += [("btn-rogue", dispatcher_id), ("btn-rogue", "btn-victim"), ("btn-rogue", "anything")]
    for username, client_id in logins:
        with pytest.raises(ConnectionRefusedError, match="Not authorized"):
            stack.login(username, client_id=client_id)

    # Their own ids still work, and the dispatcher was never kicked off: the victim's alert is received.
    for username in {u for u, _ in logins}:
        stack.login(username).close()
    alert_id = await asyncio.to_thread(victim.alert)
    await asyncio.to_thread(victim.wait_downlink, "received", alert_id, 15.0)
    log = stack.broker.log_text()
    for client_id in (dispatcher_id, "btn-victim"):
        assert TAKEOVER.format(client_id) not in log
