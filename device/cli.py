"""``vigie-device``: run the client on a Raspberry Pi, or simulate the button from the keyboard.

On the device::

    vigie-device --config /etc/vigie/device.toml

Anywhere (gpiozero mock pins; the keyboard drives the mock button, so the
real gesture recogniser and timings are exercised)::

    vigie-device --simulate [--config device.toml]

Simulator keys (one key, or one key per line when stdin is not a terminal):

====  ==========================================================================
a     alert: hold the button for ``gestures.hold_s``
m     alert: ``gestures.presses`` quick taps
t     test alert: the test gesture (``gestures.test_presses`` taps, then wait)
c     cancel: ``gestures.cancel_presses`` quick taps (needs an active alert)
d     duress cancel: ``cancel_presses - 1`` taps then a hold (looks like a cancel)
p     a single tap (does nothing, by design)
h     this help
q     quit
====  ==========================================================================
"""

from __future__ import annotations

import logging
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TextIO

import typer

from device.client import DeviceClient
from device.config import (
    ConfigError,
    DeviceConfig,
    load_config,
    parse_config,
    read_hmac_key,
    read_mqtt_password,
)
from device.link import Backoff

log = logging.getLogger("device.cli")

DEFAULT_CONFIG = Path("/etc/vigie/device.toml")
TAP_S = 0.08
BETWEEN_TAPS_S = 0.12
HELP = """touches : a=alerte (appui long)  m=alerte (appuis brefs)  t=test (appuis brefs, puis attendre)
          c=annuler  d=annuler sous contrainte  p=un seul appui (ignoré, c'est voulu)  h=aide  q=quitter"""


class SimulatedButton:
    """Presses a gpiozero mock pin the way a finger would."""

    def __init__(self, pin: object, *, config: DeviceConfig) -> None:
        self._pin = pin
        self._gestures = config.gestures
        self._active_low = config.gpio.pull_up

    def _down(self) -> None:
        getattr(self._pin, "drive_low" if self._active_low else "drive_high")()

    def _up(self) -> None:
        getattr(self._pin, "drive_high" if self._active_low else "drive_low")()

    def _pause(self, seconds: float) -> None:
        time.sleep(seconds)  # a simulated finger, not a test: real time is the point

    def press_for(self, seconds: float) -> None:
        """One press of ``seconds``."""
        self._down()
        self._pause(seconds)
        self._up()

    def taps(self, count: int) -> None:
        """``count`` quick taps."""
        for index in range(count):
            if index:
                self._pause(BETWEEN_TAPS_S)
            self.press_for(TAP_S)

    def hold(self) -> None:
        """A press long enough to be a hold."""
        self.press_for(self._gestures.hold_s + 0.1)

    def duress(self) -> None:
        """The duress cancel: taps, then the last press held."""
        self.taps(self._gestures.cancel_presses - 1)
        self._pause(BETWEEN_TAPS_S)
        self.hold()


def _keys(stream: TextIO) -> Iterator[str]:
    if stream.isatty():
        import termios
        import tty

        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        try:
            while char := stream.read(1):
                yield char
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    else:
        for line in stream:
            yield from line.strip()


def _test_gesture(client: DeviceClient, button: SimulatedButton) -> None:
    presses = client.config.gestures.test_presses
    if presses:
        button.taps(presses)  # recognised once gestures.within_s has passed without a third tap
    else:
        client.request_test()  # the gesture is disabled on this device: ask directly


def run_keyboard(
    client: DeviceClient, button: SimulatedButton, stop: threading.Event, stream: TextIO
) -> None:
    """Translate keys into presses until ``q`` or end of input."""
    actions = {
        "a": button.hold,
        "m": lambda: button.taps(max(client.config.gestures.presses, 2)),
        "t": lambda: _test_gesture(client, button),
        "c": lambda: button.taps(client.config.gestures.cancel_presses),
        "d": button.duress,
        "p": lambda: button.taps(1),
        "h": lambda: print(HELP, file=sys.stderr),
    }
    for key in _keys(stream):
        if key == "q":
            break
        action = actions.get(key.lower())
        if action is None:
            continue
        log.info("simulateur : touche %s", key)
        action()
    else:
        return  # end of input: keep running until a signal, like a service
    stop.set()


def _simulator_config() -> tuple[DeviceConfig, bytes]:
    state = Path(tempfile.mkdtemp(prefix="vigie-sim-"))
    key = secrets.token_bytes(32)
    (state / "hmac.key").write_text(key.hex())
    config = parse_config(
        {
            "device": {"id": "sim-device", "hmac_key_file": "hmac.key", "state_dir": "state"},
            "mqtt": {"port": 1883},
            "cancel": {"pin": "1234", "duress_pin": "9999"},
        },
        state,
    )
    log.warning(
        "pas de --config : balise simulée %s, clé jetable %s dans %s", config.device.id, key.hex(), state
    )
    return config, key


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _load(config_path: Path | None, simulate: bool) -> tuple[DeviceConfig, bytes, str | None]:
    if config_path is None and simulate:
        config, key = _simulator_config()
        return config, key, None
    config = load_config(config_path or DEFAULT_CONFIG)
    return config, read_hmac_key(config), read_mqtt_password(config)


def run(
    config_path: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Fichier TOML de la balise (défaut /etc/vigie/device.toml)."),
    ] = None,
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Broches GPIO simulées ; le bouton se pilote au clavier.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
    resend_interval_s: Annotated[
        float,
        typer.Option(help="Renvoyer les alertes non confirmées à cet intervalle (secondes).", hidden=True),
    ] = 10.0,
    reconnect_max_s: Annotated[
        int, typer.Option(help="Attente maximale entre deux reconnexions.", hidden=True)
    ] = 30,
) -> None:
    """Lancer le client Vigie de la balise.

    Avec --simulate, les touches tapées pilotent un bouton simulé : a=alerte (appui long), m=alerte
    (appuis brefs), t=test (appuis brefs), c=annuler, d=annuler sous contrainte, p=un seul appui
    (ignoré, c'est voulu), h=aide, q=quitter.
    """
    _configure_logging(log_level)
    try:
        config, key, password = _load(config_path, simulate)
    except ConfigError as exc:
        typer.echo(f"vigie-device : erreur de configuration : {exc}", err=True)
        raise typer.Exit(2) from None
    pin_factory = None
    if simulate:
        from gpiozero.pins.mock import MockFactory

        pin_factory = MockFactory()
    client = DeviceClient(
        config,
        key=key,
        password=password,
        pin_factory=pin_factory,
        resend_interval_s=resend_interval_s,
        backoff=Backoff(min_s=1, max_s=reconnect_max_s),
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    client.start()
    if pin_factory is not None:
        button = SimulatedButton(pin_factory.pin(config.gpio.button_pin), config=config)
        print(HELP, file=sys.stderr)
        threading.Thread(
            target=run_keyboard, args=(client, button, stop, sys.stdin), name="vigie-keyboard", daemon=True
        ).start()
    log.info("balise %s en marche", config.device.id)
    client.systemd.ready(f"device {config.device.id}")
    stop.wait()
    log.info("arrêt")
    client.systemd.stopping()
    client.stop()


def main() -> None:
    """Console-script entry point."""
    typer.run(run)
