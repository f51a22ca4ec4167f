"""Device configuration: a TOML file validated by pydantic.

The schema is shared with the provisioning bundles, so names are stable and
unknown keys are refused (a typo must not silently disable a gesture). Every
error names the offending field, e.g. ``gestures.hold_s: ...``. Relative paths
are relative to the configuration file's directory.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from device.gestures import GestureTiming
from device.haptics import HapticPolicy

DeviceId = Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")]
Pin = Annotated[str, Field(pattern=r"^[0-9]{4,8}$")]
GpioPin = int | str  # gpiozero accepts 17, "GPIO17", "BOARD11", ...
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSection(_Section):
    """``[device]``: identity, key and durable state."""

    id: DeviceId
    kind: Literal["button", "pocket", "bracelet"] = "button"
    hmac_key_file: Path
    state_dir: Path = Path("/var/lib/vigie-device")


class MqttSection(_Section):
    """``[mqtt]``: broker address, credentials and timers."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8883, ge=1, le=65535)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    heartbeat_interval_s: float = Field(default=30, gt=0, le=3600)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = Field(default=None, min_length=1)
    password_file: Path | None = None

    @model_validator(mode="after")
    def _client_certificate_is_complete(self) -> MqttSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file et key_file vont ensemble (le certificat client et sa clé)")
        if self.cert_file is not None and self.ca_file is None:
            raise ValueError("cert_file demande ca_file : un certificat client ne sert qu'en TLS")
        return self


class GpioSection(_Section):
    """``[gpio]``: where the button and the vibration motor / buzzer are wired."""

    button_pin: GpioPin = 17
    feedback_pin: GpioPin = 27
    feedback: Literal["vibration", "buzzer"] = "vibration"
    pull_up: bool = True


class GesturesSection(_Section):
    """``[gestures]``: thresholds, see :mod:`device.gestures`."""

    hold_s: float = Field(default=2.0, gt=0.05, le=30)
    presses: int = Field(default=3, ge=0, le=20)
    within_s: float = Field(default=2.0, gt=0, le=30)
    cancel_presses: int = Field(default=5, ge=2, le=20)
    cancel_within_s: float = Field(default=3.0, gt=0, le=30)
    test_presses: int = Field(default=2, ge=0, le=19)
    duress: bool = True

    @model_validator(mode="after")
    def _single_tap_never_alerts(self) -> GesturesSection:
        if self.presses == 1:
            raise ValueError(
                "presses doit valoir 0 (désactivé) ou au moins 2 : un seul appui n'alerte jamais"
            )
        if self.test_presses == 1:
            raise ValueError(
                "test_presses doit valoir 0 (désactivé) ou au moins 2 : un seul appui ne fait jamais rien"
            )
        if self.test_presses and self.presses and self.test_presses >= self.presses:
            raise ValueError(
                "test_presses doit être inférieur à presses (ces appuis déclencheraient d'abord une alerte)"
            )
        return self

    def timing(self) -> GestureTiming:
        """The recogniser's thresholds."""
        return GestureTiming(
            hold_s=self.hold_s,
            presses=self.presses,
            within_s=self.within_s,
            cancel_presses=self.cancel_presses,
            cancel_within_s=self.cancel_within_s,
            test_presses=self.test_presses,
            duress=self.duress,
        )


class CancelSection(_Section):
    """``[cancel]``: PINs sent with a cancel (the dispatcher tells them apart, not the device)."""

    pin: Pin
    duress_pin: Pin | None = None

    @model_validator(mode="after")
    def _pins_differ(self) -> CancelSection:
        if self.duress_pin is not None and self.duress_pin == self.pin:
            raise ValueError("duress_pin doit différer de pin")
        return self


class FeedbackSection(_Section):
    """``[feedback]``: when to tell her an alert has not reached the dispatcher yet."""

    not_delivered_after_s: float = Field(default=15.0, gt=0, le=600)
    not_delivered_repeat_s: float = Field(default=15.0, gt=0, le=600)


class BatterySection(_Section):
    """``[battery]``: where the level comes from (sysfs, or a command) and when it is low."""

    sysfs_root: Path = Path("/sys/class/power_supply")
    command: str | None = Field(default=None, min_length=1)
    interval_s: float = Field(default=60.0, gt=0, le=3600)
    low_pct: int = Field(default=15, ge=0, le=100)
    low_repeat_s: float = Field(default=1800.0, gt=0, le=86400)


class GnssSection(_Section):
    """``[gnss]``: optional position from gpsd."""

    enabled: bool = False
    gpsd_host: str = "127.0.0.1"
    gpsd_port: int = Field(default=2947, ge=1, le=65535)
    max_fix_age_s: float = Field(default=30, gt=0, le=3600)
    # While one of its alerts is open, a fresh fix is sent this often (docs/protocol.md, position).
    position_interval_s: float = Field(default=5.0, ge=1, le=300)


