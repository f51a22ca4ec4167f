"""Run the broker suite against a broker that is already running (an operator's cluster).

By default the broker tests start their own Mosquitto from ``broker_config/``.
With ``VIGIE_TEST_BROKER`` set they connect to the given broker instead, so an
operator can check a cluster (Mosquitto, EMQX, VerneMQ...) before going live:

``VIGIE_TEST_BROKER=mqtts://mqtt.example.fr:8883``
    The broker's mutual-TLS listener. Only ``mqtts://`` is accepted: devices
    and dispatchers authenticate with a client certificate whose CN is their
    identity, never with a password.
``VIGIE_TEST_BROKER_CA_DIR=/path/to/ca``
    A Vigie CA directory (``ca.pem`` and ``ca.key``, as ``vigie provision
    init-ca`` makes) whose client certificates the broker accepts. The suite
    copies it into its temporary directory and issues, from the copy,
    certificates valid two days for its test devices (``btn-001``,
    ``btn-a``...) and for ``vigie-dispatcher`` and ``vigie-dispatcher-2``;
    the operator's directory is only read. A throwaway CA added to the broker's
    trust for the acceptance run is best (see docs/broker-suite.md).
``VIGIE_TEST_BROKER_SERVER_CA=/path/to/bundle.pem`` (optional)
    The CA bundle that verifies the broker's *server* certificate when it is
    not signed by that CA (a public or corporate CA). The URL's host must be
    one of the certificate's names.

Tests that need to drive the broker process (restart it, kill it, send it
SIGHUP, read its log or database, use its loopback password listener) carry
``@pytest.mark.broker_process`` and are skipped on an external broker, with the
reason. Persistent sessions the tests open are ended after each test, so that
an offline test session never keeps a share of a later test's messages.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from broker_config.pki import CaPaths

URL_VAR = "VIGIE_TEST_BROKER"
CA_DIR_VAR = "VIGIE_TEST_BROKER_CA_DIR"
SERVER_CA_VAR = "VIGIE_TEST_BROKER_SERVER_CA"
# Test certificates issued from the operator's CA expire soon after the run.
TEST_CERT_DAYS = 2
PROCESS_MARKER = "broker_process"


class ExternalBrokerError(pytest.UsageError):
    """The ``VIGIE_TEST_BROKER*`` variables do not describe a usable broker."""


@dataclass
class ExternalBroker:
    """A broker the tests did not start: where it listens and which CA it trusts.

    It stands where the tests expect a :class:`broker_config.tls_runner.TlsBroker`
    (``tls_port``); what only a local process has (``proc``, ``restart``,
    ``log_text``, ``local_port``...) is absent, and the tests that use it are
    marked ``broker_process``.
    """

    host: str
    tls_port: int
    ca_dir: Path
    server_ca: Path | None = None
    # (client certificate, key, client id) of every persistent session a test opened.
    sessions: set[tuple[Path, Path, str]] = field(default_factory=set)
    proc: None = None

    def remember_session(self, cert: Path, key: Path, client_id: str) -> None:
        """A test opened a session that outlives its connection: end it after the test."""
        self.sessions.add((cert, key, client_id))


def from_env(env: Mapping[str, str]) -> ExternalBroker | None:
    """The external broker the variables describe; None when ``VIGIE_TEST_BROKER`` is unset."""
    url = env.get(URL_VAR, "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme != "mqtts" or not parts.hostname:
        raise ExternalBrokerError(
            f"{URL_VAR}={url!r} : attendu mqtts://hôte:port (TLS mutuel, comme les balises en production)"
        )
    try:
        port = parts.port or 8883
    except ValueError:
        raise ExternalBrokerError(f"{URL_VAR}={url!r} : port invalide") from None
    given = env.get(CA_DIR_VAR, "").strip()
    paths = CaPaths(Path(given))
    if not (given and paths.cert.is_file() and paths.key.is_file()):
        raise ExternalBrokerError(
            f"{CA_DIR_VAR} doit désigner un répertoire d'AC Vigie (ca.pem et ca.key, "
            f"cf. vigie provision init-ca) dont le broker accepte les certificats ; "
            f"{'lu : ' + given if given else 'non défini'}"
        )
    ca_dir = Path(given)
    server_ca = env.get(SERVER_CA_VAR, "").strip()
    if server_ca and not Path(server_ca).is_file():
        raise ExternalBrokerError(f"{SERVER_CA_VAR}={server_ca} : fichier introuvable")
    return ExternalBroker(parts.hostname, port, ca_dir, Path(server_ca) if server_ca else None)


_current: list[ExternalBroker | None] = [None]


def configure(config: pytest.Config) -> None:
    """Read the variables once per run (a bad value stops the run before any test)."""
    config.addinivalue_line(
        "markers",
        f"{PROCESS_MARKER}: drives the broker process (restart, kill, SIGHUP, log, loopback listener);"
        f" skipped when {URL_VAR} names an external broker",
    )
    _current[0] = from_env(os.environ)


def current() -> ExternalBroker | None:
    """The external broker of this run, or None (tests start their own Mosquitto)."""
    return _current[0]


def skip_if_needs_process(item: pytest.Item) -> None:
    """Skip a ``broker_process`` test on an external broker, saying why."""
    ext = current()
    marker = item.get_closest_marker(PROCESS_MARKER)
    if ext is not None and marker is not None:
        why = marker.args[0] if marker.args else "pilote le processus du broker"
        pytest.skip(f"broker externe {ext.host}:{ext.tls_port} : ce test {why}")


def skip_own_broker_profile(profile: str) -> None:
    """On an external broker only the production profile (mutual TLS) can run."""
    ext = current()
    if ext is not None and profile != "prod":
        pytest.skip(f"broker externe {ext.host}:{ext.tls_port} : le profil {profile!r} est le broker local")


def copy_ca(ext: ExternalBroker, dest: Path) -> None:
    """Copy the operator's CA (certificate, key, CRL if any) so the tests never write into it."""
    src = CaPaths(ext.ca_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for path in (src.cert, src.key, src.crl):
        if path.is_file():
            shutil.copy2(path, dest / path.name)


def server_ca_or(ext: ExternalBroker | None, default: Path) -> Path:
    """The bundle that verifies the broker's certificate: the operator's, else ``default``."""
    return ext.server_ca if ext is not None and ext.server_ca is not None else default
