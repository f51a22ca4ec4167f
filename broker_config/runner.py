"""Run a real Mosquitto with the project's configuration (demo, tests, bench).

The shipped configuration files are templates with ``${...}`` placeholders;
:func:`render_config` fills them so that every run gets its own port, data
directory and credentials.
"""

from __future__ import annotations

import contextlib
import getpass
import secrets
import shutil
import signal
import socket
import string
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from broker_config import dynsec
from broker_config.passwords import write_password_file
from dispatcher.fleet.dynsec_commands import restricted_client_id

DISPATCHER_USER = "vigie-dispatcher"


class BrokerError(RuntimeError):
    """Mosquitto is missing, refused its configuration, or did not start."""


def config_template(profile: str) -> str:
    """Text of the shipped ``broker_config/<profile>/mosquitto.conf``."""
    return resources.files("broker_config").joinpath(profile, "mosquitto.conf").read_text()


def acl_path() -> Path:
    """Path of the shipped ACL file (shared by dev and prod)."""
    return Path(str(resources.files("broker_config").joinpath("acl")))


def render_config(profile: str, values: Mapping[str, object]) -> str:
    """Fill the template's ``${...}`` placeholders; a missing value is an error."""
    try:
        return string.Template(config_template(profile)).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise BrokerError(f"configuration {profile!r} : valeur manquante pour {exc.args[0]}") from None