class DeviceConfig(_Section):
    """The whole file. Paths are absolute once returned by :func:`load_config`."""

    device: DeviceSection
    mqtt: MqttSection = MqttSection()
    gpio: GpioSection = GpioSection()
    gestures: GesturesSection = GesturesSection()
    cancel: CancelSection
    gnss: GnssSection = GnssSection()
    feedback: FeedbackSection = FeedbackSection()
    battery: BatterySection = BatterySection()

    def haptic_policy(self) -> HapticPolicy:
        """When the repeated patterns (not delivered, low battery) are due."""
        return HapticPolicy(
            not_delivered_after_s=self.feedback.not_delivered_after_s,
            not_delivered_repeat_s=self.feedback.not_delivered_repeat_s,
            low_battery_pct=self.battery.low_pct,
            low_battery_repeat_s=self.battery.low_repeat_s,
        )

    @property
    def username(self) -> str:
        """MQTT username: configured, or the device id (the broker ACL relies on it)."""
        return self.mqtt.username or self.device.id


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(racine)"
        lines.append(f"{where}: {_problem(err)}")
    return "; ".join(lines)


def _problem(err: Any) -> str:
    """The installer's words for one pydantic error (pydantic's own text kept in brackets)."""
    kind = err["type"]
    if kind in _PROBLEMS:
        return _PROBLEMS[kind]
    if kind == "value_error":  # our validators' messages, already in French
        return str(err["ctx"]["error"])
    if kind == "string_pattern_mismatch":
        return f"ne correspond pas au motif {err['ctx']['pattern']}"
    return f"valeur refusée ({err['msg']})"


_PROBLEMS = {"extra_forbidden": "clé inconnue", "missing": "manquant"}


def parse_config(data: dict[str, Any], base_dir: Path) -> DeviceConfig:
    """Validate an already-parsed TOML document; resolve relative paths against ``base_dir``."""
    try:
        config = DeviceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    _check_duress_pin(config)
    return _resolve_paths(config, base_dir)


def _check_duress_pin(config: DeviceConfig) -> None:
    # Refuse to start rather than ignore the gesture: under threat, a duress cancel that
    # silently does nothing would leave her believing the police were told.
    if config.gestures.duress and config.cancel.duress_pin is None:
        raise ConfigError(
            "cancel.duress_pin: manquant, alors que le geste de contrainte est activé "
            "(gestures.duress = true) ; "
            "mettez le code PIN de contrainte donné au provisionnement, ou désactivez le geste "
            "(gestures.duress = false)"
        )


def _resolve(base_dir: Path, path: Path | None) -> Path | None:
    if path is None:
        return None
    path = path.expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def _resolve_paths(config: DeviceConfig, base_dir: Path) -> DeviceConfig:
    device = config.device.model_copy(
        update={
            "hmac_key_file": _resolve(base_dir, config.device.hmac_key_file),
            "state_dir": _resolve(base_dir, config.device.state_dir),
        }
    )
    battery = config.battery.model_copy(update={"sysfs_root": _resolve(base_dir, config.battery.sysfs_root)})
    mqtt = config.mqtt.model_copy(
        update={
            name: _resolve(base_dir, getattr(config.mqtt, name))
            for name in ("ca_file", "cert_file", "key_file", "password_file")
        }
    )
    return config.model_copy(update={"device": device, "mqtt": mqtt, "battery": battery})


def load_config(path: Path) -> DeviceConfig:
    """Read, validate and resolve the TOML file at ``path``; raise :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"impossible de lire la configuration {path} : {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} n'est pas du TOML valide : {exc}") from None
    config = parse_config(data, path.resolve().parent)
    read_hmac_key(config)  # fail at start-up, not at the first alert
    read_mqtt_password(config)
    _check_files_exist(config)
    return config


def _check_files_exist(config: DeviceConfig) -> None:
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(config.mqtt, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"mqtt.{name}: le fichier {path} n'existe pas")


def read_hmac_key(config: DeviceConfig) -> bytes:
    """The device's HMAC key, from the 64-hex-character key file."""
    path = config.device.hmac_key_file
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"device.hmac_key_file: impossible de lire {path} : {exc}") from None
    if not _HEX_KEY.fullmatch(text):
        raise ConfigError(f"device.hmac_key_file: {path} doit contenir exactement 64 caractères hexadécimaux")
    return bytes.fromhex(text)


def read_mqtt_password(config: DeviceConfig) -> str | None:
    """The broker password from ``mqtt.password_file``, or None when not configured."""
    path = config.mqtt.password_file
    if path is None:
        return None
    try:
        password = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"mqtt.password_file: impossible de lire {path} : {exc}") from None
    if not password:
        raise ConfigError(f"mqtt.password_file: {path} est vide")
    return password
