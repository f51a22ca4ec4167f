"""``vigie``: the dispatcher and admin command line (typer)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import typer
import uvloop
from pydantic import ValidationError

from broker_config.cli import app as provision_app
from broker_config.dev_cli import app as broker_app
from dispatcher.directory.texts import validation_message
from dispatcher.settings import AdminSettings, DispatcherSettings, RetentionSettings
from protocol import logformat

S = TypeVar("S", bound=AdminSettings)
ROLE_NAMES = {"operator": "opérateur", "admin": "administrateur", "practitioner": "praticien(ne)"}
PARIS = ZoneInfo("Europe/Paris")
# UserCreate's fields as the command line names them.
USER_FIELDS = {
    "username": "identifiant",
    "password": "mot de passe",
    "role": "--role",
    "display_name": "--name",
    "practitioner_id": "--practitioner",
    "conventions": "--convention",
}

app = typer.Typer(help="Dispatcher Vigie et administration.", no_args_is_help=True)
app.add_typer(provision_app, name="provision")
app.add_typer(broker_app, name="broker")
user_app = typer.Typer(help="Comptes de l'API REST et de la console.", no_args_is_help=True)
visit_app = typer.Typer(help="Visites à domicile.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(visit_app, name="visit")


def _settings(kind: type[S]) -> S:
    try:
        return kind()
    except ValidationError as exc:
        # Never the values: a refused setting may be a secret (issue 13, "prints the token").
        problems = [
            "  VIGIE_" + "__".join(str(p).upper() for p in e["loc"]) + " : " + why_refused(e)
            for e in exc.errors(include_input=False, include_url=False)
        ]
        typer.echo("réglages invalides ou manquants :\n" + "\n".join(problems), err=True)
        raise typer.Exit(2) from None


def why_refused(error: Any) -> str:
    """One pydantic error in the operator's words, never quoting the refused value (it may be a secret)."""
    return validation_message(error)


CreateOption = Annotated[
    bool,
    typer.Option(
        "--create",
        help="Créer la base SQLite si elle n'existe pas (sans l'option, un fichier absent est une erreur)",
    ),
]


