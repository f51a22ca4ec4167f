"""Development broker and dev bundles: ``vigie broker dev`` and ``provision device --dev-broker``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from typer.testing import CliRunner

from broker_config.cli import app
from broker_config.runner import free_port
from protocol.topics import status_topic
from tests.broker_config.helpers import PRACTITIONER, Pki

VIGIE = Path(sys.executable).with_name("vigie")


def _dev_bundle(pki: Pki, out: Path, port: int) -> None:
    env = {"VIGIE_CA_DIR": str(pki.ca_dir), "VIGIE_DATABASE_URL": f"sqlite:///{pki.db}"}
    result = CliRunner().invoke(
        app,
        ["device", "btn-dev-1", "--kind", "button", "--practitioner", PRACTITIONER.id,
         "--broker-host", "127.0.0.1", "--broker-port", str(port), "--dev-broker", "--cancel-pin", "2468",
         "--duress-pin", "1357",
         "--out", str(out)],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "vigie broker dev --device-bundle" in result.output.replace("\n", "")


def test_dev_bundle_creates_missing_parents_and_names_a_password(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "not" / "yet" / "there" / "btn-dev-1"
    _dev_bundle(pki, out, 1883)
    mqtt_section = tomllib.loads((out / "device.toml").read_text())["mqtt"]
    assert mqtt_section["username"] == "btn-dev-1" and mqtt_section["port"] == 1883
    assert {"ca_file", "cert_file", "key_file"}.isdisjoint(mqtt_section)  # password broker: no TLS
    password = (out / mqtt_section["password_file"]).read_text().strip()
    assert len(password) >= 20
    assert (out / "mqtt.password").stat().st_mode & 0o777 == 0o600


def _connect(port: int, username: str, password: str) -> mqtt.ReasonCode | None:
    """CONNACK reason code of a fresh session (None: no CONNACK within 5 s)."""
    got: list[mqtt.ReasonCode] = []
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)

    def on_connect(_c: object, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        got.append(reason)
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        done.wait(5)
        if got and not got[0].is_failure:
            client.publish(status_topic(username), b"{}", qos=1).wait_for_publish(5)
        return got[0] if got else None
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.mark.timeout(60)
def test_vigie_broker_dev_runs_the_project_config_with_the_bundles_accounts(pki: Pki, tmp_path: Path) -> None:
    port = free_port()
    bundle = tmp_path / "btn-dev-1"
    _dev_bundle(pki, bundle, port)
    workdir = tmp_path / "broker"
    proc = subprocess.Popen(
        [str(VIGIE), "broker", "dev", "--port", str(port), "--workdir", str(workdir),
         "--device-bundle", str(bundle)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"broker de développement sur 127.0.0.1:{port}" in first, first
        password = (bundle / "mqtt.password").read_text().strip()
        reason = _connect(port, "btn-dev-1", password)
        assert reason is not None and not reason.is_failure, reason
        refused = _connect(port, "btn-dev-1", "wrong-password")
        assert refused is None or refused.is_failure
        env = dict(line.split("=", 1) for line in (workdir / "dispatcher.env").read_text().splitlines())
        assert env["VIGIE_MQTT__PORT"] == str(port)
        reason = _connect(port, env["VIGIE_MQTT__USERNAME"], env["VIGIE_MQTT__PASSWORD"])
        assert reason is not None and not reason.is_failure, reason
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0


def test_a_port_chosen_for_a_broker_cannot_be_taken_by_an_outgoing_connection() -> None:
    """The port is drawn below the kernel's ephemeral range: a client connecting meanwhile
    (the dispatcher's MQTT client, an HTTP request) gets its port from that range, never this one."""
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(20000 <= port < first_ephemeral for port in ports)
    assert len(ports) > 1  # drawn at random, so two runs do not contend for one port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports.pop()))  # and it is free now
