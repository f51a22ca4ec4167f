"""PINs out of the box: asked (hidden, twice) or drawn, shown once, hashed on the server, on the device."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner, Result

from broker_config import pins
from broker_config.cli import app
from broker_config.provision import ProvisionError
from device.config import load_config
from dispatcher.directory.loader import verify_pin
from dispatcher.domain import Practitioner
from tests.broker_config.helpers import PRACTITIONER, SITE, Pki, run_with_store


def practitioner(pki: Pki) -> Practitioner:
    found: Practitioner = run_with_store(pki.db, lambda store: store.get_practitioner(PRACTITIONER.id))
    return found


def provision_cli(pki: Pki, device_id: str, *options: str, stdin: str = "") -> Result:
    env = {"VIGIE_CA_DIR": str(pki.ca_dir), "VIGIE_DATABASE_URL": f"sqlite:///{pki.db}"}
    args = ["device", device_id, "--kind", "pocket", "--practitioner", PRACTITIONER.id]
    args += ["--broker-host", "localhost", "--out", str(pki.bundle(device_id)), *options]
    return CliRunner().invoke(app, args, env=env, input=stdin)


def device_pins(pki: Pki, device_id: str) -> dict[str, str]:
    section: dict[str, str] = tomllib.loads((pki.bundle(device_id) / "device.toml").read_text())["cancel"]
    return section


def test_pins_asked_twice_hidden_are_hashed_on_the_server_and_written_for_the_device(pki: Pki) -> None:
    result = provision_cli(pki, "btn-101", stdin="2468\n2468\n1357\n1357\n")
    assert result.exit_code == 0, result.output
    assert "2468" not in result.output and "1357" not in result.output  # hidden input, never echoed
    assert result.output.count("Confirmez le code PIN") == 2
    stored = practitioner(pki)
    assert stored.cancel_pin_hash and stored.duress_pin_hash
    assert "2468" not in stored.cancel_pin_hash  # a hash, not the PIN
    assert verify_pin(stored.cancel_pin_hash, "2468") and verify_pin(stored.duress_pin_hash, "1357")
    assert device_pins(pki, "btn-101") == {"pin": "2468", "duress_pin": "1357"}
    config = load_config(pki.bundle("btn-101") / "device.toml")  # the device starts with it
    assert config.gestures.duress and config.cancel.duress_pin == "1357"


def test_mistyped_confirmation_is_asked_again(pki: Pki) -> None:
    result = provision_cli(pki, "btn-102", stdin="2468\n2486\n2468\n2468\n1357\n1357\n")
    assert result.exit_code == 0, result.output
    assert "les deux saisies diffèrent" in result.output
    assert device_pins(pki, "btn-102") == {"pin": "2468", "duress_pin": "1357"}


def test_generated_pins_are_shown_once_and_are_the_ones_hashed_and_written(pki: Pki) -> None:
    result = provision_cli(pki, "btn-103", "--generate-pins")
    assert result.exit_code == 0, result.output
    written = device_pins(pki, "btn-103")
    cancel, duress = written["pin"], written["duress_pin"]
    assert cancel != duress and len(cancel) == len(duress) == pins.GENERATED_DIGITS
    assert result.output.count(cancel) == 1 and result.output.count(duress) == 1
    stored = practitioner(pki)
    assert stored.cancel_pin_hash and verify_pin(stored.cancel_pin_hash, cancel)
    assert stored.duress_pin_hash and verify_pin(stored.duress_pin_hash, duress)


def test_a_second_device_must_use_her_registered_pins(pki: Pki) -> None:
    assert provision_cli(pki, "btn-104", "--cancel-pin", "2468", "--duress-pin", "1357").exit_code == 0
    before = practitioner(pki)
    for cancel, duress, message in [
        ("2468", "9753", "code PIN de contrainte ne correspond pas"),
        ("1357", "2468", "c'est le code PIN de contrainte"),
        ("8642", "1357", "code PIN d'annulation ne correspond pas"),
    ]:
        result = provision_cli(pki, "btn-105", "--cancel-pin", cancel, "--duress-pin", duress)
        assert result.exit_code == 1 and message in result.output
        assert not pki.bundle("btn-105").exists()
    refused = provision_cli(pki, "btn-105", "--generate-pins")
    assert refused.exit_code == 1 and "ne correspond pas" in refused.output
    assert practitioner(pki) == before  # her PINs were never replaced
    assert provision_cli(pki, "btn-105", "--cancel-pin", "2468", "--duress-pin", "1357").exit_code == 0


@pytest.mark.parametrize(
    ("options", "stdin", "message"),
    [
        (["--cancel-pin", "12"], "", "code PIN d'annulation doit compter 4 à 8 chiffres"),
        (["--cancel-pin", "2468", "--duress-pin", "2468"], "", "doit différer"),
        (["--generate-pins", "--cancel-pin", "2468"], "", "pas les deux"),
        ([], "", "aucun code PIN donné"),
    ],
)
def test_bad_pins_are_refused_with_a_clear_message(
    pki: Pki, options: list[str], stdin: str, message: str
) -> None:
    result = provision_cli(pki, "btn-106", *options, stdin=stdin)
    assert result.exit_code == 1 and message in result.output
    assert not pki.bundle("btn-106").exists()
    assert practitioner(pki).cancel_pin_hash is None


def test_pins_rules() -> None:
    with pytest.raises(pins.PinError, match="4 à 8 chiffres"):
        pins.Pins("12345678９")  # a non-ASCII digit is no digit here
    generated = {pins.generate() for _ in range(20)}
    assert all(p.cancel != p.duress for p in generated)
    assert "2468" not in repr(pins.Pins("2468", "1357"))  # never in logs
    registered = PRACTITIONER.model_copy(
        update={"cancel_pin_hash": PasswordHasher().hash("2468"), "duress_pin_hash": None}
    )
    updated = pins.with_missing_hashes(registered, pins.Pins("2468", "1357"))
    assert updated is not None and updated.cancel_pin_hash == registered.cancel_pin_hash
    assert verify_pin(updated.duress_pin_hash, "1357")
    with pytest.raises(pins.PinError):
        pins.check_against(registered, pins.Pins("1357", "2468"), "dr-martin")


def test_provision_error_for_duress_without_cancel(pki: Pki) -> None:
    with pytest.raises(ProvisionError, match="demande un code PIN d'annulation"):
        pki.provision("btn-107", duress_pin="1357")


def test_bundle_without_pins_still_writes_a_placeholder(pki: Pki, tmp_path: Path) -> None:
    bundle = pki.provision("btn-108")  # the programmatic path (benchmarks, fault tests)
    assert device_pins(pki, "btn-108") == {"pin": ""}
    assert bundle.is_dir() and tmp_path.is_dir()


def test_a_site_only_desk_button_gets_the_sites_staff_pins(pki: Pki) -> None:
    env = {"VIGIE_CA_DIR": str(pki.ca_dir), "VIGIE_DATABASE_URL": f"sqlite:///{pki.db}"}
    args = ["device", "desk-001", "--kind", "button", "--site", SITE.id, "--broker-host", "localhost"]
    args += ["--out", str(pki.bundle("desk-001")), "--cancel-pin", "4321", "--duress-pin", "8765"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    site = run_with_store(pki.db, lambda store: store.get_site(SITE.id))
    assert site.cancel_pin_hash and verify_pin(site.cancel_pin_hash, "4321")
    assert site.duress_pin_hash and verify_pin(site.duress_pin_hash, "8765")
    assert practitioner(pki).cancel_pin_hash is None  # nobody's personal PINs
    assert device_pins(pki, "desk-001") == {"pin": "4321", "duress_pin": "8765"}
