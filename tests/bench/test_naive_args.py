"""The naive baseline starts whatever the generated broker password looks like."""

from __future__ import annotations

import pytest

from bench.naive import PASSWORD_VARIABLE, parse_args

ARGV = ["--port", "1883", "--directory-db", "v.db", "--db", "n.db", "--sandbox", "http://x", "--done", "d"]


@pytest.mark.parametrize("password", ["-Zx3_9q", "--looks-like-an-option", "plain"])
def test_password_from_the_environment_is_taken_verbatim(password: str) -> None:
    # token_urlsafe starts with "-" one time in 64: on argv argparse refused it
    # and the benchmark smoke test failed in CI.
    args = parse_args(ARGV, {PASSWORD_VARIABLE: password})
    assert args.password == password
    assert args.port == 1883


def test_missing_password_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(ARGV, {})
    assert exit_info.value.code == 2
    assert PASSWORD_VARIABLE in capsys.readouterr().err
