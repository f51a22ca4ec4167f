"""Several dispatcher instances on the production broker: one certificate (CN) each.

Real Mosquitto with broker_config/prod and the shipped ACL; certificates made
by the provisioning code (``--instance n``).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker_config import pki as pkimod
from broker_config import provision
from broker_config.cli import app
from broker_config.provision import MAX_DISPATCHER_INSTANCES, ProvisionError, dispatcher_cn
from broker_config.runner import acl_path
from broker_config.tls_runner import TlsBroker
from dispatcher.store import open_store
from protocol.topics import UplinkKind, downlink_topic, shared_uplink_filter, uplink_topic
from tests.broker_config.helpers import PRACTITIONER, Identity, Pki, connected
from tests.support import postgres as _pg

# The session's PostgreSQL cluster and a fresh database per test.
postgres_cluster = _pg.postgres_cluster
postgres_url = _pg.postgres_url


def _acl_blocks() -> dict[str, list[str]]:
    """``user`` → its topic lines, from the shipped ACL."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in acl_path().read_text().splitlines():
        line = line.strip()
        if line.startswith("user "):
            current = blocks.setdefault(line.split()[1], [])
        elif line.startswith("topic ") and current is not None:
            current.append(line)
        elif line.startswith("pattern "):
            current = None
    return blocks


def test_every_dispatcher_cn_has_the_dispatcher_rights_in_the_acl() -> None:
    blocks = _acl_blocks()
    reference = blocks["vigie-dispatcher"]
    assert reference  # read uplinks and statuses, write downlinks
    for n in range(1, MAX_DISPATCHER_INSTANCES + 1):
        assert blocks.get(dispatcher_cn(n)) == reference, dispatcher_cn(n)
    dispatchers = [u for u in blocks if re.fullmatch(r"vigie-dispatcher(-\d+)?", u)]
    assert len(dispatchers) == MAX_DISPATCHER_INSTANCES  # no CN the provisioning cannot issue


def test_instance_numbers_map_to_cns_and_are_bounded() -> None:
    assert dispatcher_cn(1) == "vigie-dispatcher"
    assert dispatcher_cn(2) == "vigie-dispatcher-2"
    with pytest.raises(ProvisionError, match="ACL"):
        dispatcher_cn(MAX_DISPATCHER_INSTANCES + 1)
    with pytest.raises(ProvisionError):
        dispatcher_cn(0)


def _second_dispatcher(pki: Pki) -> Identity:
    out = pki.root / "dispatcher-2"
    days = {"validity_days": pki.cert_days} if pki.cert_days is not None else {}
    files = provision.issue_dispatcher_cert(pki.ca_dir, out, instance=2, **days)
    assert pkimod.common_name(pkimod.load_cert(files.cert)) == "vigie-dispatcher-2"
    assert [pkimod.common_name(c) for c in provision.issued_certs(pki.ca_dir, "vigie-dispatcher-2")] == [
        "vigie-dispatcher-2"
    ]
    return Identity(pki.server_ca or files.ca, files.cert, files.key)


def test_two_instances_share_the_uplinks_without_kicking_each_other(pki: Pki, tls_broker: TlsBroker) -> None:
    second = _second_dispatcher(pki)
    pki.provision("btn-001")
    with (
        connected(tls_broker, pki.dispatcher, clean_start=False, session_expiry=3600) as one,
        connected(tls_broker, second, clean_start=False, session_expiry=3600) as two,
        connected(tls_broker, pki.device("btn-001")) as dev,
    ):
        one.subscribe(shared_uplink_filter())
        two.subscribe(shared_uplink_filter())
        # Subscribe the device to its downlink to see instance 2 may write it.
        dev.subscribe(downlink_topic("btn-001"))
        payloads = [f"alert-{i}".encode() for i in range(20)]
        for p in payloads:
            dev.publish(uplink_topic("btn-001", UplinkKind.ALERT), p)

        def all_delivered(_m: object) -> bool:
            return len(one.messages) + len(two.messages) >= len(payloads)

        one.wait_for(all_delivered)
        got_one = [m.payload for m in one.messages]
        got_two = [m.payload for m in two.messages]
        assert sorted(got_one + got_two) == sorted(payloads)  # each alert to exactly one instance
        assert got_one and got_two  # the share group spreads them
        two.publish(downlink_topic("btn-001"), b"received-by-2")
        dev.wait_for(lambda m: any(x.payload == b"received-by-2" for x in m))
        assert not one.disconnected.is_set() and not two.disconnected.is_set()


def test_cli_issues_a_certificate_per_instance(pki: Pki, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"VIGIE_CA_DIR": str(pki.ca_dir)}
    result = runner.invoke(
        app, ["dispatcher-cert", "--instance", "3", "--out", str(tmp_path / "d3")], env=env
    )
    assert result.exit_code == 0, result.output
    assert "CN vigie-dispatcher-3" in result.output
    cert = pkimod.load_cert(tmp_path / "d3" / "dispatcher.pem")
    assert pkimod.common_name(cert) == "vigie-dispatcher-3"
    refused = runner.invoke(
        app, ["dispatcher-cert", "--instance", "9", "--out", str(tmp_path / "d9")], env=env
    )
    assert refused.exit_code == 1 and "ACL" in refused.output
    assert not (tmp_path / "d9").exists()


def test_provisioning_works_on_a_postgresql_store(pki: Pki, postgres_url: str, tmp_path: Path) -> None:
    """``VIGIE_DATABASE_URL=postgresql://…``: the provisioning commands open the same store as the service."""
    runner = CliRunner()
    env = {"VIGIE_CA_DIR": str(pki.ca_dir), "VIGIE_DATABASE_URL": postgres_url}

    async def seed() -> None:
        store = await open_store(postgres_url)
        try:
            await store.upsert_practitioner(PRACTITIONER)
        finally:
            await store.close()

    asyncio.run(seed())
    bundle = tmp_path / "btn-pg"
    args = ["device", "btn-pg", "--kind", "pocket", "--practitioner", PRACTITIONER.id, "--generate-pins"]
    result = runner.invoke(app, [*args, "--broker-host", "localhost", "--out", str(bundle)], env=env)
    assert result.exit_code == 0, result.output
    listing = runner.invoke(app, ["list"], env=env)
    assert listing.exit_code == 0 and "btn-pg" in listing.output and "active" in listing.output
    revoked = runner.invoke(app, ["revoke", "btn-pg"], env=env)
    assert revoked.exit_code == 0 and "base mise à jour : oui" in revoked.output