# Ports handed to a server that binds them later are drawn below the kernel's
# ephemeral range: there, no outgoing connection (an MQTT client, an HTTP
# request) can take the port between this choice and the server's bind.
_LOWEST_CHOSEN_PORT = 20000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _first_ephemeral_port() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port free on loopback now, that the kernel will not give an outgoing connection.

    Chosen at random below the ephemeral range, so that a server started a
    moment later (Mosquitto, the demo's HTTP port) does not lose it to a
    client's connection; the ephemeral range is the last resort.
    """
    low, high = _LOWEST_CHOSEN_PORT, _first_ephemeral_port()
    for _ in range(64):
        port = low + secrets.randbelow(max(high - low, 1))
        if _bindable(port):
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def stop_process(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send ``sig`` to a child still running and reap it; SIGKILL if it outlives ``timeout``."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def mosquitto_binary() -> str:
    """Path of the mosquitto executable (Debian installs it in /usr/sbin)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise BrokerError("mosquitto n'est pas installé : apt-get install mosquitto")
    return found


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until ``host:port`` accepts TCP connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"processus arrêté (code {proc.returncode}) avant d'écouter sur {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2) as sock:
            # Linux can connect a socket to itself when its ephemeral port happens to
            # be the one probed (TCP simultaneous open): that is nobody listening.
            if sock.getsockname()[1] != port:
                return
        time.sleep(0.02)
    raise BrokerError(f"rien n'écoute sur {host}:{port} après {timeout} s")


class MosquittoProcess(ABC):
    """Start/stop/restart a Mosquitto whose configuration a subclass writes.

    Subclasses provide ``workdir``, :meth:`write_config` and :meth:`ports`.
    """

    workdir: Path
    proc: subprocess.Popen[bytes] | None
    accounts: dict[str, str]
    # Accounts the running broker's dynamic-security plugin knows (its file at start + registrations).
    registered: set[str]

    @abstractmethod
    def write_config(self) -> Path:
        """Render this profile's template into ``workdir``; return the file."""

    @abstractmethod
    def ports(self) -> list[int]:
        """The loopback ports to wait for after starting."""

    @abstractmethod
    def loopback_port(self) -> int:
        """The password listener on loopback (where the dynsec admin logs in)."""

    @property
    def log_file(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def dynsec_file(self) -> Path:
        return self.workdir / "dynamic-security.json"

    def ensure_admin(self) -> None:
        """Give this broker its dynsec admin account (random password, loopback only)."""
        self.accounts.setdefault(dynsec.ADMIN_USER, secrets.token_urlsafe(18))

    def admin(self) -> dynsec.DynsecAdmin:
        """The dynsec admin of this broker, to change the plugin's state while it runs."""
        return dynsec.DynsecAdmin("127.0.0.1", self.loopback_port(), self.accounts[dynsec.ADMIN_USER])

    def dynsec_values(self) -> dict[str, object]:
        """Write the plugin's file for the current accounts (before start); its template values."""
        dynsec.write_config(self.dynsec_file, self.accounts)
        self.registered = set(self.accounts)
        return {"dynsec_plugin": dynsec.plugin_path(), "dynsec_file": self.dynsec_file}

    def register_new_accounts(self) -> None:
        """Register with the running broker's plugin the restricted accounts added since it started."""
        new = [u for u in self.accounts if u not in self.registered and restricted_client_id(u)]
        if self.proc is not None and self.proc.poll() is None and new:
            self.admin().register(new)
        self.registered.update(new)

    def start(self, timeout: float = 10.0) -> None:
        """Start Mosquitto and wait until every listener accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.write_config()
        logged = len(self.log_text())
        with self.log_file.open("ab") as log:
            # Its own session: a terminal's Ctrl-C reaches our process group, and
            # the broker must outlive it until we have stopped the dispatcher.
            self.proc = subprocess.Popen(
                [mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=log, start_new_session=True
            )
        for port in self.ports():
            wait_for_port("127.0.0.1", port, timeout, self.proc)
        if dynsec.LOAD_ERROR in self.log_text()[logged:]:  # it starts anyway, and then restricts nobody
            self.stop()
            raise BrokerError(f"le greffon de sécurité dynamique n'a pas lu son fichier ({self.log_file})")

    def signal_reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password file, ACL and CRL."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM saves persistence; SIGKILL simulates a crash)."""
        if self.proc is not None:
            stop_process(self.proc, sig, timeout)
        self.proc = None

    def restart(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop with ``sig`` and start again on the same ports and data directory."""
        self.stop(sig)
        self.start()

    def log_text(self) -> str:
        """What Mosquitto logged so far (for assertions and failure messages)."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


@dataclass
class DevBroker(MosquittoProcess):
    """A loopback Mosquitto started from ``broker_config/dev``.

    ``accounts`` maps usernames to passwords; the dispatcher account is added
    by :meth:`add_account`. Every device account and the monitor's are also
    clients of the dynamic-security plugin (:mod:`broker_config.dynsec`), bound
    to their own client id; the admin account that registers them is created
    here. Use as a context manager, or call start/stop.
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    accounts: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    registered: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.ensure_admin()

    @property
    def password_file(self) -> Path:
        return self.workdir / "passwords"

    def add_account(self, username: str, password: str) -> None:
        """Create or update an account; takes effect at the next (re)start or :meth:`reload`."""
        self.accounts[username] = password
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_password_file(self.password_file, self.accounts)

    def write_config(self) -> Path:
        """Render the dev template for this broker and return its path."""
        data_dir = self.workdir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        write_password_file(self.password_file, self.accounts)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            render_config(
                "dev",
                {
                    "port": self.port,
                    "password_file": self.password_file,
                    "acl_file": self.acl_file(),
                    "data_dir": data_dir,
                    "run_as": getpass.getuser(),
                }
                | self.dynsec_values(),
            )
        )
        return conf

    def acl_file(self) -> Path:
        """The ACL file this broker uses (the shipped one; the benchmark extends it)."""
        return acl_path()

    def ports(self) -> list[int]:
        return [self.port]

    def loopback_port(self) -> int:
        return self.port

    def reload(self) -> None:
        """Register new accounts with the plugin, then make Mosquitto re-read its password and ACL files."""
        self.register_new_accounts()
        write_password_file(self.password_file, self.accounts)
        self.signal_reload()

    def __enter__(self) -> DevBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
