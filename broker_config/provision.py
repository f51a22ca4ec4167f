"""Provisioning: the CA, broker and dispatcher certificates, device bundles, revocation.

The functions here do the work and raise :class:`ProvisionError` with a
message meant for the installer; :mod:`broker_config.cli` only parses
arguments and prints. A device is provisioned all-or-nothing: every check
(store lookups included) runs before anything is written, the bundle is
built in a temporary directory renamed into place, and the store row is
added last, the bundle being removed again if that fails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import tomli_w
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker_config import pins, pki
from broker_config.dynsec import DynsecAdmin, DynsecError
from broker_config.pki import CaPaths, CertificateAuthority, PkiError, Validity
from dispatcher.domain import Device, DeviceKind, Practitioner, Site
from dispatcher.store.base import DirectoryStore, NotFound, StoreError
from protocol.topics import TopicError, check_id

DISPATCHER_CN = "vigie-dispatcher"
# Instance 1 keeps the historical CN; instance n >= 2 is "vigie-dispatcher-n". The
# shipped ACL (broker_config/acl) grants the dispatcher's rights to each of them.
MAX_DISPATCHER_INSTANCES = 4
# Ids under this prefix are infrastructure accounts (dispatcher, monitoring):
# a device with such a CN would inherit their ACL rights.
RESERVED_PREFIX = "vigie-"
DEFAULT_CRL_DAYS = 365
DEFAULT_DEVICE_DAYS = 825
CANCEL_PIN_PLACEHOLDER = ""


class ProvisionError(RuntimeError):
    """A provisioning request that cannot be carried out; nothing was written."""


# --------------------------------------------------------------------------- CA & infrastructure


def init_ca(
    ca_dir: Path,
    *,
    name: str = "Vigie device CA",
    validity_days: int = 3650,
    crl_days: int = DEFAULT_CRL_DAYS,
    import_cert: Path | None = None,
    import_key: Path | None = None,
) -> CertificateAuthority:
    """Create a CA directory (or import an existing CA) with an empty CRL.

    Refuses to overwrite an existing CA: every certificate in the field
    depends on it.
    """
    paths = CaPaths(ca_dir)
    if paths.key.exists() or paths.cert.exists():
        raise ProvisionError(f"une AC existe déjà dans {ca_dir} : refus de l'écraser")
    if (import_cert is None) != (import_key is None):
        raise ProvisionError("--import-cert et --import-key vont ensemble")
    try:
        if import_cert is not None and import_key is not None:
            ca = CertificateAuthority.from_pem(import_cert.read_bytes(), import_key.read_bytes())
        else:
            ca = CertificateAuthority.create(name, validity_days)
        pki.save_ca(paths, ca, next_update_days=crl_days)
    except (OSError, PkiError) as exc:
        raise ProvisionError(f"impossible de créer l'AC : {exc}") from None
    return ca


def _load_ca(ca_dir: Path) -> CertificateAuthority:
    paths = CaPaths(ca_dir)
    try:
        ca = pki.load_ca(paths)
        pki.load_crl(paths)  # a CA without a readable CRL cannot revoke anything
    except PkiError as exc:
        raise ProvisionError(str(exc)) from None
    return ca


@dataclass(frozen=True)
class IssuedFiles:
    """Where an issued certificate, its key and the CA certificate were written."""

    cert: Path
    key: Path
    ca: Path


def _write_identity(
    out_dir: Path, stem: str, ca: CertificateAuthority, cert: Any, key: Any, *, overwrite: bool
) -> IssuedFiles:
    files = IssuedFiles(out_dir / f"{stem}.pem", out_dir / f"{stem}.key", out_dir / "ca.pem")
    if not overwrite and (files.cert.exists() or files.key.exists()):
        raise ProvisionError(f"{files.cert} ou {files.key} existe déjà (--force pour le remplacer)")
    out_dir.mkdir(parents=True, exist_ok=True)
    pki.write_secret(files.key, pki.key_pem(key))
    pki.write_public(files.cert, pki.cert_pem(cert))
    pki.write_public(files.ca, pki.cert_pem(ca.cert))
    return files


def issue_server_cert(
    ca_dir: Path, out_dir: Path, *, hosts: Sequence[str], validity_days: int = 825, overwrite: bool = False
) -> IssuedFiles:
    """Issue the broker's certificate for ``hosts`` (DNS names and/or IPs) into ``out_dir``."""
    if not hosts:
        raise ProvisionError("donnez au moins un --host par lequel les balises joignent le broker")
    ca = _load_ca(ca_dir)
    dns, ips = pki.split_hosts(hosts)
    try:
        cert, key = ca.issue(
            hosts[0], validity=Validity.days(validity_days), client=False, dns_names=dns, ip_addresses=ips
        )
    except PkiError as exc:
        raise ProvisionError(str(exc)) from None
    return _write_identity(out_dir, "server", ca, cert, key, overwrite=overwrite)


