"""CLI safety: a missing SQLite path is refused unless ``--create`` (a typo never makes a database)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker_config.runner import free_port
from dispatcher.cli import app

HERAULT = Path(__file__).resolve().parents[2] / "dispatcher" / "data" / "herault.yaml"


@pytest.mark.parametrize(
    "command",
    [
        ["load-directory", str(HERAULT), "--no-geocode"],
        ["serve"],
        ["purge"],
        ["load-communes", "--fetch", "34"],
        ["user", "add", "someone", "--role", "admin"],
        ["visit", "add", "--practitioner", "dr-claire-fabre", "--address", "1 rue de la Loge, Montpellier"],
    ],
)
def test_commands_refuse_a_missing_sqlite_database(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "typo" / "vigie.db"
    env = {
        "VIGIE_DATABASE_URL": f"sqlite:///{db}",
        "VIGIE_NEW_USER_PASSWORD": "a-long-password-1",
    }
    result = CliRunner().invoke(app, command, env=env)
    assert result.exit_code == 2, result.output
    assert f"la base SQLite {db} n'existe pas" in result.output and "--create" in result.output
    assert not db.exists() and not db.parent.exists()


def test_load_directory_creates_the_database_with_create(tmp_path: Path) -> None:
    db = tmp_path / "new" / "vigie.db"
    env = {"VIGIE_DATABASE_URL": f"sqlite:///{db}"}
    runner = CliRunner()
    created = runner.invoke(app, ["load-directory", str(HERAULT), "--no-geocode", "--create"], env=env)
    assert created.exit_code == 0, created.output
    assert db.is_file() and "création de la base SQLite" in created.output
    again = runner.invoke(app, ["load-directory", str(HERAULT), "--no-geocode"], env=env)  # exists now
    assert again.exit_code == 0, again.output


def test_an_invalid_account_is_refused_in_french_without_echoing_the_password(tmp_path: Path) -> None:
    env = {"VIGIE_DATABASE_URL": f"sqlite:///{tmp_path / 'vigie.db'}", "VIGIE_NEW_USER_PASSWORD": "pw-Zq9"}
    runner = CliRunner()
    assert (
        runner.invoke(app, ["load-directory", str(HERAULT), "--no-geocode", "--create"], env=env).exit_code
        == 0
    )
    refused = runner.invoke(app, ["user", "add", "A B", "--role", "boss"], env=env)
    assert refused.exit_code == 2
    assert refused.output.splitlines()[-3:] == [
        "  identifiant : format refusé (attendu : ^[a-z0-9._-]{3,64}$)",
        "  mot de passe : trop court (au moins 12 caractères)",
        "  --role : valeur inconnue (possibles : 'admin', 'operator' ou 'practitioner')",
    ]
    assert "pw-Zq9" not in refused.output and "pydantic" not in refused.output  # no value, no raw dump


def test_serve_without_its_broker_says_so_in_one_french_line(tmp_path: Path) -> None:
    """An operator who starts ``vigie serve`` with the broker down reads what to fix, not a traceback;
    each log line before it carries the Paris time and a French level."""
    env = {
        **os.environ,
        "VIGIE_DATABASE_URL": f"sqlite:///{tmp_path / 'vigie.db'}",
        "VIGIE_MQTT__HOST": "127.0.0.1",
        "VIGIE_MQTT__PORT": str(free_port()),  # nothing listens there
        "VIGIE_API__PORT": str(free_port()),
        "VIGIE_TWILIO__ACCOUNT_SID": "AC" + "0" * 32,
        "VIGIE_TWILIO__AUTH_TOKEN": "Zq8rT2vW6yB1nM4kP7sD",
        "VIGIE_TWILIO__PUBLIC_BASE_URL": "http://127.0.0.1:1",
        "VIGIE_TWILIO__FROM_NUMBER": "+33465710199",
        "VIGIE_FALLBACK__NAME": "Permanence",
        "VIGIE_FALLBACK__PHONE": "+33465710190",
    }
    vigie = Path(sys.executable).parent / "vigie"
    done = subprocess.run(
        [str(vigie), "serve", "--create"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("erreur : démarrage : le broker 127.0.0.1:")
    assert last.endswith("(compte, certificat ou ACL ?)")
    unreachable = [line for line in done.stderr.splitlines() if "injoignable" in line]
    assert unreachable, done.stderr
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\+0[12]:00 ATTENTION dispatcher\.alerting\.mqtt :"
        r" broker 127\.0\.0\.1:\d+ injoignable : .* ; nouvel essai après un délai croissant",
        unreachable[0],
    )
