"""Revocation and quarantine at the broker: what the dispatcher's dynamic-security commands really do.

Gaps left after issue 13: ``POST /api/devices/{id}/revoke`` only refused the
device's signatures in the store (a revoked device kept its MQTT session and
could log in, publish and subscribe again), a quarantine's release sent
``enableClient`` even to a revoked device, and the dispatcher never read the
broker's answers, so a refused or unanswered cut was reported as done
("coupée du broker").

Now the revocation is sent to the broker over the dispatcher's own session
(dispatcher/fleet/broker_control.py, commands from dispatcher/fleet/dynsec_commands.py),
the release leaves a revoked device disabled, and every batch's answer is read:
a refusal or a silence raises one operator alarm saying what it means, counted
in ``vigie_broker_command_failures_total``. Against the real broker, dev
(passwords) and prod (mutual TLS, where Mosquitto 2.0.11 asks no plugin at
CONNECT: the revoked device logs in, but the broker refuses all it tries).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from bench.promstats import samples
from dispatcher.domain import DeviceState
from protocol.topics import UplinkKind, downlink_topic, uplink_topic
from sandbox.fleet import SimulatedDevice
from tests.api.conftest import Api, add_users, full_app
from tests.security.mqtt_stack import QUARANTINE_S, Stack, eventually
from tests.security.test_mqtt_flood import Flood, alarms_about, bad_signature_alert, quarantines
from tests.support.system import METRICS_HEADERS

# Enough to be refused more than 200 times within a second at full speed (the burst admits 50).
FLOOD = 2_000


@pytest.fixture
async def admin(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's API session on the stack's running dispatcher (the console's calls)."""
    await add_users(stack.system)
    api = Api(stack.system, full_app(stack.system))
    try:
        yield await api.as_user("admin")
    finally:
        for client in api.clients:
            await client.aclose()


