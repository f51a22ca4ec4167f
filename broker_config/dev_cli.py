"""``vigie broker dev``: the development broker, with the project's config and accounts, on a chosen port.

Renders ``broker_config/dev/mosquitto.conf`` (loopback listener, password
file, the shipped ACL, persistence) into a work directory, creates the
accounts (the dispatcher's, and one per device bundle provisioned with
``--dev-broker``), prints what the dispatcher needs, and runs Mosquitto in
the foreground until Ctrl-C. Production brokers use TLS instead:
docs/deploy-server.md.
"""

from __future__ import annotations

import secrets
import signal
import threading
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from broker_config.runner import DISPATCHER_USER, BrokerError, DevBroker
from dispatcher.secretcheck import generate_secret

app = typer.Typer(
    help="Le broker MQTT de développement (boucle locale, comptes à mot de passe).", no_args_is_help=True
)


def bundle_account(bundle: Path) -> tuple[str, str]:
    """(username, password) of a bundle made by ``vigie provision device --dev-broker``."""
    try:
        config = tomllib.loads((bundle / "device.toml").read_text(encoding="utf-8"))
        mqtt = config["mqtt"]
        username = str(mqtt.get("username") or config["device"]["id"])
        password = (bundle / str(mqtt["password_file"])).read_text(encoding="utf-8").strip()
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise typer.BadParameter(
            f"{bundle} : pas un bundle --dev-broker (device.toml avec [mqtt] password_file) : {exc}"
        ) from None
    return username, password


@app.command("dev", help="Lancer le broker de développement jusqu'à Ctrl-C.")
def dev(
    port: Annotated[int, typer.Option(help="Port d'écoute en boucle locale")] = 1883,
    workdir: Annotated[
        Path, typer.Option(help="Où vont la config, les mots de passe, les données et le journal")
    ] = Path("var/dev-broker"),
    device_bundle: Annotated[
        list[Path] | None,
        typer.Option("--device-bundle", help="Bundle de `vigie provision device --dev-broker` (répétable)"),
    ] = None,
    account: Annotated[
        list[str] | None,
        typer.Option("--account", help="Compte de balise en plus, mot de passe tiré et affiché (répétable)"),
    ] = None,
    dispatcher_password: Annotated[
        str | None,
        typer.Option(
            envvar="VIGIE_MQTT__PASSWORD",
            help="Mot de passe du dispatcher [défaut : un nouveau, tiré au hasard]",
        ),
    ] = None,
) -> None:
    """Run the development broker until Ctrl-C."""
    broker = DevBroker(workdir, port=port)
    broker.add_account(DISPATCHER_USER, dispatcher_password or generate_secret())
    for bundle in device_bundle or []:
        broker.add_account(*bundle_account(bundle))
    for name in account or []:
        broker.add_account(name, secrets.token_urlsafe(12))
    try:
        broker.start()
    except BrokerError as exc:
        typer.echo(f"erreur : {exc} (journal : {broker.log_file})", err=True)
        raise typer.Exit(1) from None
    env = workdir / "dispatcher.env"
    env.write_text(
        f"VIGIE_MQTT__HOST=127.0.0.1\nVIGIE_MQTT__PORT={port}\n"
        f"VIGIE_MQTT__USERNAME={DISPATCHER_USER}\nVIGIE_MQTT__PASSWORD={broker.accounts[DISPATCHER_USER]}\n"
    )
    env.chmod(0o600)
    _print_ready(broker, env, device_bundle or [], account or [])
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            if broker.proc is not None and broker.proc.poll() is not None:
                typer.echo(f"erreur : mosquitto s'est arrêté (journal : {broker.log_file})", err=True)
                raise typer.Exit(1)
    finally:
        broker.stop()


def _print_ready(broker: DevBroker, env: Path, bundles: list[Path], extra: list[str]) -> None:
    conf = broker.workdir / "mosquitto.conf"
    typer.echo(f"broker de développement sur 127.0.0.1:{broker.port} (config {conf})")
    typer.echo(f"  dispatcher : compte {DISPATCHER_USER}, réglages dans {env} (set -a; . {env}; set +a)")
    for bundle in bundles:
        typer.echo(f"  balise : compte {bundle_account(bundle)[0]} (mot de passe lu dans {bundle})")
    for name in extra:
        typer.echo(f"  compte {name} / mot de passe {broker.accounts[name]}")
    typer.echo("  Ctrl-C pour arrêter")
