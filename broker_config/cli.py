"""``vigie provision ...``: the PKI and device provisioning commands.

Mounted by the main CLI (``app.add_typer(provision.app, name="provision")``).
Every command prints what it wrote, never a key, secret or PIN.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar
from zoneinfo import ZoneInfo

import typer

from broker_config import dynsec, pins, provision
from broker_config.provision import BrokerAccount, DeviceSpec, ProvisionError
from broker_config.tls_runner import TlsFiles, prod_values, render_prod_config
from dispatcher.domain import DeviceKind
from dispatcher.fleet.dynsec_commands import MONITOR_USER
from dispatcher.secretcheck import generate_secret
from dispatcher.store.base import DirectoryStore, StoreError

PARIS = ZoneInfo("Europe/Paris")  # every date an installer reads

app = typer.Typer(help="Certificats, bundles des balises et révocation.", no_args_is_help=True)

T = TypeVar("T")
# As the console says them (dispatcher/web/console/static/labels.js).
KIND_LABELS = {"button": "bouton fixe", "pocket": "bouton de poche", "bracelet": "bracelet"}
STATE_LABELS = {"active": "active", "revoked": "révoquée"}

CaDir = Annotated[
    Path,
    typer.Option(
        "--ca-dir", envvar="VIGIE_CA_DIR", help="Dossier de l'AC (ca.pem, ca.key, crl.pem, issued/)"
    ),
]
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db", help="Base SQLite du dispatcher [défaut : VIGIE_DATABASE_URL, SQLite ou PostgreSQL]"
    ),
]
Days = Annotated[int, typer.Option("--days", min=1, help="Validité du certificat, en jours")]
CrlDays = Annotated[
    int, typer.Option("--crl-days", min=1, help="nextUpdate de la LCR, en jours à partir de maintenant")
]
AdminPort = Annotated[
    int | None,
    typer.Option(
        "--broker-admin-port",
        envvar="VIGIE_BROKER_ADMIN_PORT",
        help="Écoute en boucle locale du broker, pour y enregistrer la balise (compte vigie-admin, "
        "mot de passe dans VIGIE_BROKER_ADMIN_PASSWORD)",
    ),
]
AdminHost = Annotated[str, typer.Option("--broker-admin-host", help="Hôte de cette écoute")]
ADMIN_PASSWORD_ENV = "VIGIE_BROKER_ADMIN_PASSWORD"


def _fail(message: str) -> typer.Exit:
    typer.secho(f"erreur : {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


def database_path(db: Path | None) -> Path:
    """``--db``, else the path in ``VIGIE_DATABASE_URL`` (``sqlite:///rel`` or ``sqlite:////abs``)."""
    if db is not None:
        path = db
    else:
        url = os.environ.get("VIGIE_DATABASE_URL", "")
        if not url:
            raise ProvisionError("donnez --db CHEMIN ou VIGIE_DATABASE_URL=sqlite:///CHEMIN")
        if not url.startswith("sqlite:///"):
            raise ProvisionError(f"schéma d'URL de base non pris en charge : {url.split(':', 1)[0]!r}")
        path = Path(url.removeprefix("sqlite:///"))
    # Opening a missing file would silently create an empty directory database.
    if not path.is_file():
        raise ProvisionError(
            f"la base {path} n'existe pas (chargez d'abord l'annuaire : vigie load-directory … --create)"
        )
    return path


def _with_store(db: Path | None, work: Callable[[DirectoryStore], Awaitable[T]]) -> T:
    """Run ``work`` on the dispatcher's store: ``--db`` (SQLite) or ``VIGIE_DATABASE_URL``.

    A PostgreSQL URL is opened as is (the database is created by the DBA, the
    schema by the dispatcher); a SQLite file must already exist.
    """
    from dispatcher.store import is_postgres, open_store  # the dispatcher's store, only needed here

    url = os.environ.get("VIGIE_DATABASE_URL", "")
    if db is not None or not is_postgres(url):
        url = f"sqlite:///{database_path(db)}"

    async def run() -> T:
        try:
            store = await open_store(url)
        except StoreError as exc:
            raise ProvisionError(f"impossible d'ouvrir la base : {exc}") from None
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _broker_admin(host: str, port: int | None) -> dynsec.DynsecAdmin | None:
    """The broker's dynsec admin when a port is given; its password comes from the environment only."""
    if port is None:
        return None
    password = os.environ.get(ADMIN_PASSWORD_ENV, "")
    if not password:
        raise ProvisionError(f"{ADMIN_PASSWORD_ENV} est vide : le mot de passe du compte {dynsec.ADMIN_USER}")
    return dynsec.DynsecAdmin(host, port, password)


def _run(action: Callable[[], T]) -> T:
    try:
        return action()
    except ProvisionError as exc:
        raise _fail(str(exc)) from None


@app.command("init-ca", help="Créer l'AC (ou importer une AC existante) et une LCR vide.")
def init_ca(
    ca_dir: CaDir = Path("pki"),
    name: Annotated[str, typer.Option(help="Nom commun (CN) de l'AC")] = "Vigie device CA",
    days: Days = 3650,
    crl_days: CrlDays = provision.DEFAULT_CRL_DAYS,
    import_cert: Annotated[
        Path | None, typer.Option(help="Utiliser ce certificat d'AC existant (PEM)")
    ] = None,
    import_key: Annotated[Path | None, typer.Option(help="... et sa clé privée EC (PEM)")] = None,
) -> None:
    """Create the CA (or import an existing one) and an empty CRL."""
    ca = _run(
        lambda: provision.init_ca(
            ca_dir,
            name=name,
            validity_days=days,
            crl_days=crl_days,
            import_cert=import_cert,
            import_key=import_key,
        )
    )
    typer.echo(
        f"AC {ca.cert.subject.rfc4514_string()} dans {ca_dir} (clé en mode 0600) ; LCR : {ca_dir / 'crl.pem'}"
    )


@app.command("server-cert", help="Délivrer le certificat TLS serveur du broker.")
def server_cert(
    host: Annotated[list[str], typer.Option("--host", help="Nom DNS ou IP du broker (répétable)")],
    out: Annotated[Path, typer.Option("--out", help="Dossier de server.pem, server.key, ca.pem")],
    ca_dir: CaDir = Path("pki"),
    days: Days = 825,
    force: Annotated[bool, typer.Option(help="Remplacer un certificat serveur existant")] = False,
) -> None:
    """Issue the broker's TLS server certificate."""
    files = _run(
        lambda: provision.issue_server_cert(ca_dir, out, hosts=host, validity_days=days, overwrite=force)
    )
    typer.echo(f"écrits : {files.cert}, {files.key}, {files.ca}")


@app.command(
    "dispatcher-cert",
    help=(
        "Délivrer le certificat client d'une instance du dispatcher (un par instance : le CN est "
        "son client id)."
    ),
)
def dispatcher_cert(
    out: Annotated[Path, typer.Option("--out", help="Dossier de dispatcher.pem, dispatcher.key, ca.pem")],
    ca_dir: CaDir = Path("pki"),
    days: Days = 825,
    force: Annotated[bool, typer.Option(help="Remplacer un certificat de dispatcher existant")] = False,
    instance: Annotated[
        int,
        typer.Option(
            "--instance",
            min=1,
            help="Numéro d'instance du dispatcher : 1 = CN vigie-dispatcher, n >= 2 = vigie-dispatcher-n",
        ),
    ] = 1,
) -> None:
    """Issue a dispatcher instance's client certificate (one per instance: the CN is its client id)."""
    files = _run(
        lambda: provision.issue_dispatcher_cert(
            ca_dir, out, validity_days=days, overwrite=force, instance=instance
        )
    )
    typer.echo(f"écrits : {files.cert}, {files.key}, {files.ca} (CN {provision.dispatcher_cn(instance)})")


@app.command(
    "device",
    help=(
        "Délivrer le certificat et les secrets d'une balise, écrire son bundle, l'enregistrer. Les "
        "codes PIN d'annulation et de contrainte sont demandés (ou tirés avec --generate-pins) ; le"
        " serveur n'en garde que l'empreinte argon2, la balise les reçoit dans son device.toml."
    ),
)
def device(
    device_id: Annotated[
        str, typer.Argument(help="Identifiant de la balise : minuscules, chiffres et tirets (a-z, 0-9, -)")
    ],
    kind: Annotated[
        DeviceKind, typer.Option("--kind", help="button (bouton fixe), pocket (bouton de poche) ou bracelet")
    ],
    broker_host: Annotated[
        str, typer.Option("--broker-host", help="Nom d'hôte auquel la balise se connecte")
    ],
    out: Annotated[Path, typer.Option("--out", help="Dossier du bundle à créer (ne doit pas exister)")],
    broker_port: Annotated[int, typer.Option("--broker-port")] = 8883,
    practitioner: Annotated[
        str | None, typer.Option("--practitioner", help="Identifiant du praticien")
    ] = None,
    site: Annotated[str | None, typer.Option("--site", help="Identifiant du site")] = None,
    label: Annotated[str, typer.Option(help="Texte libre montré aux opérateurs")] = "",
    cancel_pin: Annotated[
        str | None,
        typer.Option(
            envvar="VIGIE_CANCEL_PIN", help="Code PIN d'annulation (sinon demandé, masqué, deux fois)"
        ),
    ] = None,
    duress_pin: Annotated[
        str | None,
        typer.Option(
            envvar="VIGIE_DURESS_PIN", help="Code PIN de contrainte (sinon demandé, masqué, deux fois)"
        ),
    ] = None,
    generate_pins: Annotated[
        bool,
        typer.Option("--generate-pins", help="Tirer les deux codes PIN au hasard et les afficher une fois"),
    ] = False,
    gnss: Annotated[bool, typer.Option("--gnss/--no-gnss", help="La balise a son propre GNSS")] = False,
    state_dir: Annotated[str, typer.Option(help="Dossier d'état sur la balise")] = "/var/lib/vigie-device",
    dev_broker: Annotated[
        bool,
        typer.Option(
            "--dev-broker",
            help="Pour le broker de développement : un compte à mot de passe (mqtt.password) au lieu de TLS",
        ),
    ] = False,
    days: Days = provision.DEFAULT_DEVICE_DAYS,
    ca_dir: CaDir = Path("pki"),
    db: DbOption = None,
    admin_port: AdminPort = None,
    admin_host: AdminHost = "127.0.0.1",
) -> None:
    """Issue a device's certificate and secrets, write its bundle, register it.

    The cancel and duress PINs are asked (or drawn with --generate-pins); the server keeps only
    their argon2 hashes (on the practitioner, or the site for a desk button of a site only), the
    device gets them in its device.toml.
    """
    chosen = _run(lambda: _choose_pins(cancel_pin, duress_pin, generate=generate_pins))
    spec = DeviceSpec(
        id=device_id,
        kind=kind,
        broker_host=broker_host,
        broker_port=broker_port,
        practitioner_id=practitioner,
        site_id=site,
        label=label,
        cancel_pin=chosen.cancel,
        duress_pin=chosen.duress,
        gnss=gnss,
        state_dir=state_dir,
        validity_days=days,
        dev_broker_password=generate_secret() if dev_broker else None,
    )
    _run(lambda: provision.validate_spec(spec))
    broker = _run(lambda: _broker_admin(admin_host, admin_port))
    bundle = _run(
        lambda: _with_store(
            db, lambda store: provision.provision_device(store, ca_dir, spec, out, broker=broker)
        )
    )
    typer.echo(
        f"balise {device_id} enregistrée ; bundle {bundle} : device.toml, device.pem/.key, hmac.key, ca.pem"
    )
    if broker is not None:
        typer.echo(f"broker : {device_id} ne peut plus s'abonner aux groupes partagés du dispatcher")
    elif not dev_broker:
        typer.secho(
            f"attention : balise non enregistrée auprès du broker (--broker-admin-port) ; faites-le avant "
            f"sa mise en service : vigie provision register {device_id}",
            err=True,
            fg=typer.colors.YELLOW,
        )
    if dev_broker:
        typer.echo(
            f"broker de développement : compte {device_id} (mot de passe dans {bundle / 'mqtt.password'}) ; "
            f"à donner au broker avec `vigie broker dev --device-bundle {bundle}`"
        )
    if generate_pins:
        typer.echo(
            f"codes PIN, affichés une seule fois (le serveur n'en garde que l'empreinte) : annulation "
            f"{chosen.cancel}, contrainte {chosen.duress}. À remettre en main propre au praticien."
        )


def _choose_pins(cancel: str | None, duress: str | None, *, generate: bool) -> pins.Pins:
    """The PINs given as options, else asked (hidden, twice), or drawn at random."""
    if generate:
        if cancel is not None or duress is not None:
            raise ProvisionError("--generate-pins ou les codes PIN, pas les deux")
        return pins.generate()
    try:
        cancel = _given_or_asked(
            cancel, pins.CANCEL, "Code PIN d'annulation (4 à 8 chiffres : arrête l'alerte)"
        )
        duress = _given_or_asked(
            duress, pins.DURESS, "Code PIN de contrainte (4 à 8 chiffres : semble annuler, n'annule pas)"
        )
        return pins.Pins(cancel, duress)
    except pins.PinError as exc:
        raise ProvisionError(str(exc)) from None


def _given_or_asked(pin: str | None, what: str, label: str) -> str:
    pin = pin if pin is not None else _ask_pin(label)
    pins.check_format(pin, what)  # at once: not after the next question
    return pin


def _ask_pin(label: str) -> str:
    try:
        while True:  # click's own confirmation speaks English: asked twice here
            answer: str = typer.prompt(label, hide_input=True)
            if typer.prompt("Confirmez le code PIN", hide_input=True) == answer:
                break
            typer.echo("erreur : les deux saisies diffèrent, recommencez", err=True)
    except typer.Abort:  # end of input: a script that gave no PIN
        raise ProvisionError(
            "aucun code PIN donné : répondez aux questions, ou passez --cancel-pin et --duress-pin "
            "(VIGIE_CANCEL_PIN, VIGIE_DURESS_PIN), ou --generate-pins"
        ) from None
    return answer.strip()


@app.command(
    "revoke", help="Ajouter les certificats de la balise à la LCR et la marquer révoquée dans la base."
)
def revoke(
    device_id: Annotated[str, typer.Argument(help="Identifiant de la balise")],
    ca_dir: CaDir = Path("pki"),
    db: DbOption = None,
    crl_days: CrlDays = provision.DEFAULT_CRL_DAYS,
    admin_port: AdminPort = None,
    admin_host: AdminHost = "127.0.0.1",
) -> None:
    """Add the device's certificates to the CRL and mark it revoked in the store."""
    broker = _run(lambda: _broker_admin(admin_host, admin_port))
    done = _run(
        lambda: _with_store(
            db, lambda store: provision.revoke(store, ca_dir, device_id, crl_days=crl_days, broker=broker)
        )
    )
    serials = ", ".join(f"{s:x}" for s in done.serials) or "aucun"
    typer.echo(
        f"balise {device_id} révoquée : certificat(s) n° {serials} ; "
        f"base mise à jour : {'oui' if done.in_store else 'non'}"
    )
    if broker is not None:
        typer.echo(f"broker : client {device_id} désactivé, toute publication, lecture et abonnement refusés")
    typer.echo(
        "ensuite : rechargez le broker (systemctl reload mosquitto), puis `vigie provision evict` la balise"
    )


@app.command(
    "register",
    help="Enregistrer des balises auprès du broker (refus des groupes partagés, client id imposé) ; "
    "sans identifiant : toutes les balises actives. Sans effet sur une balise déjà enregistrée.",
)
def register(
    device_ids: Annotated[list[str] | None, typer.Argument(help="Identifiants [défaut : toutes]")] = None,
    db: DbOption = None,
    admin_port: AdminPort = 1883,
    admin_host: AdminHost = "127.0.0.1",
) -> None:
    """Register devices with the broker's dynamic-security plugin (all active ones by default)."""
    broker = _run(lambda: _broker_admin(admin_host, admin_port))
    assert broker is not None  # a port is always given here
    ids = _run(
        lambda: _with_store(db, lambda store: provision.register_devices(store, broker, device_ids or []))
    )
    typer.echo(f"{len(ids)} balise(s) enregistrée(s) auprès du broker : {', '.join(ids) or 'aucune'}")


@app.command(
    "evict",
    help="Couper la connexion au broker d'une balise et supprimer sa session (après revoke + rechargement).",
)
def evict(
    device_id: Annotated[str, typer.Argument(help="Identifiant de la balise (= son client id MQTT)")],
    username: Annotated[
        str, typer.Option(help="Compte du broker en boucle locale, libre de son client id")
    ] = dynsec.ADMIN_USER,
    password: Annotated[
        str,
        typer.Option(envvar="VIGIE_BROKER_PASSWORD", prompt=True, hide_input=True, help="Son mot de passe"),
    ] = "",
    host: Annotated[str, typer.Option(help="Hôte de l'écoute en boucle locale")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port de l'écoute en boucle locale")] = 1883,
) -> None:
    """Cut a device's live broker connection and drop its session (after revoke + reload)."""
    _run(lambda: provision.evict(BrokerAccount(host, port, username, password), device_id))
    typer.echo(f"connexion et session de {device_id} coupées")


@app.command(
    "refresh-crl",
    help="Re-signer la LCR avec un nouveau nextUpdate (passé ce délai, le broker refuse tout le monde).",
)
def refresh_crl(ca_dir: CaDir = Path("pki"), crl_days: CrlDays = provision.DEFAULT_CRL_DAYS) -> None:
    """Re-sign the CRL with a new nextUpdate (the broker refuses everyone once it passes)."""
    next_update = _run(lambda: provision.refresh_crl(ca_dir, crl_days=crl_days))
    until = next_update.astimezone(PARIS)
    typer.echo(
        f"LCR valable jusqu'au {until:%d/%m/%Y %H:%M} (heure de Paris) ; rechargez le broker pour l'utiliser"
    )


@app.command("list", help="Les balises, leur rattachement, leur état et leur certificat (sans secret).")
def list_devices(ca_dir: CaDir = Path("pki"), db: DbOption = None) -> None:
    """Devices, their binding and state, and their certificate (no secrets)."""
    ca: Path | None = ca_dir if ca_dir.is_dir() else None
    rows = _run(lambda: _with_store(db, lambda store: provision.list_devices(store, ca)))
    typer.echo(f"{'ID':24} {'TYPE':15} {'ÉTAT':9} {'PRATICIEN':16} {'SITE':16} {'CERT. EXPIRE':12} LCR")
    for r in rows:
        expires = f"{r.cert_expires.astimezone(PARIS):%d/%m/%Y}" if r.cert_expires else "-"
        typer.echo(
            f"{r.id:24} {KIND_LABELS.get(r.kind, r.kind):15} {STATE_LABELS.get(r.state, r.state):9} "
            f"{r.practitioner_id or '-':16} {r.site_id or '-':16} "
            f"{expires:12} {'révoqué' if r.in_crl else '-'}"
        )


@app.command("broker-config", help="Produire broker_config/prod/mosquitto.conf pour ce serveur.")
def broker_config(
    out: Annotated[Path, typer.Option("--out", help="mosquitto.conf à écrire")],
    cafile: Annotated[Path, typer.Option(help="Certificat de l'AC")],
    certfile: Annotated[Path, typer.Option(help="Certificat du broker (server.pem)")],
    keyfile: Annotated[Path, typer.Option(help="Clé du broker (server.key)")],
    crlfile: Annotated[Path, typer.Option(help="LCR (crl.pem)")],
    password_file: Annotated[
        Path, typer.Option(help="Fichier des mots de passe des comptes en boucle locale")
    ],
    acl_file: Annotated[Path | None, typer.Option(help="Fichier ACL [défaut : celui livré]")] = None,
    data_dir: Annotated[Path, typer.Option(help="Dossier de persistance")] = Path("/var/lib/mosquitto"),
    tls_port: Annotated[int, typer.Option()] = 8883,
    bind: Annotated[str, typer.Option(help="Adresse de l'écoute TLS")] = "0.0.0.0",
    local_port: Annotated[int, typer.Option(help="Port de l'écoute en boucle locale")] = 1883,
    run_as: Annotated[str, typer.Option(help="Utilisateur de Mosquitto")] = "mosquitto",
    dynsec_file: Annotated[
        Path | None,
        typer.Option(help="Fichier du greffon de sécurité dynamique [défaut : dans --data-dir]"),
    ] = None,
) -> None:
    """Render broker_config/prod/mosquitto.conf for this server, and the dynsec file if it is missing."""
    try:
        values = prod_values(
            files=TlsFiles(cafile, certfile, keyfile, crlfile),
            data_dir=data_dir,
            password_file=password_file,
            acl_file=acl_file,
            dynsec_file=dynsec_file,
            tls_port=tls_port,
            tls_bind=bind,
            local_port=local_port,
            run_as=run_as,
        )
    except dynsec.DynsecError as exc:
        raise _fail(str(exc)) from None
    out.write_text(render_prod_config(values))
    typer.echo(f"écrit : {out}")
    state = Path(str(values["dynsec_file"]))
    if state.exists():  # the broker's own from now on: never overwritten
        typer.echo(f"conservé : {state} (géré par le broker)")
        return
    dynsec.write_config(state, [MONITOR_USER])
    if os.geteuid() == 0:  # Mosquitto, running as run_as, rewrites it (0600)
        try:
            shutil.chown(state, user=run_as)
        except LookupError:
            raise _fail(f"utilisateur {run_as!r} inconnu : {state} ne peut pas lui être donné") from None
    typer.echo(
        f"écrit : {state} ; ajoutez {dynsec.ADMIN_USER} au fichier des mots de passe "
        f"(mosquitto_passwd {password_file} {dynsec.ADMIN_USER})"
    )
