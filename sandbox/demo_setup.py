"""What ``make demo`` prepares before anything runs: directory, devices, accounts, secrets.

Everything secret is generated for this run (device keys, broker and console
passwords, the provider's auth token) and printed once by the demo's banner;
nothing here is a fixed placeholder that could end up in a deployment.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
import yaml

from broker_config.runner import DISPATCHER_USER, DevBroker
from dispatcher.directory.communes import load_communes
from dispatcher.directory.loader import load_directory
from dispatcher.domain import Device, DeviceKind
from dispatcher.secretcheck import generate_secret
from dispatcher.store.base import NewUser
from dispatcher.store.sqlite import SqliteStore
from dispatcher.web.auth import hash_password
from sandbox.fleet import new_device_secrets

HERAULT = Path(__file__).resolve().parents[1] / "dispatcher" / "data" / "herault.yaml"
COMMUNES = Path(__file__).resolve().parent / "data" / "communes.geojson"
SIMULATED_DEVICES = {  # device id -> (practitioner, site): pressed by the demo itself
    "btn-cabinet-boutonnet": ("dr-claire-fabre", "cabinet-boutonnet"),
    "bracelet-mmg-benali": ("dr-karim-benali", "mmg-saint-gely"),
}
LABELS = {  # what operators read next to the id
    "btn-cabinet-boutonnet": "bouton sous le bureau, cabinet Boutonnet",
    "bracelet-mmg-benali": "bracelet du Dr Benali, MMG",
    "btn-demo-clavier": "bouton de poche simulé au clavier (make demo-device)",
}
# The device a person presses from the keyboard (make demo-device): Dr Fabre's pocket button.
HAND_DEVICE = "btn-demo-clavier"
HAND_PRACTITIONER, HAND_SITE = "dr-claire-fabre", "cabinet-boutonnet"
DEMO_ACCOUNTS = {  # console username -> (role, display name, practitioner id)
    "operateur": ("operator", "Opérateur SSJ 34", None),
    "admin": ("admin", "Administrateur Vigie", None),
    "praticienne": ("practitioner", "Dr Claire Fabre", "dr-claire-fabre"),
}
ROLE_NAMES = {"operator": "opérateur", "admin": "administrateur", "practitioner": "praticienne"}


@dataclass
class DemoSecrets:
    """What this run generated (printed once, never written to a log)."""

    devices: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # id -> (HMAC key, MQTT password)
    accounts: dict[str, str] = field(default_factory=dict)  # console login -> password
    dispatcher_password: str = field(default_factory=generate_secret)
    twilio_auth_token: str = field(default_factory=lambda: secrets.token_hex(16))


def demo_directory(source: Path, target: Path, *, ack_timeout_s: int) -> dict[str, Any]:
    """Copy the sample directory with demo timings: every tier waits ``ack_timeout_s``, no repeat.

    The sample's real timings (2 minutes a tier, the chain run twice) would
    take a quarter of an hour to show an exhausted chain.
    """
    data: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
    for convention in data.get("conventions", []):
        convention["repeats"] = 0
        for tier in convention.get("tiers", []):
            tier["ack_timeout_s"] = ack_timeout_s
    target.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return data


async def prepare_store(db: Path, directory: Path) -> DemoSecrets:
    """Load the directory, register the devices and create the console accounts."""
    generated = DemoSecrets()
    store = await SqliteStore.open(db)
    try:
        await load_directory(directory, store, None)
        # The sandbox's commune contours: the demo's GPS fixes are routed by commune.
        await load_communes(store, [(str(COMMUNES), COMMUNES.read_bytes())], ("34", "30"))
        devices = {**SIMULATED_DEVICES, HAND_DEVICE: (HAND_PRACTITIONER, HAND_SITE)}
        for device_id, (practitioner, site) in devices.items():
            key, password = new_device_secrets()
            kind = DeviceKind.BRACELET if device_id.startswith("bracelet") else DeviceKind.BUTTON
            device = Device(
                id=device_id, kind=kind, label=LABELS[device_id], practitioner_id=practitioner, site_id=site
            )
            await store.add_device(device, key)
            generated.devices[device_id] = (key, password)
        for username, (role, display, practitioner_id) in DEMO_ACCOUNTS.items():
            generated.accounts[username] = secrets.token_urlsafe(9)
            await store.add_user(
                NewUser(
                    username=username,
                    display_name=display,
                    password_hash=hash_password(generated.accounts[username]),
                    role=role,
                    practitioner_id=practitioner_id,
                    conventions=("ssj-34",) if role == "operator" else (),
                )
            )
        return generated
    finally:
        await store.close()


def broker_accounts(broker: DevBroker, generated: DemoSecrets) -> None:
    """The dispatcher's and every device's password account on the dev broker."""
    broker.add_account(DISPATCHER_USER, generated.dispatcher_password)
    for device_id, (_, password) in generated.devices.items():
        broker.add_account(device_id, password)


def write_hand_device(
    folder: Path, generated: DemoSecrets, broker_port: int, practitioner: dict[str, Any]
) -> Path:
    """A device.toml for ``vigie-device --simulate`` against the demo's password broker."""
    key, password = generated.devices[HAND_DEVICE]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hmac.key").write_text(key.hex() + "\n", encoding="ascii")
    (folder / "mqtt.password").write_text(password + "\n", encoding="utf-8")
    for secret in ("hmac.key", "mqtt.password"):
        (folder / secret).chmod(0o600)
    config: dict[str, Any] = {
        "device": {"id": HAND_DEVICE, "kind": "button", "hmac_key_file": "hmac.key", "state_dir": "state"},
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker_port,
            "username": HAND_DEVICE,
            "password_file": "mqtt.password",
            "heartbeat_interval_s": 20,
        },
    }
    if practitioner.get("cancel_pin"):
        config["cancel"] = {"pin": practitioner["cancel_pin"]}
        if practitioner.get("duress_pin"):
            config["cancel"]["duress_pin"] = practitioner["duress_pin"]
    path = folder / "device.toml"
    path.write_text(
        "# The demo's keyboard device (make demo-device); rewritten by every make demo.\n"
        + tomli_w.dumps(config),
        encoding="utf-8",
    )
    return path


def practitioner_entry(directory: dict[str, Any], practitioner_id: str) -> dict[str, Any]:
    """The practitioner's table in the directory file (for her device's cancel PINs)."""
    for entry in directory.get("practitioners", []):
        if entry.get("id") == practitioner_id:
            return dict(entry)
    return {}