async def failures(stack: Stack) -> dict[str, float]:
    """vigie_broker_command_failures_total, as {"action/reason": count} (zeros left out)."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(stack.system.public_url + "/metrics", headers=METRICS_HEADERS)).text
    return {
        f"{dict(labels)['action']}/{dict(labels)['reason']}": value
        for (name, labels), value in samples(text).items()
        if name == "vigie_broker_command_failures_total" and value
    }


async def cut_off(stack: Stack, device_id: str) -> bool:
    """Its login is refused (dev); or, on the TLS listener, where it logs in, the broker refuses
    what it subscribes to and what it publishes."""
    try:
        device = await asyncio.to_thread(stack.login, device_id)
    except ConnectionRefusedError:
        return True
    if stack.profile == "dev":
        device.close()
        return False
    published = threading.Event()
    outcome: list[bool] = []

    def on_publish(_c: object, _u: object, _mid: object, rc: ReasonCode, _p: object) -> None:
        outcome.append(rc.is_failure)
        published.set()

    device.client.on_publish = on_publish
    try:
        codes = await asyncio.to_thread(device.subscribe, downlink_topic(device_id))
        device.client.publish(uplink_topic(device_id, UplinkKind.HEARTBEAT), b"{}", qos=1)
        # No PUBACK at all: the broker closed the connection instead (also a refusal).
        refused = outcome[0] if await asyncio.to_thread(published.wait, 5) else device.disconnected.is_set()
    finally:
        device.close()
    return bool(codes) and all(c.is_failure for c in codes) and refused


async def still_alerts(device: SimulatedDevice) -> None:
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id, 10.0)


async def test_a_device_revoked_from_the_console_is_cut_off_at_the_broker(
    stack: Stack, admin: httpx.AsyncClient
) -> None:
    await stack.add_device("btn-stolen", connect=False)
    victim = await stack.add_device("btn-calm")
    stolen = await asyncio.to_thread(stack.login, "btn-stolen")  # the thief's open session

    response = await admin.post("/api/devices/btn-stolen/revoke")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "revoked"

    # The broker closes its session at once and refuses it from then on.
    assert await asyncio.to_thread(stolen.disconnected.wait, 10), "the broker kept the revoked device"
    stolen.close()
    assert await cut_off(stack, "btn-stolen")
    # Every other device is untouched, and the broker confirmed: no alarm, nothing counted.
    await still_alerts(victim)
    assert await failures(stack) == {}
    assert await alarms_about(stack, "btn-stolen") == []


async def test_a_quarantine_ending_never_lets_a_revoked_device_back_in(
    short_quarantine: None, stack: Stack, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    await stack.add_device("btn-flood", connect=False)
    victim = await stack.add_device("btn-calm")
    payloads = [bad_signature_alert("btn-flood", n) for n in range(FLOOD)]
    async with Flood(stack, "btn-flood", UplinkKind.ALERT, payloads, None, tmp_path):
        await eventually(lambda: quarantines(stack, "started", 1))
    # Found hostile while it is cut off: the admin revokes it.
    assert (await admin.post("/api/devices/btn-flood/revoke")).status_code == 200

    # Its quarantine ends as usual, but it stays out: no "rétablie" alarm, no enableClient.
    await eventually(lambda: quarantines(stack, "ended", 1), within=QUARANTINE_S + 30)
    assert await cut_off(stack, "btn-flood")
    [started] = await alarms_about(stack, "btn-flood")
    assert "coupée du broker" in started
    assert (await stack.system.store.get_device("btn-flood")).state is DeviceState.REVOKED
    await still_alerts(victim)
    assert await failures(stack) == {}


@pytest.mark.broker_process("retire la balise du greffon avec le compte d'administration du broker")
async def test_a_cut_the_broker_refuses_is_an_alarm_not_a_quarantine(stack: Stack, tmp_path: Path) -> None:
    await stack.add_device("btn-unknown", connect=False)
    # Provisioned without registering it with the broker (the documented fail-open case): the
    # plugin does not know it, and refuses to give it a role or to disable it.
    broker_admin = stack.broker.admin()  # type: ignore[union-attr]  # our own broker (marker above)
    [deleted] = await asyncio.to_thread(
        broker_admin.send, [{"command": "deleteClient", "username": "btn-unknown"}]
    )
    assert "error" not in deleted, deleted
    payloads = [bad_signature_alert("btn-unknown", n) for n in range(FLOOD)]
    async with Flood(stack, "btn-unknown", UplinkKind.ALERT, payloads, None, tmp_path):
        pass

    async def alarmed() -> bool:
        # The failure is counted just before its alarm is stored: wait for both.
        return await failures(stack) == {"cut/refused": 1} and bool(await alarms_about(stack, "btn-unknown"))

    await eventually(alarmed)
    # One alarm, which says the cut was not confirmed and why; never "coupée du broker".
    [alarm] = await alarms_about(stack, "btn-unknown")
    assert alarm.startswith("le broker n'a pas confirmé la coupure de la balise btn-unknown"), alarm
    assert "Client not found" in alarm and "n'est peut-être pas coupée" in alarm
    assert await quarantines(stack, "started", 0)
    operator = await stack.metrics("vigie_operator_alarms_total", "reason")
    assert operator.get("commande broker") == 1 and not operator.get("quarantaine"), operator
    # Indeed not cut: it still logs in and publishes (admission keeps refusing what it floods).
    assert not await cut_off(stack, "btn-unknown")


@pytest.mark.broker_process("suspend le processus du broker")
async def test_a_revocation_the_broker_leaves_unanswered_is_an_alarm_and_a_502(
    stack: Stack, admin: httpx.AsyncClient
) -> None:
    timeout_s = stack.system.dispatcher.settings.mqtt.control_timeout_s  # VIGIE_MQTT__CONTROL_TIMEOUT_S
    await stack.add_device("btn-stolen", connect=False)
    proc = getattr(stack.broker, "proc", None)
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)  # the broker hangs
    try:
        started = time.monotonic()
        response = await admin.post("/api/devices/btn-stolen/revoke")
        waited = time.monotonic() - started
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert response.status_code == 502, response.text
    assert "n'a pas confirmé sa désactivation" in response.json()["detail"]
    assert timeout_s <= waited < timeout_s + 5
    # The store's revocation stands: its signatures are refused whatever the broker does.
    assert (await stack.system.store.get_device("btn-stolen")).state is DeviceState.REVOKED
    assert await failures(stack) == {"revoke/timeout": 1}
    [alarm] = await alarms_about(stack, "btn-stolen")
    assert alarm.startswith("le broker n'a pas confirmé la désactivation au broker de la balise révoquée")
    assert f"pas de réponse en {timeout_s:g} s" in alarm
    # Once the broker runs again, it applies the command it had received: late, but cut off.
    await eventually(lambda: cut_off(stack, "btn-stolen"), within=20)
