"""Provisioning: bundle contents, file modes, all-or-nothing failures, the CLI."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509
from typer.testing import CliRunner

from broker_config import pki as pkimod
from broker_config import provision
from broker_config.cli import app
from broker_config.provision import DeviceSpec, ProvisionError
from dispatcher.domain import Device, DeviceKind
from dispatcher.store.base import NotFound, StoreUnavailable
from dispatcher.store.sqlite import SqliteStore
from tests.broker_config.helpers import PRACTITIONER, SITE, Pki, run_with_store


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_nothing_written(pki: Pki, device_id: str) -> None:
    bundles = pki.root / "bundles"
    assert list(bundles.iterdir()) == [], "bundle or temp dir left behind"
    assert not (pki.ca_dir / "issued" / device_id).exists()

    async def missing(store: SqliteStore) -> bool:
        try:
            await store.get_device(device_id)
        except NotFound:
            return True
        return False

    assert run_with_store(pki.db, missing)


def test_bundle_contents_and_modes(pki: Pki) -> None:
    bundle = pki.provision("bra-001", kind=DeviceKind.BRACELET, site_id=SITE.id, gnss=True, cancel_pin="4821")
    assert sorted(p.name for p in bundle.iterdir()) == [
        "ca.pem",
        "device.key",
        "device.pem",
        "device.toml",
        "hmac.key",
    ]
    for secret in ("device.key", "hmac.key", "device.toml"):  # device.toml holds the PINs
        assert _mode(bundle / secret) == 0o600
    assert _mode(bundle) == 0o700
    assert _mode(pki.ca_dir / "ca.key") == 0o600
    assert _mode(pki.server_dir / "server.key") == 0o600
    assert _mode(pki.dispatcher.key or Path()) == 0o600
    hex_key = (bundle / "hmac.key").read_text().strip()
    assert len(hex_key) == 64 and int(hex_key, 16) >= 0
    config = tomllib.loads((bundle / "device.toml").read_text())
    assert config["device"] == {
        "id": "bra-001",
        "kind": "bracelet",
        "hmac_key_file": "hmac.key",
        "state_dir": "/var/lib/vigie-device",
    }
    assert config["mqtt"] == {
        "host": "localhost",
        "port": 8883,
        "keepalive_s": 30,
        "heartbeat_interval_s": 30,
        "ca_file": "ca.pem",
        "cert_file": "device.pem",
        "key_file": "device.key",
    }
    assert set(config) == {"device", "mqtt", "gpio", "gestures", "cancel", "gnss"}
    assert config["cancel"] == {"pin": "4821"}  # no duress PIN given: the gesture is turned off
    assert config["gestures"]["duress"] is False
    assert config["gnss"]["enabled"] is True
    cert = pkimod.load_cert(bundle / "device.pem")
    assert pkimod.common_name(cert) == "bra-001"
    creds = run_with_store(pki.db, lambda store: store.device_credentials())
    assert {c.device_id: c.hmac_key.hex() for c in creds} == {"bra-001": hex_key}


def test_existing_id_refused_and_first_bundle_untouched(pki: Pki) -> None:
    first = pki.provision("btn-001")
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    other = pki.root / "bundles" / "again"
    with pytest.raises(ProvisionError, match="déjà enregistrée"):
        run_with_store(
            pki.db,
            lambda store: provision.provision_device(
                store,
                pki.ca_dir,
                DeviceSpec(
                    id="btn-001", kind=DeviceKind.BUTTON, broker_host="h", practitioner_id=PRACTITIONER.id
                ),
                other,
            ),
        )
    assert not other.exists()
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"practitioner_id": "dr-nobody"}, "praticien inconnu\\(e\\) : 'dr-nobody'"),
        ({"practitioner_id": None, "site_id": "nowhere"}, "site inconnu\\(e\\) : 'nowhere'"),
        ({"practitioner_id": None}, "rattachée à un --practitioner"),
    ],
)
def test_unknown_binding_refused(pki: Pki, spec: dict[str, object], message: str) -> None:
    with pytest.raises(ProvisionError, match=message):
        pki.provision("btn-002", **spec)
    _assert_nothing_written(pki, "btn-002")


def test_reserved_and_invalid_ids_refused(pki: Pki) -> None:
    for bad in ("vigie-dispatcher", "BTN_1", "a/b", "+"):
        with pytest.raises(ProvisionError):
            pki.provision(bad)
    assert list((pki.root / "bundles").iterdir()) == []


def test_unreadable_ca_refused(pki: Pki) -> None:
    (pki.ca_dir / "ca.key").write_bytes(b"not a key")
    with pytest.raises(ProvisionError, match="certificat ou clé de l'AC illisible"):
        pki.provision("btn-003")
    _assert_nothing_written(pki, "btn-003")


def test_missing_ca_refused(pki: Pki) -> None:
    (pki.ca_dir / "ca.pem").unlink()
    with pytest.raises(ProvisionError, match="impossible de lire l'AC"):
        pki.provision("btn-004")
    _assert_nothing_written(pki, "btn-004")


class FailingRegistration:
    """A real store whose add_device fails, as a full disk would."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def add_device(self, device: Device, hmac_key: bytes) -> None:
        raise StoreUnavailable("database or disk is full")