def dispatcher_cn(instance: int = 1) -> str:
    """Certificate CN (= broker username and client id) of dispatcher instance ``instance``.

    With ``use_username_as_clientid`` every TLS session is named after its CN,
    so instances sharing a CN would kick each other off the broker.
    """
    if not 1 <= instance <= MAX_DISPATCHER_INSTANCES:
        raise ProvisionError(
            f"l'instance du dispatcher doit aller de 1 à {MAX_DISPATCHER_INSTANCES} "
            "(celles que l'ACL autorise) ; "
            "au-delà, ajoutez un bloc 'user vigie-dispatcher-N' à l'ACL"
        )
    return DISPATCHER_CN if instance == 1 else f"{DISPATCHER_CN}-{instance}"


def issue_dispatcher_cert(
    ca_dir: Path, out_dir: Path, *, validity_days: int = 825, overwrite: bool = False, instance: int = 1
) -> IssuedFiles:
    """Issue dispatcher instance ``instance``'s client certificate (see :func:`dispatcher_cn`)."""
    cn = dispatcher_cn(instance)
    ca = _load_ca(ca_dir)
    try:
        cert, key = ca.issue(cn, validity=Validity.days(validity_days), client=True)
    except PkiError as exc:
        raise ProvisionError(str(exc)) from None
    files = _write_identity(out_dir, "dispatcher", ca, cert, key, overwrite=overwrite)
    _record_issued(CaPaths(ca_dir), cn, cert)
    return files


def _record_issued(paths: CaPaths, cn: str, cert: Any) -> Path:
    folder = paths.issued / cn
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cert.serial_number:x}.pem"
    pki.write_public(path, pki.cert_pem(cert))
    return path


def issued_certs(ca_dir: Path, cn: str) -> list[Any]:
    """Every certificate this CA issued to ``cn`` (oldest first)."""
    folder = CaPaths(ca_dir).issued / cn
    if not folder.is_dir():
        return []
    certs = [pki.load_cert(p) for p in sorted(folder.glob("*.pem"))]
    return sorted(certs, key=lambda c: c.not_valid_before_utc)


def refresh_crl(ca_dir: Path, *, crl_days: int = DEFAULT_CRL_DAYS) -> dt.datetime:
    """Re-sign the CRL with a new nextUpdate; returns it. Run well before it passes."""
    ca = _load_ca(ca_dir)
    crl = pki.reissue_crl(CaPaths(ca_dir), ca, [], next_update_days=crl_days)
    next_update = crl.next_update_utc
    assert next_update is not None  # we always set it
    return next_update


# --------------------------------------------------------------------------- device bundle


