"""CLI safety: a missing SQLite path is refused unless ``--create`` (a typo never makes a database)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

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