def _provision_on_a_full_disk(pki: Pki, spec: DeviceSpec) -> None:
    with pytest.raises(ProvisionError, match="disk is full"):
        run_with_store(
            pki.db,
            lambda store: provision.provision_device(
                FailingRegistration(store),  # type: ignore[arg-type]
                pki.ca_dir,
                spec,
                pki.bundle(spec.id),
            ),
        )


def test_store_failure_rolls_back_bundle(pki: Pki) -> None:
    spec = DeviceSpec(id="btn-005", kind=DeviceKind.BUTTON, broker_host="h", practitioner_id=PRACTITIONER.id)
    _provision_on_a_full_disk(pki, spec)
    _assert_nothing_written(pki, "btn-005")


def test_store_failure_leaves_no_pin_registered(pki: Pki) -> None:
    spec = DeviceSpec(
        id="btn-007",
        kind=DeviceKind.BUTTON,
        broker_host="h",
        practitioner_id=PRACTITIONER.id,
        cancel_pin="2468",
        duress_pin="1357",
    )
    _provision_on_a_full_disk(pki, spec)
    _assert_nothing_written(pki, "btn-007")
    stored = run_with_store(pki.db, lambda store: store.get_practitioner(PRACTITIONER.id))
    assert (stored.cancel_pin_hash, stored.duress_pin_hash) == (None, None)


def test_wrong_cancel_pin_refused(pki: Pki) -> None:
    from argon2 import PasswordHasher

    hashed = PasswordHasher().hash("1234")
    run_with_store(
        pki.db,
        lambda store: store.upsert_practitioner(PRACTITIONER.model_copy(update={"cancel_pin_hash": hashed})),
    )
    with pytest.raises(ProvisionError, match="ne correspond pas"):
        pki.provision("btn-006", cancel_pin="9999")
    _assert_nothing_written(pki, "btn-006")
    pki.provision("btn-006", cancel_pin="1234")


def crl_until(crl: x509.CertificateRevocationList) -> str:
    """The CRL's nextUpdate as the installer reads it: Europe/Paris, never the server's UTC."""
    assert crl.next_update_utc is not None
    return crl.next_update_utc.astimezone(ZoneInfo("Europe/Paris")).strftime("%d/%m/%Y %H:%M")


def test_cli_end_to_end(pki: Pki, tmp_path: Path) -> None:
    runner = CliRunner()
    ca = str(tmp_path / "cli-ca")
    env = {"VIGIE_CA_DIR": ca, "VIGIE_DATABASE_URL": f"sqlite:///{pki.db}"}

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    run("init-ca")
    run("server-cert", "--host", "broker.vigie.example", "--host", "10.0.0.5", "--out", str(tmp_path / "srv"))
    run("dispatcher-cert", "--out", str(tmp_path / "disp"))
    bundle = tmp_path / "pi-btn-010"
    out = run(
        "device", "btn-010", "--kind", "button", "--site", SITE.id, "--generate-pins",
        "--broker-host", "broker.vigie.example", "--broker-port", "8883", "--out", str(bundle),
    )  # fmt: skip
    assert "btn-010" in out
    listing = run("list")
    assert "btn-010" in listing and "active" in listing
    assert (bundle / "hmac.key").read_text().strip() not in listing
    run("revoke", "btn-010")
    listing = run("list")
    assert "révoquée" in listing
    crl = pkimod.load_crl(pkimod.CaPaths(Path(ca)))
    cert = pkimod.load_cert(bundle / "device.pem")
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    refreshed = run("refresh-crl", "--crl-days", "30")
    until = crl_until(pkimod.load_crl(pkimod.CaPaths(Path(ca))))
    assert f"LCR valable jusqu'au {until} (heure de Paris)" in refreshed
    failed = runner.invoke(app, ["init-ca"], env=env)
    assert failed.exit_code == 1 and "existe déjà" in failed.output
    missing = runner.invoke(app, ["list", "--db", str(tmp_path / "nope.db")], env=env)
    assert missing.exit_code == 1 and "n'existe pas" in missing.output
    assert not (tmp_path / "nope.db").exists()
