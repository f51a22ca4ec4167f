"""docs/protocol.md's canonical-bytes rules and shell signing hold against the code and the golden vectors.

The shell snippets are taken from the document itself and run with bash and
Debian's openssl, so the documentation cannot drift from what the
dispatcher verifies.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from protocol.codec import decode_uplink
from protocol.signing import canonical_bytes
from protocol.topics import parse_topic

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
VECTORS = Path(__file__).parent / "vectors"
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing (make system-deps)")


def _section(marker: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split(f"<!-- {marker} -->")[1].split(f"<!-- /{marker} -->")[0]


def _shell(marker: str) -> str:
    return _section(marker).split("```sh\n")[1].split("```")[0]


def _examples() -> list[tuple[str, str]]:
    rows = re.findall(r"^\| `(.+)` \| `(.+)` \|$", _section("canonical-examples"), flags=re.M)
    assert len(rows) >= 6
    return rows


@pytest.mark.parametrize(("wire", "canonical"), _examples())
def test_documented_examples_are_what_the_code_signs(wire: str, canonical: str) -> None:
    assert canonical_bytes(json.loads(wire)).decode("ascii") == canonical


def _signed_vectors() -> list[Path]:
    """Vectors whose ``sig`` is the key's signature of ``canonical`` (not the forged ones)."""
    vectors = [(p, json.loads(p.read_text())) for p in VECTORS.glob("*.json")]
    return sorted(
        path
        for path, v in vectors
        if {"key_hex", "canonical", "sig"} <= v.keys() and v["expect"] != "bad_signature"
    )


@pytest.mark.parametrize("vector", _signed_vectors(), ids=lambda p: p.stem)
def test_shell_signing_gives_the_golden_signature(vector: Path, tmp_path: Path) -> None:
    data = json.loads(vector.read_text())
    (tmp_path / "sign.sh").write_text(_shell("shell-signing"))
    key = tmp_path / "hmac.key"
    key.write_text(data["key_hex"] + "\n")  # the bundle's format: hex and a newline
    result = subprocess.run(
        ["bash", str(tmp_path / "sign.sh"), str(key), data["canonical"]],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert result.stdout.strip() == data["sig"]


def test_shell_alert_is_accepted_by_the_dispatchers_decoder(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    bundle = tmp_path / "btn-001"
    bundle.mkdir()
    (bundle / "hmac.key").write_text(key.hex() + "\n")
    (bundle / "mqtt.password").write_text("secret\n")
    (tmp_path / "sign.sh").write_text(_shell("shell-signing"))
    (tmp_path / "sign.sh").chmod(0o755)
    # Stand-in for mosquitto_pub: print the topic and the message it was given.
    fake_pub = "mosquitto_pub() { while [ $# -gt 0 ]; do "
    fake_pub += 'case "$1" in -t) t=$2;; -m) m=$2;; esac; shift; done; '
    fake_pub += 'printf "%s\\n%s\\n" "$t" "$m"; }\n'
    result = subprocess.run(
        ["bash", "-c", fake_pub + _shell("shell-alert")],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    topic, payload = result.stdout.splitlines()
    keys = {"btn-001": key}
    alert = decode_uplink(payload.encode(), parse_topic(topic), keys.get)
    assert alert.type == "alert" and alert.device == "btn-001" and alert.seq == 1000
