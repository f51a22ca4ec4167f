"""What the running dispatcher picks up without a restart (docs/deploy-server.md, the table).

The admin commands run as a newcomer types them, ``vigie provision …`` and
``vigie load-directory`` in processes of their own, against the database of a
dispatcher that keeps running: their changes reach it only through the store.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker_config.runner import DevBroker
from sandbox.fleet import SimulatedDevice
from tests.support.system import HERAULT, System, running_system

VIGIE = Path(sys.executable).with_name("vigie")
CHEF_DE_POSTE = "+33639980101"
NEW_CHEF_DE_POSTE = "+33639980188"  # the number the reloaded directory gives him


@pytest.fixture
async def system(broker: DevBroker, tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(broker, tmp_path) as s:
        yield s


async def vigie(tmp_path: Path, *args: str) -> str:
    env = os.environ | {
        "VIGIE_DATABASE_URL": f"sqlite:///{tmp_path / 'vigie.db'}",
        "VIGIE_CA_DIR": str(tmp_path / "pki"),
    }
    proc = await asyncio.create_subprocess_exec(
        str(VIGIE), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def picked_up(system: System, within: float = 5.0) -> None:
    """Until the dispatcher's own poll has loaded the store's current directory version."""
    cache = system.dispatcher.cache
    async with asyncio.timeout(within):
        while cache.version != await system.store.directory_version():  # noqa: ASYNC110 - a reload publishes no event
            await asyncio.sleep(0.05)


async def test_provisioning_and_a_directory_reload_reach_the_running_dispatcher(
    system: System, tmp_path: Path
) -> None:
    await vigie(tmp_path, "provision", "init-ca")
    bundle = tmp_path / "bundles" / "btn-new"
    await vigie(
        tmp_path, "provision", "device", "btn-new", "--kind", "pocket", "--practitioner", "dr-claire-fabre",
        "--site", "cabinet-boutonnet", "--broker-host", "127.0.0.1", "--broker-port", str(system.broker.port),
        "--cancel-pin", "2468", "--duress-pin", "1357", "--dev-broker", "--out", str(bundle),
    )  # fmt: skip
    # The development broker learns the account (docs: restart `vigie broker dev`; here a reload).
    password = (bundle / "mqtt.password").read_text().strip()
    system.broker.add_account("btn-new", password)
    system.broker.reload()
    key = bytes.fromhex((bundle / "hmac.key").read_text().strip())
    await picked_up(system)
    assert system.dispatcher.cache.current.key_for("btn-new") == bytes.fromhex(
        (bundle / "hmac.key").read_text().strip()
    )
    device = SimulatedDevice("btn-new", key, "127.0.0.1", system.broker.port, password)
    await asyncio.to_thread(device.connect)
    try:
        # Accepted by the dispatcher that was running before the device existed.
        first = await asyncio.to_thread(device.alert)
        await asyncio.to_thread(device.wait_downlink, "received", first, 10)
        await system.sandbox.wait_for(lambda: bool(system.sent_to(CHEF_DE_POSTE, "message")), within=10)

        # The directory reloaded by another process: the next alert goes to the new number.
        changed = tmp_path / "herault.yaml"
        changed.write_text(HERAULT.read_text().replace(f'"{CHEF_DE_POSTE}"', f'"{NEW_CHEF_DE_POSTE}"'))
        await vigie(tmp_path, "load-directory", str(changed), "--no-geocode")
        await picked_up(system)
        second = await asyncio.to_thread(device.alert)
        await asyncio.to_thread(device.wait_downlink, "received", second, 10)
        await system.sandbox.wait_for(lambda: bool(system.sent_to(NEW_CHEF_DE_POSTE, "message")), within=10)
        to_new = system.sandbox.requests_to(NEW_CHEF_DE_POSTE, "message")
        assert {r.ref.split("/")[0] for r in to_new if r.ref} == {second}
    finally:
        device.close()
