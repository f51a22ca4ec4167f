"""Run a real Mosquitto with the production (mutual TLS) configuration.

Used by the transport-security tests and by ``vigie provision broker-config``
(which only renders the file). The broker's certificate, key and the CA's CRL
are read from the paths given; nothing is generated here.
"""

from __future__ import annotations

import getpass
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from broker_config import dynsec
from broker_config.passwords import write_password_file
from broker_config.runner import MosquittoProcess, acl_path, free_port, render_config

DYNSEC_FILE_NAME = "dynamic-security.json"


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files the TLS listener needs."""

    cafile: Path
    certfile: Path
    keyfile: Path
    crlfile: Path


def prod_values(
    *,
    files: TlsFiles,
    data_dir: Path,
    password_file: Path,
    acl_file: Path | None = None,
    dynsec_file: Path | None = None,
    tls_port: int = 8883,
    tls_bind: str = "0.0.0.0",
    local_port: int = 1883,
    run_as: str = "mosquitto",
) -> dict[str, object]:
    """The placeholder values of ``broker_config/prod/mosquitto.conf``.

    The dynamic-security file defaults to ``data_dir/dynamic-security.json``
    (the broker rewrites it, so it lives with its data); the plugin must be installed.
    """
    return {
        "tls_port": tls_port,
        "tls_bind": tls_bind,
        "local_port": local_port,
        "cafile": files.cafile,
        "certfile": files.certfile,
        "keyfile": files.keyfile,
        "crlfile": files.crlfile,
        "password_file": password_file,
        "acl_file": acl_file if acl_file is not None else acl_path(),
        "dynsec_plugin": dynsec.plugin_path(),
        "dynsec_file": dynsec_file if dynsec_file is not None else data_dir / DYNSEC_FILE_NAME,
        "data_dir": data_dir,
        "run_as": run_as,
    }


def render_prod_config(values: Mapping[str, object]) -> str:
    """Fill the production template (every placeholder must be given)."""
    return render_config("prod", values)


@dataclass
class TlsBroker(MosquittoProcess):
    """A Mosquitto started from ``broker_config/prod`` on free loopback ports.

    ``accounts`` are password accounts for the loopback listener only; the
    dynsec admin account is added to them (see :mod:`broker_config.dynsec`).
    """

    workdir: Path
    files: TlsFiles
    tls_port: int = field(default_factory=free_port)
    local_port: int = field(default_factory=free_port)
    accounts: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    registered: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.ensure_admin()

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def write_config(self) -> Path:
        """Render the prod template for this broker and return its path."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        passwords = self.workdir / "passwords"
        write_password_file(passwords, self.accounts)
        values = prod_values(
            files=self.files,
            data_dir=self.data_dir,
            password_file=passwords,
            dynsec_file=self.dynsec_file,
            tls_port=self.tls_port,
            tls_bind="127.0.0.1",
            local_port=self.local_port,
            run_as=getpass.getuser(),
        )
        # Written once, as on a server: afterwards the broker owns it (devices registered at
        # provisioning, clients disabled at revocation survive a restart).
        if not self.dynsec_file.exists():
            dynsec.write_config(self.dynsec_file, self.accounts)
        self.registered = set(self.accounts)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(render_prod_config(values))
        return conf

    def ports(self) -> list[int]:
        return [self.tls_port, self.local_port]

    def loopback_port(self) -> int:
        return self.local_port

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads the ACL, password file and CRL (new connections)."""
        self.signal_reload()

    def save(self) -> None:
        """SIGUSR1: Mosquitto writes its persistence database now."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGUSR1)

    def __enter__(self) -> TlsBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
