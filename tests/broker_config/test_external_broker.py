"""The VIGIE_TEST_BROKER variables: what they select, and the errors an operator sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker_config import provision
from tests.support.external_broker import ExternalBroker, ExternalBrokerError, from_env


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    provision.init_ca(tmp_path / "ca")
    return tmp_path / "ca"


def test_unset_means_the_tests_start_their_own_broker() -> None:
    assert from_env({}) is None
    assert from_env({"VIGIE_TEST_BROKER": "  "}) is None


def test_url_and_ca_dir_select_the_external_broker(ca_dir: Path, tmp_path: Path) -> None:
    env = {"VIGIE_TEST_BROKER": "mqtts://mqtt.example.fr:8884", "VIGIE_TEST_BROKER_CA_DIR": str(ca_dir)}
    assert from_env(env) == ExternalBroker("mqtt.example.fr", 8884, ca_dir)
    bundle = tmp_path / "public-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    env |= {"VIGIE_TEST_BROKER": "mqtts://mqtt.example.fr", "VIGIE_TEST_BROKER_SERVER_CA": str(bundle)}
    assert from_env(env) == ExternalBroker("mqtt.example.fr", 8883, ca_dir, bundle)


@pytest.mark.parametrize(
    ("url", "ca", "message"),
    [
        ("mqtt://mqtt.example.fr:1883", True, "attendu mqtts://"),
        ("mqtts://:8883", True, "attendu mqtts://"),
        ("mqtts://mqtt.example.fr:port", True, "port invalide"),
        ("mqtts://mqtt.example.fr", False, "non défini"),
    ],
)
def test_bad_values_stop_the_run_with_a_french_reason(ca_dir: Path, url: str, ca: bool, message: str) -> None:
    env = {"VIGIE_TEST_BROKER": url} | ({"VIGIE_TEST_BROKER_CA_DIR": str(ca_dir)} if ca else {})
    with pytest.raises(ExternalBrokerError, match=message):
        from_env(env)


def test_a_directory_without_the_ca_key_is_refused(ca_dir: Path) -> None:
    (ca_dir / "ca.key").unlink()
    env = {"VIGIE_TEST_BROKER": "mqtts://mqtt.example.fr", "VIGIE_TEST_BROKER_CA_DIR": str(ca_dir)}
    with pytest.raises(ExternalBrokerError, match=r"ca\.pem et ca\.key"):
        from_env(env)
