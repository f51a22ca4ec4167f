"""A copied env file: a second ``vigie serve`` under an instance id already running stops at once.

It stops before it takes anything back (notifications, timers, side texts are
leased in the id's name) or joins the broker, with one line saying why; the
first process goes on taking alerts. A process killed with SIGKILL and started
again under its id waits for its dead run's claim, then starts.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess

import httpx
import pytest

from broker_config.runner import free_port
from tests.scaleout.conftest import VIGIE, Cluster, Instance
from tests.scaleout.test_two_instances import CHEF_DE_POSTE, provider_requests

pytestmark = pytest.mark.faults

CLAIM = {"VIGIE_INSTANCE_LEASE_S": "3"}
LIVE_S = 30.0  # a safety net on a loaded machine, not a goal


@pytest.mark.timeout(180)
async def test_a_second_process_under_a_running_instance_id_stops_and_the_first_goes_on(
    cluster: Cluster,
) -> None:
    await cluster.add_devices(1)
    first = await cluster.start_instance("d1", **CLAIM)

    copy = Instance("d1", free_port(), cluster.workdir / "d1-copy.log")  # the same env but its port
    second = await asyncio.to_thread(
        subprocess.run,
        [str(VIGIE), "serve"],
        env=cluster.env(copy) | CLAIM,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1, second.stdout + second.stderr
    said = second.stdout + second.stderr
    assert "VIGIE_INSTANCE_ID=d1 est déjà celui d'un autre processus en marche" in said, said
    assert "Traceback" not in said and "en service" not in said, said

    async with httpx.AsyncClient() as http:
        assert (await http.get(first.url + "/healthz")).status_code == 200
    await police_told_of_a_press(cluster)

    first.kill(signal.SIGKILL)  # a crash: its claim is not given back, it runs out
    cluster.instances.remove(first)
    again = await cluster.start_instance("d1", **CLAIM)
    assert "attente" in again.log.read_text(errors="replace")


@pytest.mark.timeout(180)
async def test_a_process_whose_id_was_taken_while_it_was_frozen_stops_when_it_wakes(cluster: Cluster) -> None:
    await cluster.add_devices(1)
    frozen = await cluster.start_instance("d1", **CLAIM)
    frozen.kill(signal.SIGSTOP)  # it cannot renew its claim: it runs out, and another run takes the id
    try:
        cluster.instances.remove(frozen)
        newer = await cluster.start_instance("d1", **CLAIM)
    finally:
        frozen.kill(signal.SIGCONT)
    assert frozen.proc is not None
    code = await asyncio.to_thread(frozen.proc.wait, 60)  # its first renewal finds the id taken
    said = frozen.log.read_text(errors="replace")
    assert code == 1, said
    assert "VIGIE_INSTANCE_ID=d1 est déjà celui d'un autre processus en marche" in said, said

    async with httpx.AsyncClient() as http:
        assert (await http.get(newer.url + "/healthz")).status_code == 200
    await police_told_of_a_press(cluster)


async def police_told_of_a_press(cluster: Cluster) -> None:
    """A press of the cluster's first device reaches the police (the instance running takes it)."""
    pressed = await asyncio.to_thread(cluster.devices[0].alert)

    def police_told() -> bool:
        told = (ref for _, to, ref, _ in provider_requests(cluster) if to == CHEF_DE_POSTE)
        return any(ref.startswith(pressed) for ref in told)

    await cluster.sandbox.wait_for(police_told, within=LIVE_S)
