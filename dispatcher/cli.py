"""``vigie``: the dispatcher and admin command line (typer)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from broker_config.cli import app as provision_app
from dispatcher.settings import AdminSettings, DispatcherSettings

S = TypeVar("S", bound=AdminSettings)

app = typer.Typer(help="Vigie dispatcher and administration.", no_args_is_help=True)
app.add_typer(provision_app, name="provision")


def _settings(kind: type[S]) -> S:
    try:
        return kind()
    except ValidationError as exc:
        fields = ", ".join("VIGIE_" + "__".join(str(p).upper() for p in e["loc"]) for e in exc.errors())
        typer.echo(f"invalid or missing settings: {fields}\n{exc}", err=True)
        raise typer.Exit(2) from None


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def serve(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run the dispatcher: MQTT ingest, escalation, webhooks, API."""
    from dispatcher.service import serve as run

    _logging(verbose)
    asyncio.run(run(_settings(DispatcherSettings)))


@app.command("load-directory")
def load_directory_command(
    path: Annotated[Path, typer.Argument(help="Directory YAML (see docs/directory.md)")],
    geocode: Annotated[bool, typer.Option(help="Geocode addresses without coordinates")] = True,
) -> None:
    """Validate a directory / SSJ convention file and load it into the store."""
    from dispatcher.directory import DirectoryError, load_directory
    from dispatcher.geocoding import AddressGeocoder
    from dispatcher.store import open_store

    _logging(False)
    settings = _settings(AdminSettings)

    async def run() -> None:
        store = await open_store(settings.database_url)
        try:
            if geocode:
                async with AddressGeocoder(settings.geocoder) as geocoder:
                    report = await load_directory(path, store, geocoder)
            else:
                report = await load_directory(path, store, None)
            typer.echo(str(report))
        finally:
            await store.close()

    try:
        asyncio.run(run())
    except DirectoryError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def main() -> None:
    app()
