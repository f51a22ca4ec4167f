"""Fixtures: a PKI made by the provisioning code, and Mosquitto with the prod config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_config.pki import CaPaths
from broker_config.tls_runner import TlsBroker, TlsFiles
from tests.broker_config.helpers import Pki, make_pki
from tests.support.broker import new_password

MONITOR = "vigie-monitor"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """CA, broker and dispatcher certificates, and a store with one practitioner and one site."""
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[TlsBroker]:
    """Mosquitto started from broker_config/prod on free ports, with a loopback monitor account."""
    ca = CaPaths(pki.ca_dir)
    files = TlsFiles(ca.cert, pki.server_dir / "server.pem", pki.server_dir / "server.key", ca.crl)
    broker = TlsBroker(tmp_path / "broker", files, accounts={MONITOR: new_password()})
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