def _require_database(database_url: str, create: bool) -> None:
    """Refuse a SQLite path that does not exist, unless ``--create``.

    Opening a SQLite file creates it: a typo in VIGIE_DATABASE_URL would
    otherwise give an empty directory that routes nobody, silently.
    """
    from dispatcher.store import is_postgres, sqlite_path

    if is_postgres(database_url) or not database_url.startswith("sqlite:///"):
        return  # PostgreSQL databases are created by the DBA; a bad URL fails on its own
    path = sqlite_path(database_url)
    if path.is_file():
        return
    if not create:
        typer.echo(
            f"erreur : la base SQLite {path} n'existe pas (VIGIE_DATABASE_URL={database_url}) ; "
            "vérifiez le chemin, ou ajoutez --create pour la créer",
            err=True,
        )
        raise typer.Exit(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    typer.echo(f"création de la base SQLite {path}", err=True)


def _logging(verbose: bool) -> None:
    logformat.configure(logging.DEBUG if verbose else logging.INFO, sys.stderr)


@app.command(help="Lancer le dispatcher : réception MQTT, escalade, webhooks, API.")
def serve(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False, create: CreateOption = False
) -> None:
    """Run the dispatcher: MQTT ingest, escalation, webhooks, API."""
    from dispatcher.alerting.mqtt import MqttUnavailable
    from dispatcher.fleet.instance_claim import InstanceIdInUse
    from dispatcher.service import serve as run

    _logging(verbose)
    # The database first: a typo in its path is the likelier mistake, and names itself.
    _require_database(_settings(AdminSettings).database_url, create)
    try:
        uvloop.run(run(_settings(DispatcherSettings)))
    except (MqttUnavailable, InstanceIdInUse) as exc:  # a setting or the broker to fix: one line
        typer.echo(f"erreur : {exc}", err=True)
        raise typer.Exit(1) from None


@app.command(
    "load-directory", help="Valider un annuaire / fichier de convention SSJ et le charger dans la base."
)
def load_directory_command(
    path: Annotated[Path, typer.Argument(help="Annuaire YAML (voir docs/directory.md)")],
    geocode: Annotated[bool, typer.Option(help="Géocoder les adresses sans coordonnées")] = True,
    create: CreateOption = False,
) -> None:
    """Validate a directory / SSJ convention file and load it into the store."""
    from dispatcher.directory.geocoding import AddressGeocoder
    from dispatcher.directory.loader import DirectoryError, load_directory
    from dispatcher.store import open_store

    _logging(False)
    settings = _settings(AdminSettings)
    _require_database(settings.database_url, create)

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


@app.command(
    "load-communes",
    help=(
        "Charger les contours des communes (position GPS -> code INSEE, hors ligne) : tout ou rien,"
        " par département."
    ),
)
def load_communes_command(
    files: Annotated[
        list[Path] | None, typer.Argument(help="FeatureCollection(s) GeoJSON (properties.code, .nom)")
    ] = None,
    fetch: Annotated[
        list[str] | None,
        typer.Option(help="Département à télécharger depuis VIGIE_GEO_API__BASE_URL (répétable)"),
    ] = None,
    departement: Annotated[
        list[str] | None,
        typer.Option(help="Départements couverts par FICHIER (répétable) ; défaut : ceux des conventions"),
    ] = None,
    create: CreateOption = False,
) -> None:
    """Load commune contours (GPS fix -> INSEE code, offline): all or nothing, per département."""
    from dispatcher.directory.communes import CommuneLoadError, fetch_departement, load_communes
    from dispatcher.store import open_store

    if not files and not fetch:
        raise typer.BadParameter("donnez un FICHIER ou --fetch DÉPARTEMENT")
    settings = _settings(AdminSettings)
    _require_database(settings.database_url, create)

    async def run() -> None:
        store = await open_store(settings.database_url)
        try:
            sources = [(str(f), await asyncio.to_thread(_read_bytes, f)) for f in files or []]
            sources += [await fetch_departement(settings.geo_api, d) for d in fetch or []]
            covered = set(departement or []) | set(fetch or [])
            if files and not departement:
                covered |= {c.departement for c in await store.list_conventions()}
            if not covered:
                source = str(files[0]) if files else "(aucune source)"
                raise CommuneLoadError(source, "ni --departement, ni convention chargée")
            total = await load_communes(store, sources, covered)
            typer.echo(f"communes : {total} enregistrées (départements {', '.join(sorted(covered))})")
        finally:
            await store.close()

    try:
        asyncio.run(run())
    except CommuneLoadError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def _read_bytes(path: Path) -> bytes:
    from dispatcher.directory.communes import CommuneLoadError

    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommuneLoadError(str(path), f"fichier illisible : {exc.strerror or exc}") from None


@user_app.command("add", help="Créer un compte (mot de passe demandé, masqué, ou lu dans l'environnement).")
def user_add(
    username: Annotated[
        str, typer.Argument(help="Identifiant de connexion : 3 à 64 caractères a-z, 0-9, . _ -")
    ],
    role: Annotated[
        str, typer.Option(help="admin (administrateur), operator (opérateur) ou practitioner (praticien)")
    ],
    display_name: Annotated[
        str, typer.Option("--name", help="Nom affiché dans la console et les historiques")
    ] = "",
    convention: Annotated[
        list[str] | None, typer.Option(help="Convention à laquelle l'opérateur est limité (répétable)")
    ] = None,
    practitioner: Annotated[
        str | None, typer.Option(help="Identifiant du praticien d'un compte praticien")
    ] = None,
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="VIGIE_NEW_USER_PASSWORD",
            help="Demandé (masqué) ou lu dans VIGIE_NEW_USER_PASSWORD ; jamais en argument",
        ),
    ] = "",
    create: CreateOption = False,
) -> None:
    """Create an account (the password is prompted, hidden, or read from the environment)."""
    from pydantic import ValidationError as Invalid

    from dispatcher.store import open_store
    from dispatcher.store.base import AlreadyExists, NewUser
    from dispatcher.web.api.schemas import UserCreate
    from dispatcher.web.auth import hash_password

    settings = _settings(AdminSettings)
    _require_database(settings.database_url, create)
    try:
        spec = UserCreate(
            username=username,
            display_name=display_name or username,
            password=password,
            role=role,  # type: ignore[arg-type]
            practitioner_id=practitioner,
            conventions=convention or [],
        )
    except Invalid as exc:
        problems = [
            f"  {USER_FIELDS.get(str(e['loc'][0]), e['loc'][0]) if e['loc'] else '?'} : {why_refused(e)}"
            for e in exc.errors(include_input=False, include_url=False)
        ]
        typer.echo("compte invalide :\n" + "\n".join(problems), err=True)
        raise typer.Exit(2) from None

    async def run() -> None:
        store = await open_store(settings.database_url)
        try:
            known = {c.id for c in await store.list_conventions()}
            if unknown := sorted(set(spec.conventions) - known):
                raise typer.BadParameter(f"conventions inconnues : {', '.join(unknown)}")
            if spec.practitioner_id:
                await store.get_practitioner(spec.practitioner_id)
            record = await store.add_user(
                NewUser(
                    username=spec.username,
                    display_name=spec.display_name,
                    password_hash=hash_password(spec.password),
                    role=spec.role.value,
                    practitioner_id=spec.practitioner_id,
                    conventions=tuple(spec.conventions),
                )
            )
            await store.append_audit(
                action="config.change", user_id=None, username="cli", target_kind="user",
                target_id=str(record.id), detail={"change": "create", "role": record.role},
            )  # fmt: skip
            role = ROLE_NAMES.get(record.role, record.role)
            typer.echo(f"compte {role} {record.username} créé (id {record.id})")
        finally:
            await store.close()

    try:
        asyncio.run(run())
    except AlreadyExists:
        typer.echo(f"le compte {username} existe déjà", err=True)
        raise typer.Exit(1) from None


