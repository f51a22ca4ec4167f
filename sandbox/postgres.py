"""A throw-away PostgreSQL server from Debian's binaries, for tests and the benchmark.

``initdb`` + ``pg_ctl start`` in a temporary directory on a free loopback port;
clients connect over TCP to 127.0.0.1 with ``trust`` authentication.

Running as root (as here and in CI): ``initdb`` and ``postgres`` refuse to run
as root, so both run as an unprivileged user through ``runuser``: the
``postgres`` account when Debian's postgresql package created it, else a
``vigie-test`` system account created on the fly (``useradd --system``). The
cluster's directory is made in ``/tmp`` (which any user can traverse, unlike
pytest's 0700 ``tmp_path``) and handed over to that user.

``VIGIE_PG_BIN`` overrides where the server binaries are looked for.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from broker_config.runner import free_port

DB_USER = "vigie"
_FALLBACK_ACCOUNT = "vigie-test"


def pg_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` with initdb (or ``$VIGIE_PG_BIN``)."""
    override = os.environ.get("VIGIE_PG_BIN")
    candidates = [Path(override)] if override else []
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    return next((c for c in candidates if (c / "initdb").is_file()), None)


def _server_account() -> str | None:
    """The unprivileged account the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _FALLBACK_ACCOUNT):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _FALLBACK_ACCOUNT],
        check=True,
    )
    return _FALLBACK_ACCOUNT


@dataclass
class PostgresCluster:
    """``initdb`` + ``pg_ctl start`` in a temp directory, on a free loopback port."""

    bin_dir: Path
    port: int = field(default_factory=free_port)
    root: Path | None = None
    account: str | None = None
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        assert self.root is not None
        return self.root / "postgres.log"

    def _as_server(self, *argv: str) -> list[str]:
        if self.account is None:
            return list(argv)
        return ["runuser", "-u", self.account, "--", *argv]

    def start(self) -> None:
        """Create the cluster (superuser ``vigie``, trust auth, fsync on) and start it."""
        self.account = _server_account()
        self.root = Path(tempfile.mkdtemp(prefix="vigie-pg-"))
        if self.account is not None:
            entry = pwd.getpwnam(self.account)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            self._as_server(
                str(self.bin_dir / "initdb"),
                "-D", str(self.data_dir), "-U", DB_USER, "--auth=trust",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions",
            ),
            check=True, capture_output=True,
        )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200"
        )
        subprocess.run(
            self._as_server(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                "-o", options, "-w", "-t", "60", "start",
            ),
            check=True, capture_output=True,
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its files."""
        if self.root is None:
            return
        subprocess.run(
            self._as_server(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"
            ),
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def url(self, database: str) -> str:
        return f"postgresql://{DB_USER}@127.0.0.1:{self.port}/{database}"

    def _client(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / tool), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, *args],
            check=True,
            capture_output=True,
        )

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its name."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self._client("createdb", name)
        return name

    def drop_database(self, name: str) -> None:
        """Drop it even if a killed dispatcher left connections behind."""
        self._client("dropdb", "--force", "--if-exists", name)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.root and self.log_file.exists() else ""