@dataclass(frozen=True)
class DeviceSpec:
    """Everything ``vigie provision device`` is asked to create."""

    id: str
    kind: DeviceKind
    broker_host: str
    broker_port: int = 8883
    practitioner_id: str | None = None
    site_id: str | None = None
    label: str = ""
    cancel_pin: str | None = field(default=None, repr=False)
    # None: the device gets no duress PIN and its duress gesture is turned off (gestures.duress).
    duress_pin: str | None = field(default=None, repr=False)
    gnss: bool = False
    state_dir: str = "/var/lib/vigie-device"
    keepalive_s: int = 30
    heartbeat_interval_s: int = 30
    validity_days: int = DEFAULT_DEVICE_DAYS
    # Development broker (password accounts, no TLS): the bundle's device.toml
    # names this password file instead of the TLS files (docs/provisioning.md).
    dev_broker_password: str | None = field(default=None, repr=False)
    # Test hook: a validity in the past issues an already-expired certificate.
    validity: Validity | None = field(default=None, compare=False)

    def device(self) -> Device:
        """The store record this spec registers."""
        return Device(
            id=self.id,
            kind=self.kind,
            label=self.label,
            practitioner_id=self.practitioner_id,
            site_id=self.site_id,
            heartbeat_interval_s=self.heartbeat_interval_s,
        )


def device_config(spec: DeviceSpec) -> dict[str, Any]:
    """The ``device.toml`` document of a bundle (schema shared with the device client)."""
    return {
        "device": {
            "id": spec.id,
            "kind": spec.kind.value,
            "hmac_key_file": "hmac.key",
            "state_dir": spec.state_dir,
        },
        "mqtt": {
            "host": spec.broker_host,
            "port": spec.broker_port,
            "keepalive_s": spec.keepalive_s,
            "heartbeat_interval_s": spec.heartbeat_interval_s,
            "ca_file": "ca.pem",
            "cert_file": "device.pem",
            "key_file": "device.key",
        },
        "gpio": {"button_pin": 17, "feedback_pin": 27, "feedback": "vibration", "pull_up": True},
        "gestures": {
            "hold_s": 2.0,
            "presses": 3,
            "within_s": 2.0,
            "cancel_presses": 5,
            "cancel_within_s": 3.0,
            "test_presses": 2,
            "duress": spec.duress_pin is not None,
        },
        "cancel": {"pin": spec.cancel_pin if spec.cancel_pin is not None else CANCEL_PIN_PLACEHOLDER}
        | ({"duress_pin": spec.duress_pin} if spec.duress_pin is not None else {}),
        "gnss": {
            "enabled": spec.gnss,
            "gpsd_host": "127.0.0.1",
            "gpsd_port": 2947,
            "max_fix_age_s": 30,
            "position_interval_s": 5,
        },
    } | ({"mqtt": _dev_broker_mqtt(spec)} if spec.dev_broker_password is not None else {})


def _dev_broker_mqtt(spec: DeviceSpec) -> dict[str, Any]:
    """``[mqtt]`` for the development broker: the device's password account instead of TLS."""
    return {
        "host": spec.broker_host,
        "port": spec.broker_port,
        "keepalive_s": spec.keepalive_s,
        "heartbeat_interval_s": spec.heartbeat_interval_s,
        "username": spec.id,
        "password_file": "mqtt.password",
    }


def validate_spec(spec: DeviceSpec) -> None:
    """Checks that need no I/O: id syntax, reserved names, bindings, PIN, port."""
    try:
        check_id(spec.id, "identifiant de balise")
    except TopicError:
        raise ProvisionError(
            f"identifiant de balise {spec.id!r} invalide : [a-z0-9-], 1 à 64 caractères, "
            "sans '-' au début ni à la fin"
        ) from None
    if spec.id.startswith(RESERVED_PREFIX):
        raise ProvisionError(
            f"les identifiants commençant par {RESERVED_PREFIX!r} sont réservés à l'infrastructure"
        )
    if spec.practitioner_id is None and spec.site_id is None:
        raise ProvisionError("une balise doit être rattachée à un --practitioner, un --site, ou aux deux")
    _spec_pins(spec)
    if not 1 <= spec.broker_port <= 65535:
        raise ProvisionError(f"port de broker invalide : {spec.broker_port}")
    if not spec.broker_host:
        raise ProvisionError("--broker-host est obligatoire")