@app.command(
    help=(
        "Effacer les données de localisation plus anciennes que la durée de conservation (RGPD) ; "
        "le service le fait aussi toutes les heures."
    )
)
def purge(
    days: Annotated[
        int | None, typer.Option(help="Remplace VIGIE_LOCATION_RETENTION_DAYS pour cette fois")
    ] = None,
    create: CreateOption = False,
) -> None:
    """Erase location data older than the retention period (RGPD); the service also does it hourly."""
    from dispatcher.retention import purge as run_purge
    from dispatcher.retention import summary
    from dispatcher.store import open_store

    settings = _settings(RetentionSettings)
    _require_database(settings.database_url, create)

    async def run() -> None:
        store = await open_store(settings.database_url)
        try:
            report = await run_purge(
                store,
                days or settings.location_retention_days,
                inbound_sid_days=settings.inbound_sid_retention_days,
            )
            typer.echo(f"purge : {summary(report)}")
        finally:
            await store.close()

    asyncio.run(run())


@visit_app.command(
    "add",
    help=(
        "Déclarer une visite à domicile qui commence maintenant (un dispatcher en marche la prend "
        "en compte en quelques secondes)."
    ),
)
def visit_add(
    practitioner: Annotated[str, typer.Option(help="Identifiant du praticien")],
    address: Annotated[str, typer.Option(help="Adresse postale complète, géocodée avec la BAN")],
    hours: Annotated[float, typer.Option(help="Durée prévue à partir de maintenant, en heures")] = 1.0,
    floor: Annotated[str | None, typer.Option(help="Étage")] = None,
    access_code: Annotated[str | None, typer.Option(help="Digicode")] = None,
    details: Annotated[str | None, typer.Option(help="Bâtiment, interphone...")] = None,
    create: CreateOption = False,
) -> None:
    """Declare a home visit starting now (a running dispatcher picks it up within seconds)."""
    import secrets
    from datetime import UTC, datetime, timedelta

    from dispatcher.directory.communes import CommuneIndex
    from dispatcher.directory.geocoding import AddressGeocoder
    from dispatcher.domain import Address, HomeVisit
    from dispatcher.store import open_store
    from dispatcher.visits.place import UnroutableVisit, place_visit_address

    settings = _settings(AdminSettings)
    _require_database(settings.database_url, create)

    async def run() -> None:
        store = await open_store(settings.database_url)
        try:
            place = Address(label=address, floor=floor, access_code=access_code, details=details)
            communes = await asyncio.to_thread(CommuneIndex, await store.list_communes())
            async with AddressGeocoder(settings.geocoder) as geocoder:
                place, warning = await place_visit_address(place, geocoder, communes)
            if warning:
                typer.echo(f"attention : {warning}", err=True)
            now = datetime.now(UTC)
            visit = HomeVisit(
                id=f"visit-{secrets.token_hex(6)}",
                practitioner_id=practitioner,
                address=place,
                starts_at=now,
                ends_at=now + timedelta(hours=hours),
            )
            await store.upsert_visit(visit)
        finally:
            await store.close()
        until = visit.ends_at.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")
        typer.echo(f"visite {visit.id} déclarée jusqu'au {until} (heure de Paris)")

    try:
        asyncio.run(run())
    except UnroutableVisit as exc:
        typer.echo(f"visite refusée : {exc.reason}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    app()
