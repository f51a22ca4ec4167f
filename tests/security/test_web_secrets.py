"""Finding 8 and the low "a settings error prints the first characters of the Twilio token".

Before the fix ``vigie serve`` started with an empty Twilio auth token, and a
webhook signed with the key "" was then accepted (a forged "1" silences an
alert); a settings error printed the start of the token.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from dispatcher.alerting.webhooks import TwilioSignatures
from dispatcher.secretcheck import generate_secret, secret_problem
from dispatcher.settings import TwilioSettings
from sandbox.demo_setup import DemoSecrets

pytestmark = pytest.mark.attacks

VIGIE = str(Path(sys.executable).with_name("vigie"))
SECRET = "Zq9-real-looking-token-8f3a1c77d2e4"


def _serve(tmp_path: Path, *, drop: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess[str]:
    """``vigie serve`` as systemd would run it, with only VIGIE_* settings from ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIGIE_")}
    (tmp_path / "vigie.db").touch()  # exists (the database check comes first), never opened
    base = {
        "VIGIE_DATABASE_URL": f"sqlite:///{tmp_path / 'vigie.db'}",
        "VIGIE_TWILIO__ACCOUNT_SID": "AC" + "5a" * 16,
        "VIGIE_TWILIO__FROM_NUMBER": "+33465710199",
        "VIGIE_TWILIO__PUBLIC_BASE_URL": "https://vigie.example.org",
        "VIGIE_FALLBACK__NAME": "Permanence Vigie",
        "VIGIE_FALLBACK__PHONE": "+33465710190",
        "VIGIE_HTTP_PORT": "1",  # never reached: the settings are refused first
    }
    settings = {k: v for k, v in (base | env).items() if k not in drop}
    return subprocess.run(
        [VIGIE, "serve"], env=clean | settings, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "token",
    ["", "   ", "changeme", "CHANGEME-CHANGEME-CHANGEME", "x" * 32, "$TWILIO_AUTH_TOKEN"],
)
def test_startup_refuses_an_empty_or_placeholder_auth_token(tmp_path: Path, token: str) -> None:
    result = _serve(tmp_path, VIGIE_TWILIO__AUTH_TOKEN=token)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "VIGIE_TWILIO__AUTH_TOKEN" in result.stderr
    assert "secret refusé" in result.stderr
    assert (tmp_path / "vigie.db").stat().st_size == 0  # refused before the store was opened


def test_a_settings_error_never_prints_any_part_of_the_secret(tmp_path: Path) -> None:
    # A missing Twilio setting: pydantic's message used to quote the whole Twilio section, token included.
    result = _serve(tmp_path, drop=("VIGIE_TWILIO__FROM_NUMBER",), VIGIE_TWILIO__AUTH_TOKEN=SECRET)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "VIGIE_TWILIO__FROM_NUMBER" in output
    for i in range(len(SECRET) - 3):
        assert SECRET[i : i + 4] not in output, "a fragment of the auth token was printed"
    # A refused secret is not quoted either.
    result = _serve(tmp_path, VIGIE_TWILIO__AUTH_TOKEN=SECRET, VIGIE_MQTT__PASSWORD="short-pw")
    assert result.returncode == 2 and "VIGIE_MQTT__PASSWORD" in result.stderr
    assert "short-pw" not in result.stdout + result.stderr


def test_no_webhook_verifier_with_an_empty_key_and_real_tokens_pass() -> None:
    with pytest.raises(ValueError, match="vide"):
        TwilioSignatures("")
    with pytest.raises(ValidationError) as refused:
        TwilioSettings(
            account_sid="AC" + "5a" * 16,
            auth_token=SecretStr(""),
            from_number="+33465710199",
            public_base_url="https://vigie.example.org",
        )
    assert "secret refusé" in str(refused.value)
    # Legitimate configurations still start: a Twilio-shaped token, the sandbox's, the benchmark's.
    for token in ("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "sandbox-auth-token-0123456789abcdef"):
        assert secret_problem(token) is None


def test_generated_secrets_are_never_taken_for_placeholders() -> None:
    """What the demo, dev broker and provisioning generate must always start (no flaky refusals)."""
    for _ in range(20_000):
        token = generate_secret()
        assert secret_problem(token) is None and len(token) >= 24, token
    demo = DemoSecrets()
    assert secret_problem(demo.dispatcher_password) is None and secret_problem(demo.twilio_auth_token) is None


def test_random_looking_secrets_pass_and_placeholders_do_not() -> None:
    # Drawn by token_urlsafe in CI (stop 11): its mixed-case "ToDO" start was once refused.
    for drawn in ("ToDOGy4HCIdV6EFdjRQSqKp_", "YourGy4HCIdV6EFdjRQSqKp_", "xXxXGy4HCIdV6EFdjRQSqKp_"):
        assert secret_problem(drawn) is None, drawn
    for example in (
        "TODO_set_me_in_production",
        "todo-change-this-value",
        "your_twilio_auth_token",
        "YOUR-TOKEN-GOES-HERE-1",
        "votre mot de passe ici",
        "xxxx-xxxx-xxxx-xxxx",
        "FIXME: real token later",
        "my-changeme-token-2026",
    ):
        assert secret_problem(example) is not None, example


def test_a_web_only_instance_on_sqlite_is_refused_at_start(tmp_path: Path) -> None:
    """Alone on SQLite, an instance taking no alert would leave every alert at the broker."""
    result = _serve(tmp_path, VIGIE_TWILIO__AUTH_TOKEN=SECRET, VIGIE_ROLE="web")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "VIGIE_ROLE : une instance de rôle web" in result.stderr and "PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "vigie.db").stat().st_size == 0  # refused before the store was opened