def _spec_pins(spec: DeviceSpec) -> pins.Pins | None:
    if spec.cancel_pin is None:
        if spec.duress_pin is not None:
            raise ProvisionError("un code PIN de contrainte demande un code PIN d'annulation")
        return None
    try:
        return pins.Pins(spec.cancel_pin, spec.duress_pin)
    except pins.PinError as exc:
        raise ProvisionError(str(exc)) from None


PinOwner = Practitioner | Site


async def _check_store(store: DirectoryStore, spec: DeviceSpec) -> tuple[PinOwner, PinOwner] | None:
    """Check ids and bindings; return the PIN owner before and after adding missing hashes, if any."""
    if spec.id in {d.id for d in await store.list_devices()}:
        raise ProvisionError(
            f"la balise {spec.id!r} est déjà enregistrée (un identifiant révoqué n'est jamais réutilisé)"
        )
    practitioner = site = None
    if spec.practitioner_id is not None:
        practitioner = await _lookup(store.get_practitioner, spec.practitioner_id, "praticien")
    if spec.site_id is not None:
        site = await _lookup(store.get_site, spec.site_id, "site")
    # Her own PINs when the device is hers; the site's staff PINs for a desk button of a site only.
    owner = practitioner if practitioner is not None else site
    given = _spec_pins(spec)
    if given is None or owner is None or not pins.owns_pins(owner):
        return None
    try:
        pins.check_against(owner, given, repr(owner.id))
    except pins.PinError as exc:
        raise ProvisionError(str(exc)) from None
    updated: PinOwner | None = pins.with_missing_hashes(owner, given)
    return None if updated is None else (owner, updated)


async def _save_owner(store: DirectoryStore, owner: PinOwner) -> None:
    if isinstance(owner, Practitioner):
        await store.upsert_practitioner(owner)
    else:
        await store.upsert_site(owner)


async def _lookup(getter: Any, record_id: str, what: str) -> Any:
    try:
        return await getter(record_id)
    except NotFound:
        raise ProvisionError(f"{what} inconnu(e) : {record_id!r} ; ajoutez-le d'abord à l'annuaire") from None
    except StoreError as exc:
        raise ProvisionError(f"impossible de lire la base : {exc}") from None


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ProvisionError(f"{out} existe déjà et n'est pas un dossier vide")
    # Missing parents are created (by _build_bundle); the nearest existing one must be writable.
    existing = next(p for p in out.absolute().parents if p.exists())
    if not existing.is_dir():
        raise ProvisionError(f"{existing} n'est pas un dossier")
    if not os.access(existing, os.W_OK):
        raise ProvisionError(f"impossible d'écrire dans {existing}")


