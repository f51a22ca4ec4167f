"""Configuration loading: the documented example, errors that name the field, path resolution."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from device.config import ConfigError, load_config, parse_config, read_hmac_key
from tests.device.conftest import write_device_config


def example_text() -> str:
    return resources.files("device").joinpath("example-config.toml").read_text()


def test_example_config_is_valid_and_resolves_relative_paths(tmp_path: Path) -> None:
    config = parse_config(tomllib.loads(example_text()), tmp_path)
    assert config.device.id == "btn-001"
    assert config.device.hmac_key_file == tmp_path / "hmac.key"
    assert config.device.state_dir == Path("/var/lib/vigie-device")
    assert config.mqtt.ca_file == tmp_path / "ca.pem"
    assert config.username == "btn-001"
    assert config.gestures.timing().hold_s == 2.0
    assert config.cancel.duress_pin == "9999"


def test_example_config_loads_with_its_files(tmp_path: Path) -> None:
    (tmp_path / "device.toml").write_text(example_text())
    for name in ("ca.pem", "device.pem", "device.key"):
        (tmp_path / name).write_text("x")
    (tmp_path / "hmac.key").write_text("ab" * 32)
    config = load_config(tmp_path / "device.toml")
    assert read_hmac_key(config) == bytes.fromhex("ab" * 32)


def test_minimal_config_uses_defaults(tmp_path: Path) -> None:
    config = parse_config(
        {"device": {"id": "b-1", "hmac_key_file": "k"}, "cancel": {"pin": "1234", "duress_pin": "9999"}},
        tmp_path,
    )
    assert (config.mqtt.port, config.gestures.presses, config.gnss.enabled) == (8883, 3, False)
    assert (config.gestures.test_presses, config.gestures.duress) == (2, True)
    assert config.feedback.not_delivered_after_s == 15
    assert config.battery.sysfs_root == Path("/sys/class/power_supply")
    assert (config.battery.command, config.battery.low_pct) == (None, 15)


def test_duress_gesture_without_a_duress_pin_is_refused_naming_the_field(tmp_path: Path) -> None:
    data = {"device": {"id": "b-1", "hmac_key_file": "k"}, "cancel": {"pin": "1234"}}
    with pytest.raises(ConfigError, match=r"^cancel\.duress_pin: manquant, alors que le geste de contrainte"):
        parse_config(data, tmp_path)
    config = parse_config({**data, "gestures": {"duress": False}}, tmp_path)
    assert config.gestures.timing().duress is False


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["mqtt"].update(prot=1), "mqtt.prot: clé inconnue"),
        (lambda d: d.update(extra={}), "extra: clé inconnue"),
        (lambda d: d["device"].update(id="BTN_1"), "device.id: ne correspond pas au motif"),
        (lambda d: d["device"].update(kind="watch"), "device.kind"),
        (lambda d: d["gestures"].update(hold_s="long"), "gestures.hold_s"),
        (lambda d: d["gestures"].update(presses=1), "gestures: presses doit valoir 0"),
        (lambda d: d["gestures"].update(test_presses=1), "gestures: test_presses doit valoir 0"),
        (lambda d: d["gestures"].update(test_presses=3), "test_presses doit être inférieur à presses"),
        (lambda d: d.update(feedback={"not_delivered_after_s": 0}), "feedback.not_delivered_after_s"),
        (lambda d: d.update(battery={"low_pct": 101}), "battery.low_pct"),
        (lambda d: d.update(battery={"command": ""}), "battery.command"),
        (lambda d: d["gpio"].update(feedback="led"), "gpio.feedback"),
        (lambda d: d["cancel"].update(pin="12"), "cancel.pin"),
        (lambda d: d["cancel"].update(duress_pin="1234"), "duress_pin doit différer"),
        (lambda d: d["mqtt"].pop("key_file"), "mqtt: cert_file et key_file vont ensemble"),
        (lambda d: d.pop("cancel"), "cancel: manquant"),
    ],
)
def test_invalid_config_names_the_field(tmp_path: Path, mutate: object, expected: str) -> None:
    data = tomllib.loads(example_text())
    mutate(data)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=None) as err:
        parse_config(data, tmp_path)
    assert expected in str(err.value)


def test_bad_key_file_is_named(tmp_path: Path) -> None:
    path = write_device_config(tmp_path, port=1883)
    (tmp_path / "hmac.key").write_text("not-hex")
    with pytest.raises(ConfigError, match=r"device\.hmac_key_file: .* 64 caractères hexadécimaux"):
        load_config(path)
    (tmp_path / "hmac.key").unlink()
    with pytest.raises(ConfigError, match=r"device\.hmac_key_file: impossible de lire"):
        load_config(path)


def test_toml_syntax_error_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "device.toml"
    path.write_text("[device\nid = 1")
    with pytest.raises(ConfigError, match="pas du TOML valide"):
        load_config(path)


def test_missing_tls_file_is_named(tmp_path: Path) -> None:
    path = write_device_config(tmp_path, port=1883)
    path.write_text(path.read_text().replace("[mqtt]", '[mqtt]\nca_file = "missing-ca.pem"'))
    with pytest.raises(ConfigError, match=r"mqtt\.ca_file: le fichier .*missing-ca.pem n\'existe pas"):
        load_config(path)
