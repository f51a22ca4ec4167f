"""Fixtures: a PKI made by the provisioning code, and Mosquitto with the prod config.

With ``VIGIE_TEST_BROKER`` set (tests/support/external_broker.py) both point at
the operator's broker instead: the PKI is a copy of the CA it trusts, and no
Mosquitto is started.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_config.pki import CaPaths
from broker_config.tls_runner import TlsBroker, TlsFiles
from tests.broker_config.helpers import Pki, end_sessions, make_pki
from tests.support import external_broker
from tests.support.broker import new_password
from tests.support.external_broker import ExternalBroker

MONITOR = "vigie-monitor"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """CA, broker and dispatcher certificates, and a store with one practitioner and one site."""
    return make_pki(tmp_path / "pki", external_broker.current())


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[TlsBroker | ExternalBroker]:
    """Mosquitto started from broker_config/prod on free ports, with a loopback monitor account."""
    ca = CaPaths(pki.ca_dir)
    ext = external_broker.current()
    if ext is not None:
        try:
            yield ext
        finally:
            end_sessions(ext, external_broker.server_ca_or(ext, ca.cert))
        return
    files = TlsFiles(ca.cert, pki.server_dir / "server.pem", pki.server_dir / "server.key", ca.crl)
    broker = TlsBroker(tmp_path / "broker", files, accounts={MONITOR: new_password()})
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