def _build_bundle(out: Path, spec: DeviceSpec, ca: CertificateAuthority, hmac_key: bytes) -> Any:
    """Write the bundle into a temp dir next to ``out`` and rename it; returns the certificate."""
    validity = spec.validity or Validity.days(spec.validity_days)
    cert, key = ca.issue(spec.id, validity=validity, client=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    # mkdtemp gives 0700: the bundle holds the device's private key and HMAC secret.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        pki.write_secret(tmp / "device.key", pki.key_pem(key))
        pki.write_secret(tmp / "hmac.key", pki.hmac_key_file_bytes(hmac_key))
        pki.write_public(tmp / "device.pem", pki.cert_pem(cert))
        pki.write_public(tmp / "ca.pem", pki.cert_pem(ca.cert))
        # 0600: it holds the device's cancel and duress PINs.
        pki.write_secret(tmp / "device.toml", tomli_w.dumps(device_config(spec)).encode())
        if spec.dev_broker_password is not None:
            pki.write_secret(tmp / "mqtt.password", (spec.dev_broker_password + "\n").encode())
        if out.exists():
            out.rmdir()  # checked empty beforehand; rename cannot replace it portably
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return cert


async def provision_device(
    store: DirectoryStore, ca_dir: Path, spec: DeviceSpec, out: Path, *, broker: DynsecAdmin | None = None
) -> Path:
    """Create the bundle ``out`` for ``spec`` and register the device; all or nothing.

    With ``broker`` (the running broker's dynsec admin), the device is first
    registered with the broker's dynamic-security plugin, which then refuses
    its share-group subscriptions (:mod:`broker_config.dynsec`). That comes
    after every check and before anything is written: a registration left
    behind by a later failure names an id never reused and grants nothing.

    Returns the bundle directory. Raises :class:`ProvisionError`, in which case
    neither the bundle, nor the CA's record of the certificate, nor a store
    row exists afterwards.
    """
    validate_spec(spec)
    ca = _load_ca(ca_dir)
    _check_out_dir(out)
    owner_change = await _check_store(store, spec)
    if issued_certs(ca_dir, spec.id):
        raise ProvisionError(
            f"l'AC a déjà délivré un certificat à {spec.id!r} : un identifiant n'est jamais réutilisé"
        )
    if broker is not None:
        register_with_broker(broker, [spec.id])
    hmac_key = pki.new_hmac_key()
    try:
        cert = _build_bundle(out, spec, ca, hmac_key)
    except (OSError, PkiError) as exc:
        raise ProvisionError(f"impossible d'écrire le bundle : {exc}") from None
    record = _record_issued(CaPaths(ca_dir), spec.id, cert)
    try:
        if owner_change is not None:
            await _save_owner(store, owner_change[1])
        await store.add_device(spec.device(), hmac_key)
    except BaseException as exc:
        if owner_change is not None:  # PINs nobody will ever be shown again must not stay registered
            with contextlib.suppress(StoreError):
                await _save_owner(store, owner_change[0])
        shutil.rmtree(out, ignore_errors=True)
        record.unlink(missing_ok=True)
        _rmdir_quietly(record.parent)
        if isinstance(exc, StoreError):
            raise ProvisionError(f"impossible d'enregistrer {spec.id!r} dans la base : {exc}") from None
        raise
    return out


def _rmdir_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: other certificates of this CN remain
        path.rmdir()


def register_with_broker(broker: DynsecAdmin, device_ids: Sequence[str]) -> None:
    """Make ``device_ids`` restricted clients of the broker's dynsec plugin (idempotent)."""
    try:
        broker.register(device_ids)
    except DynsecError as exc:
        raise ProvisionError(f"enregistrement auprès du broker impossible : {exc}") from None


async def register_devices(
    store: DirectoryStore, broker: DynsecAdmin, device_ids: Sequence[str]
) -> list[str]:
    """Register ``device_ids`` (all active devices of the store if empty) with the broker; returns them.

    For devices provisioned before the plugin, or without ``--broker-admin-port``.
    """
    known = {d.id: d for d in await store.list_devices()}
    for device_id in device_ids:
        if device_id not in known:
            raise ProvisionError(f"balise inconnue : {device_id!r}")
    ids = list(device_ids) or sorted(i for i, d in known.items() if d.state.value == "active")
    register_with_broker(broker, ids)
    return ids


# --------------------------------------------------------------------------- revocation


@dataclass(frozen=True)
class Revocation:
    """What ``revoke`` did."""

    device_id: str
    serials: list[int]
    in_store: bool


async def revoke(
    store: DirectoryStore,
    ca_dir: Path,
    device_id: str,
    *,
    crl_days: int = DEFAULT_CRL_DAYS,
    broker: DynsecAdmin | None = None,
) -> Revocation:
    """Add every certificate of ``device_id`` to the CRL, then mark it revoked in the store.

    The CRL goes first: if the store write fails the device is already locked
    out of the broker, the safe side. Running it again is harmless.
    Afterwards the broker must re-read the CRL (SIGHUP) and the device's live
    connection must be cut (:func:`evict`): see docs/provisioning.md. With
    ``broker``, it is also revoked in the dynsec plugin at the end, as the
    console's revocation does (disconnected; a password login refused at once;
    on the TLS listener, where certificate logins wait for the CRL, everything
    it publishes, reads or subscribes to refused).
    """
    if device_id == DISPATCHER_CN or device_id.startswith(RESERVED_PREFIX):
        raise ProvisionError("les certificats d'infrastructure ne se révoquent pas avec cette commande")
    ca = _load_ca(ca_dir)
    serials = [c.serial_number for c in issued_certs(ca_dir, device_id)]
    in_store = True
    try:
        await store.get_device(device_id)
    except NotFound:
        in_store = False
    if not serials and not in_store:
        raise ProvisionError(f"balise inconnue : {device_id!r}")
    if serials:
        pki.reissue_crl(CaPaths(ca_dir), ca, serials, next_update_days=crl_days)
    if in_store:
        try:
            await store.revoke_device(device_id)
        except StoreError as exc:
            raise ProvisionError(f"LCR mise à jour, mais la base a refusé la révocation : {exc}") from None
    if broker is not None:
        try:
            broker.disable(device_id)
        except DynsecError as exc:
            raise ProvisionError(
                f"LCR et base à jour, mais le broker a refusé la désactivation : {exc}"
            ) from None
    return Revocation(device_id, serials, in_store)


@dataclass(frozen=True)
class BrokerAccount:
    """A password account on the broker's loopback listener."""

    host: str
    port: int
    username: str
    password: str


def evict(account: BrokerAccount, client_id: str, timeout: float = 10.0) -> None:
    """Cut the live connection of ``client_id`` and drop its session.

    Mosquitto closes an existing connection when another client connects with
    the same client id; connecting with clean start and no session expiry
    then discards the session. ``account`` must be free to choose its client
    id: the dynsec admin (devices and the monitor are bound to their own).
    On the TLS listener the client id of a device is forced to its
    certificate CN (use_username_as_clientid), so the device id is its client
    id. Its reconnection then fails the TLS handshake if the
    broker has re-read the CRL.
    """
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(account.username, account.password)
    done = threading.Event()
    result: list[Any] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        result.append(rc)
        done.set()

    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        client.connect(account.host, account.port, clean_start=True, properties=props)
    except OSError as exc:
        raise ProvisionError(f"broker injoignable à {account.host}:{account.port} : {exc}") from None
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise ProvisionError("le broker n'a pas répondu à la connexion d'éviction")
        if result[0].is_failure:
            raise ProvisionError(f"le broker a refusé la connexion d'éviction : {result[0]}")
    finally:
        client.disconnect()
        client.loop_stop()


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class DeviceRow:
    """One line of ``vigie provision list`` (never a secret)."""

    id: str
    kind: str
    state: str
    practitioner_id: str | None
    site_id: str | None
    cert_serial: str | None
    cert_expires: dt.datetime | None
    in_crl: bool


async def list_devices(store: DirectoryStore, ca_dir: Path | None) -> list[DeviceRow]:
    """Devices of the store with their certificate state from the CA directory."""
    revoked: set[int] = set()
    if ca_dir is not None and CaPaths(ca_dir).crl.exists():
        revoked = {r.serial_number for r in pki.load_crl(CaPaths(ca_dir))}
    rows = []
    for device in sorted(await store.list_devices(), key=lambda d: d.id):
        certs = issued_certs(ca_dir, device.id) if ca_dir is not None else []
        last = certs[-1] if certs else None
        rows.append(
            DeviceRow(
                id=device.id,
                kind=device.kind.value,
                state=device.state.value,
                practitioner_id=device.practitioner_id,
                site_id=device.site_id,
                cert_serial=f"{last.serial_number:x}" if last else None,
                cert_expires=last.not_valid_after_utc if last else None,
                in_crl=bool(last and last.serial_number in revoked),
            )
        )
    return rows
