"""Mosquitto password-file entries, written without shelling out to mosquitto_passwd."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

# Mosquitto 2.0's "$7$" format: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt.
_ITERATIONS = 101
_SALT_BYTES = 12


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Return the ``$7$...`` hash Mosquitto 2.0 expects in a password file."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    b64 = base64.b64encode
    return f"$7${_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def write_password_file(path: Path, accounts: Mapping[str, str]) -> None:
    """Write ``username:hash`` lines for ``accounts`` (mode 0600, atomically)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        for user, password in sorted(accounts.items()):
            out.write(f"{user}:{hash_password(password)}\n")
    os.replace(tmp, path)
