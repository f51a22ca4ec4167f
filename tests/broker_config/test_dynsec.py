"""The dynamic-security plugin through `vigie provision`: registration, the fail-open gap, revocation.

Against the production (mutual TLS) broker: a device registered at provisioning
is refused any share-group SUBSCRIBE; one provisioned without the broker is
not (the documented fail-open case) until `vigie provision register`; `revoke`
with the broker disables its client; `broker-config` writes the plugin's file
once and never overwrites the broker's own; a broker whose plugin cannot read
its file is not left running.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker_config.cli import app
from broker_config.dynsec import ADMIN_USER
from broker_config.pki import CaPaths
from broker_config.runner import BrokerError
from broker_config.tls_runner import TlsBroker, TlsFiles
from dispatcher.fleet.dynsec_commands import MONITOR_USER, RESTRICTED_GROUP
from tests.broker_config.helpers import SITE, Pki, connected

SHARE = "$share/dispatch/vigie/v1/dev/+/up/+"


def share_refused(broker: TlsBroker, pki: Pki, device_id: str) -> bool:
    with connected(broker, pki.device(device_id)) as device:
        codes = device.subscribe(SHARE)
    assert codes
    return all(c.is_failure for c in codes)


@pytest.mark.broker_process("enregistre les balises par l'écouteur local et lit le fichier du greffon")
def test_provisioning_registers_the_device_with_the_running_broker(pki: Pki, tls_broker: TlsBroker) -> None:
    runner = CliRunner()
    env = {"VIGIE_CA_DIR": str(pki.ca_dir), "VIGIE_DATABASE_URL": f"sqlite:///{pki.db}"}
    admin = ["--broker-admin-port", str(tls_broker.local_port)]
    with_password = env | {"VIGIE_BROKER_ADMIN_PASSWORD": tls_broker.accounts[ADMIN_USER]}

    def device(device_id: str, *extra: str, environment: dict[str, str]) -> str:
        result = runner.invoke(
            app,
            ["device", device_id, "--kind", "button", "--site", SITE.id, "--broker-host", "localhost",
             "--cancel-pin", "2468", "--duress-pin", "1357", "--out", str(pki.bundle(device_id)), *extra],
            env=environment,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return result.output

    assert "groupes partagés" in device("btn-020", *admin, environment=with_password)
    assert share_refused(tls_broker, pki, "btn-020")

    # Provisioned without the broker: fail-open, said at provisioning, closed by `register`.
    assert "non enregistrée auprès du broker" in device("btn-021", environment=env)
    assert not share_refused(tls_broker, pki, "btn-021")
    empty = runner.invoke(app, ["register", "btn-021", *admin], env=env)
    assert empty.exit_code == 1 and "VIGIE_BROKER_ADMIN_PASSWORD est vide" in empty.output
    done = runner.invoke(app, ["register", *admin], env=with_password)  # every active device, idempotent
    assert done.exit_code == 0 and "2 balise(s)" in done.output, done.output
    assert share_refused(tls_broker, pki, "btn-021")

    revoked = runner.invoke(app, ["revoke", "btn-021", *admin], env=with_password)
    assert revoked.exit_code == 0 and "client btn-021 désactivé" in revoked.output, revoked.output
    state = json.loads(tls_broker.dynsec_file.read_text())  # the broker saved its new state
    assert {c["username"]: c.get("disabled", False) for c in state["clients"]}["btn-021"] is True
    # The CRL is not reloaded yet, so its certificate still connects: the role vigie-revoked refuses
    # it everything (here, its own downlink).
    with connected(tls_broker, pki.device("btn-021")) as stolen:
        codes = stolen.subscribe("vigie/v1/dev/btn-021/down")
    assert codes and all(c.is_failure for c in codes), codes


def test_broker_config_writes_the_plugin_file_once(pki: Pki, tmp_path: Path) -> None:
    runner = CliRunner()
    state = tmp_path / "data" / "dynamic-security.json"
    state.parent.mkdir()
    args = ["broker-config", "--out", str(tmp_path / "vigie.conf"), "--data-dir", str(state.parent)]
    args += ["--password-file", "/etc/mosquitto/vigie/passwords", "--run-as", "nobody"]  # exists on Debian
    for name in ("cafile", "certfile", "keyfile", "crlfile"):
        args += [f"--{name}", f"/etc/mosquitto/vigie/{name}.pem"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    conf = (tmp_path / "vigie.conf").read_text()
    assert f"plugin_opt_config_file {state}" in conf and "mosquitto_dynamic_security.so" in conf
    written = json.loads(state.read_text())
    group = next(g for g in written["groups"] if g["groupname"] == RESTRICTED_GROUP)
    assert [c["username"] for c in group["clients"]] == [MONITOR_USER]
    assert "mosquitto_passwd" in first.output
    state.write_text('{"clients": []}')  # as if the broker had rewritten it
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "conservé" in again.output
    assert state.read_text() == '{"clients": []}'


@pytest.mark.broker_process("démarre son propre broker")
def test_a_broker_whose_plugin_cannot_read_its_state_is_not_started(pki: Pki, tmp_path: Path) -> None:
    """Mosquitto logs the error and runs anyway, restricting nobody: the runner stops it and says so."""
    ca = CaPaths(pki.ca_dir)
    files = TlsFiles(ca.cert, pki.server_dir / "server.pem", pki.server_dir / "server.key", ca.crl)
    broker = TlsBroker(tmp_path / "broker", files)
    broker.workdir.mkdir(parents=True)
    broker.dynsec_file.write_text("{ truncated")
    with pytest.raises(BrokerError, match="sécurité dynamique"):
        broker.start()
    assert broker.proc is None
    assert "File is not valid JSON" in broker.log_text()
