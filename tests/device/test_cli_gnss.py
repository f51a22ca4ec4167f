"""``vigie-device --gnss``: only with --simulate, only LAT,LON; a clear French error otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from device.cli import run
from tests.device.conftest import write_device_config


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--gnss", "43.6109,3.8772"], "--gnss ne s'emploie qu'avec --simulate"),
        (["--simulate", "--gnss", "43.6109"], "--gnss attend LAT,LON"),
        (["--simulate", "--gnss", "nord,sud"], "--gnss attend LAT,LON"),
        (["--simulate", "--gnss", "91,3.87"], "latitude ou longitude hors limites"),
    ],
)
def test_a_wrong_gnss_option_is_refused_before_anything_starts(
    tmp_path: Path, options: list[str], said: str
) -> None:
    config = write_device_config(tmp_path / "pi", port=1)  # nothing listens: nothing may start
    app = typer.Typer()
    app.command()(run)
    result = CliRunner().invoke(app, ["--config", str(config), *options])
    assert result.exit_code == 2
    assert said in result.output
