"""The help an operator or installer reads from ``vigie …`` and ``vigie-device`` is French.

Click's own framework words ("Usage", "Options", "[required]") are not ours and
are not checked; every description and option help we write is.
"""

from __future__ import annotations

import re
from typing import Any

import typer
import typer.main

from device.cli import run as device_run
from dispatcher.cli import app

# Words that only an English sentence has (checked as whole words, case-insensitive).
ENGLISH = re.compile(
    r"\b(the|of|and|is|with|from|to|its|every|this|without|must|in|on|for|or|an|by|run|shown|use|give|device|directory|new|random|listen|at|be|it|if|else|only|one|two|days|name|file|account|user|address|shipped|default)\b",
    re.I,
)


TYPER_OWN = {"install_completion", "show_completion"}  # typer's options, not ours


def _helps(command: Any, path: str) -> list[tuple[str, str]]:
    found = [(path, command.help or "")]
    found += [
        (f"{path} {p.name}", getattr(p, "help", None) or "")
        for p in command.params
        if p.name not in TYPER_OWN
    ]
    for name, sub in getattr(command, "commands", {}).items():  # a group (typer vendors its click)
        found += _helps(sub, f"{path} {name}")
    return found


def _prose(text: str) -> str:
    """The words of ``text`` without file names, options, settings and code (device.toml, --out...)."""
    return re.sub(r"\S*[/._=\-]\S*", " ", re.sub(r"`[^`]*`", " ", text))


def _device_command() -> Any:
    device_app = typer.Typer()
    device_app.command()(device_run)
    return typer.main.get_command(device_app)


def test_every_command_and_option_of_vigie_is_described_in_french() -> None:
    helps = _helps(typer.main.get_command(app), "vigie") + _helps(_device_command(), "vigie-device")
    assert len(helps) > 80  # the walk reached the sub-commands (provision, broker, user, visit)
    english = [(where, text) for where, text in helps if ENGLISH.search(_prose(text))]
    assert english == []
    commands = [where for where, text in helps if where.count(" ") == 1 and not text]
    assert commands == [] or all("--" in c for c in commands)  # every command says what it does
