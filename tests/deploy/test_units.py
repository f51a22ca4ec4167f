"""The shipped systemd units pass ``systemd-analyze verify`` (and a broken one does not).

``verify`` checks that ExecStart binaries exist, so each unit is rendered
into a temp directory with the install paths (/opt/vigie/venv/bin/...)
pointed at binaries that exist here. systemd 252 exits 0 even for unknown
keys or unparsable values (it logs "ignoring"), so any diagnostic line is a
failure.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
STAND_INS = {"/opt/vigie/venv/bin/vigie-device": "/bin/true", "/opt/vigie/venv/bin/vigie": "/bin/true"}

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")


def render(unit: Path, out_dir: Path, *, replace: tuple[str, str] | None = None) -> Path:
    text = unit.read_text()
    for install_path, stand_in in STAND_INS.items():  # longest first: vigie-device before vigie
        text = text.replace(install_path, stand_in)
    if replace is not None:
        assert replace[0] in text, replace
        text = text.replace(*replace)
    path = out_dir / unit.name
    path.write_text(text)
    return path


def diagnostics(unit: Path) -> str:
    """What ``systemd-analyze verify`` says about ``unit`` ('' when it is clean)."""
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "--generators=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return (done.stdout + done.stderr).strip() or ("" if done.returncode == 0 else f"exit {done.returncode}")


def test_units_are_shipped() -> None:
    assert {u.name for u in UNITS} == {"vigie-dispatcher.service", "vigie-device.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies_clean(unit: Path, tmp_path: Path) -> None:
    assert diagnostics(render(unit, tmp_path)) == ""


@pytest.mark.parametrize(
    ("unit_name", "breakage"),
    [
        ("vigie-dispatcher.service", ("ProtectSystem=strict", "ProtectSystem=stirct")),
        ("vigie-dispatcher.service", ("ProtectHome=yes", "ProtectHom=yes")),
        ("vigie-device.service", ("/bin/true --config", "/nonexistent/vigie-device --config")),
    ],
)
def test_a_broken_unit_is_caught(unit_name: str, breakage: tuple[str, str], tmp_path: Path) -> None:
    unit = DEPLOY / "systemd" / unit_name
    rendered = tmp_path / unit_name
    rendered.write_text(render(unit, tmp_path).read_text().replace(*breakage))
    assert diagnostics(rendered) != ""


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_hardening_and_restart_policy(unit: Path) -> None:
    text = unit.read_text()
    for directive in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
        "StartLimitIntervalSec=0",
    ):
        assert directive in text, directive
    assert "Restart=always" in text or "Restart=on-failure" in text


def test_dispatcher_secrets_come_from_a_credential() -> None:
    text = (DEPLOY / "systemd" / "vigie-dispatcher.service").read_text()
    assert "LoadCredential=twilio-auth-token:" in text and "ReadWritePaths=/var/lib/vigie" in text
    assert "AUTH_TOKEN=" not in (DEPLOY / "systemd" / "dispatcher.env.example").read_text().split("#")[0]


def test_device_unit_uses_the_watchdog_and_gpio() -> None:
    text = (DEPLOY / "systemd" / "vigie-device.service").read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "gpio" in text
    assert "After=network-online.target" in text
