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
n s   with ``--gnss LAT,LON``: walk 20 m north / south
e w   with ``--gnss LAT,LON``: walk 20 m east / west
g     with ``--gnss LAT,LON``: lose the GNSS fix, or find it again
h     this help
q     quit
====  ==========================================================================

``--gnss LAT,LON`` runs a simulated gpsd (:mod:`device.gnss_sim`) at that
position and points the client at it: alerts carry the fix, and while an
alert is open the device sends where she is every ``gnss.position_interval_s``.
"""

from __future__ import annotations

import logging
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
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
from device.gnss_sim import SimulatedFix, SimulatedGpsd
from device.link import Backoff
from protocol import logformat

log = logging.getLogger("device.cli")

DEFAULT_CONFIG = Path("/etc/vigie/device.toml")
TAP_S = 0.08
BETWEEN_TAPS_S = 0.12
HELP = """touches : a=alerte (appui long)  m=alerte (appuis brefs)  t=test (appuis brefs, puis attendre)
          c=annuler  d=annuler sous contrainte  p=un seul appui (ignoré, c'est voulu)  h=aide  q=quitter"""
HELP_GNSS = "GNSS simulé : n/s/e/w=marcher 20 m vers le nord/sud/est/ouest  g=perdre ou retrouver le signal"
WALK_M = 20.0


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


def gnss_actions(gpsd: SimulatedGpsd, at: SimulatedFix) -> dict[str, Callable[[], object]]:
    """The simulator's keys that move the simulated receiver (``at``: where a found fix comes back)."""
    last = [at]

    def toggle() -> None:
        if gpsd.fix is None:
            gpsd.move_to(last[0])
            log.info("simulateur : signal GNSS retrouvé")
        else:
            last[0] = gpsd.fix
            gpsd.move_to(None)
            log.info("simulateur : signal GNSS perdu")

    def walk(north: float, east: float) -> Callable[[], object]:
        def step() -> None:
            moved = gpsd.walk(north * WALK_M, east * WALK_M)
            if moved is not None:
                log.info("simulateur : position %.6f, %.6f", moved.lat, moved.lon)

        return step

    return {"n": walk(1, 0), "s": walk(-1, 0), "e": walk(0, 1), "w": walk(0, -1), "g": toggle}


def run_keyboard(
    client: DeviceClient,
    button: SimulatedButton,
    stop: threading.Event,
    stream: TextIO,
    extra: dict[str, Callable[[], object]] | None = None,
) -> None:
    """Translate keys into presses (and ``extra`` actions) until ``q`` or end of input."""
    actions: dict[str, Callable[[], object]] = {
        "a": button.hold,
        "m": lambda: button.taps(max(client.config.gestures.presses, 2)),
        "t": lambda: _test_gesture(client, button),
        "c": lambda: button.taps(client.config.gestures.cancel_presses),
        "d": button.duress,
        "p": lambda: button.taps(1),
        "h": lambda: print(HELP, file=sys.stderr),
        **(extra or {}),
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
    logformat.configure(level, sys.stderr)


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
    gnss: Annotated[
        str | None,
        typer.Option(
            "--gnss",
            metavar="LAT,LON",
            help="Avec --simulate : un récepteur GNSS simulé à cette position "
            "(touches n/s/e/w pour marcher, g pour perdre ou retrouver le signal).",
        ),
    ] = None,
) -> None:
    """Lancer le client Vigie de la balise.

    Avec --simulate, les touches tapées pilotent un bouton simulé : a=alerte (appui long), m=alerte
    (appuis brefs), t=test (appuis brefs), c=annuler, d=annuler sous contrainte, p=un seul appui
    (ignoré, c'est voulu), h=aide, q=quitter ; avec --gnss, n/s/e/w=marcher 20 m, g=perdre ou
    retrouver le signal GNSS.
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
    gpsd, extra = None, None
    if gnss is not None:
        if not simulate:
            typer.echo("vigie-device : --gnss ne s'emploie qu'avec --simulate", err=True)
            raise typer.Exit(2)
        at = _parse_fix(gnss)
        gpsd = SimulatedGpsd(at).start()
        config = config.model_copy(
            update={"gnss": config.gnss.model_copy(update={"enabled": True, "gpsd_port": gpsd.port})}
        )
        extra = gnss_actions(gpsd, at)
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
        print(HELP if gpsd is None else f"{HELP}\n{HELP_GNSS}", file=sys.stderr)
        threading.Thread(
            target=run_keyboard,
            args=(client, button, stop, sys.stdin, extra),
            name="vigie-keyboard",
            daemon=True,
        ).start()
    log.info("balise %s en marche", config.device.id)
    client.systemd.ready(f"balise {config.device.id}")
    stop.wait()
    log.info("arrêt")
    client.systemd.stopping()
    client.stop()
    if gpsd is not None:
        gpsd.stop()


def _parse_fix(text: str) -> SimulatedFix:
    """``43.6109,3.8772`` → a fix there; a clear error otherwise."""
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        typer.echo(f"vigie-device : --gnss attend LAT,LON (ex. 43.6109,3.8772), pas {text!r}", err=True)
        raise typer.Exit(2) from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        typer.echo(f"vigie-device : --gnss {text} : latitude ou longitude hors limites", err=True)
        raise typer.Exit(2)
    return SimulatedFix(lat, lon)


def main() -> None:
    """Console-script entry point."""
    typer.run(run)
