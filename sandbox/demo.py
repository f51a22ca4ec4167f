"""``make demo``: the whole of Vigie on this machine, nothing external, until Ctrl-C.

A Mosquitto with the project's dev config, the dispatcher (embedded SQLite,
Hérault sample directory with short demo timings), the sandbox SMS/voice
provider whose contacts behave like people (sandbox/people.py: some reply
« 1 » after a few seconds, some never, some calls ring out), and two
simulated devices that heartbeat and press now and then. Every SMS, call,
reply and vibration is printed, and every path shows: taken at the first
tier, escalated, chain exhausted. A third device is left for a person to
press from the keyboard (``make demo-device``).

``--once`` runs a single alert and exits 0 when the device got its
'acknowledged' feedback; ``--duration`` stops by itself (the soak test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import faulthandler
import logging
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from broker_config.runner import DISPATCHER_USER, BrokerError, DevBroker, free_port
from dispatcher.alerting.notifier import SMS_WEBHOOK_PATH
from dispatcher.directory.geocoding import AddressGeocoder
from dispatcher.service import WS_COMPRESSION, Dispatcher, freeze_what_was_loaded, running_dispatcher
from dispatcher.settings import (
    DispatcherSettings,
    FallbackContactSettings,
    GeocoderSettings,
    MqttSettings,
    TwilioSettings,
)
from dispatcher.web.app import create_app
from protocol import logformat
from protocol.topics import UplinkKind
from sandbox import demo_setup as setup
from sandbox.ban_server import BanSandbox
from sandbox.demo_watch import AlertWatch, device_felt, say
from sandbox.fleet import SimulatedDevice
from sandbox.people import DEMO_PEOPLE, People
from sandbox.twilio_resources import NumberBehaviour
from sandbox.twilio_server import TwilioSandbox

ANSWERING_CONTACT = "+33639980101"  # --once: the Montpellier chef de poste always replies after 3 s
HEARTBEAT_S = 15.0  # simulated devices; the dispatcher flags a device after 2 x 30 s of silence
log = logging.getLogger("vigie.demo")


class DemoError(Exception):
    """The demo cannot start; the message says what to change (one line, in French)."""


@dataclass(frozen=True)
class Options:
    """The command line, checked."""

    workdir: Path
    http_port: int
    broker_port: int
    interval_s: float
    ack_timeout_s: int
    people: Path
    once: bool
    duration_s: float | None
    seed: int | None


def check_port_free(port: int, variable: str) -> None:
    """Refuse early, in one line, a port something else already listens on."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            other = 27080 if variable == "HTTP_PORT" else 27883
            raise DemoError(
                f"le port {port} est déjà utilisé ({variable}) : relancez avec make demo {variable}={other}"
            ) from None


async def run(options: Options) -> None:
    """Prepare everything, run until Ctrl-C / SIGTERM / ``--duration``, then stop cleanly."""
    await asyncio.to_thread(_fresh_dir, options.workdir)
    directory = setup.demo_directory(
        setup.HERAULT, options.workdir / "annuaire.yaml", ack_timeout_s=options.ack_timeout_s
    )
    generated = await setup.prepare_store(options.workdir / "vigie.db", options.workdir / "annuaire.yaml")
    broker = DevBroker(options.workdir / "broker", port=options.broker_port)
    setup.broker_accounts(broker, generated)
    hand_config = setup.write_hand_device(
        options.workdir / "appareil",
        generated,
        broker.port,
        setup.practitioner_entry(directory, setup.HAND_PRACTITIONER),
    )
    public = f"http://127.0.0.1:{options.http_port}"
    sandbox = TwilioSandbox(
        auth_token=generated.twilio_auth_token,
        sms_webhook_url=public + SMS_WEBHOOK_PATH,
        log_path=options.workdir / "sandbox-requests.jsonl",
        people=None if options.once else People.from_file(options.people, seed=options.seed),
        seed=options.seed,
    )
    if options.once:
        sandbox.set_number(ANSWERING_CONTACT, NumberBehaviour(ack_after_ms=3000))
    try:
        broker.start()
    except BrokerError as exc:
        raise DemoError(f"le broker MQTT n'a pas démarré : {exc} (journal : {broker.log_file})") from None
    try:
        await sandbox.start()
        settings = _settings(options, public, broker, generated, sandbox)
        async with running_dispatcher(settings) as d, _demo_geocoder() as geocoder:
            await _serve(d, settings, options, broker, generated, sandbox, hand_config, directory, geocoder)
    finally:
        await sandbox.stop()
        broker.stop()


@contextlib.asynccontextmanager
async def _demo_geocoder() -> AsyncIterator[AddressGeocoder]:
    """The BAN sandbox and a geocoder on it: addresses of her page's visits are placed offline."""
    async with BanSandbox() as ban:
        settings = GeocoderSettings(domain=ban.base_domain, scheme="http")
        async with AddressGeocoder(settings) as geocoder:
            yield geocoder


def _settings(
    options: Options, public: str, broker: DevBroker, generated: setup.DemoSecrets, sandbox: TwilioSandbox
) -> DispatcherSettings:
    return DispatcherSettings(
        database_url=f"sqlite:///{options.workdir / 'vigie.db'}",
        mqtt=MqttSettings(port=broker.port, password=broker.accounts[DISPATCHER_USER]),  # type: ignore[arg-type]
        twilio=TwilioSettings(
            account_sid=sandbox.account_sid,
            auth_token=generated.twilio_auth_token,  # type: ignore[arg-type]
            from_number="+33465710199",
            api_base_url=sandbox.base_url,
            public_base_url=public,
        ),
        # Demo value (ARCEP fiction range); production: VIGIE_FALLBACK__NAME / __PHONE.
        fallback=FallbackContactSettings(name="Permanence Vigie (démo)", phone="+33465710190"),
        http_port=options.http_port,
    )


async def _serve(
    d: Dispatcher,
    settings: DispatcherSettings,
    options: Options,
    broker: DevBroker,
    generated: setup.DemoSecrets,
    sandbox: TwilioSandbox,
    hand_config: Path,
    directory: dict[str, object],
    geocoder: AddressGeocoder,
) -> None:
    app = create_app(
        settings=settings, inbox=d.engine, metrics=d.metrics, ready=d.bridge, dispatcher=d, geocoder=geocoder
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=settings.http_port,
            log_level="warning",
            timeout_graceful_shutdown=2,
            ws_per_message_deflate=WS_COMPRESSION,
        )
    )
    freeze_what_was_loaded()  # the demo's process is its own: as vigie serve does
    http = asyncio.create_task(server.serve())
    devices = [_simulated(device_id, generated, broker.port) for device_id in setup.SIMULATED_DEVICES]
    watch = AlertWatch(d.store, d.bus, sandbox, _phone_names(directory))
    tasks: list[asyncio.Task[None]] = []
    try:
        for device in devices:
            await asyncio.to_thread(device.connect)
            tasks.append(asyncio.create_task(_heartbeats(device)))
        tasks.append(asyncio.create_task(watch.run()))
        _print_banner(settings, broker.port, generated, hand_config, sandbox.base_url)
        if options.once:
            await _once(devices[0], watch)
            return
        await _press_until_stopped(devices, watch, options)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for device in devices:
            device.close()
        await sandbox.stop()  # no more simulated replies to a console that is going away
        server.should_exit = True
        await http
    say("\n" + watch.summary())


def _simulated(device_id: str, generated: setup.DemoSecrets, broker_port: int) -> SimulatedDevice:
    key, password = generated.devices[device_id]
    return SimulatedDevice(device_id, key, "127.0.0.1", broker_port, password, on_downlink=device_felt)


async def _heartbeats(device: SimulatedDevice) -> None:
    """Presence and heartbeats as a real device sends them, so health is truthful."""
    started = time.monotonic()
    await asyncio.to_thread(device.publish_status, "online")
    while True:
        uptime = int(time.monotonic() - started)
        await asyncio.to_thread(
            device.send, UplinkKind.HEARTBEAT, battery_pct=87, firmware="demo", uptime_s=uptime
        )
        await asyncio.sleep(HEARTBEAT_S)


async def _press(device: SimulatedDevice, watch: AlertWatch, number: int) -> str:
    label = f"alerte {number} ({device.device_id})"
    alert_id = await asyncio.to_thread(device.alert)
    watch.pressed(alert_id, label)
    say(f"\n🔴 {label} : bouton caché maintenu 2 s — alerte envoyée")
    return alert_id


async def _once(device: SimulatedDevice, watch: AlertWatch) -> None:
    alert_id = await _press(device, watch, 1)
    await asyncio.to_thread(device.wait_downlink, "acknowledged", alert_id, 60)
    async with asyncio.timeout(10):
        await watch.wait_outcome(alert_id, "prise en charge")


async def _press_until_stopped(devices: list[SimulatedDevice], watch: AlertWatch, options: Options) -> None:
    """Press each device in turn every ``interval_s``; stop on a signal or after ``duration_s``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
    number = 0
    while not stop.is_set():
        number += 1
        await _press(devices[(number - 1) % len(devices)], watch, number)
        wait = options.interval_s
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        if deadline is not None and time.monotonic() >= deadline:
            break
    say("\narrêt de la démo…")


def _phone_names(directory: dict[str, object]) -> dict[str, str]:
    names: dict[str, str] = {}
    for convention in directory.get("conventions", []) or []:  # type: ignore[attr-defined]
        for unit in convention.get("units", []):
            for contact in unit.get("contacts", []):
                names[str(contact["phone"])] = f"({contact['name']})"
    return names


def _print_banner(
    settings: DispatcherSettings,
    broker_port: int,
    generated: setup.DemoSecrets,
    hand_config: Path,
    sandbox_url: str,
) -> None:
    url = settings.twilio.public_base_url
    say(f"Démo Vigie en marche — broker MQTT 127.0.0.1:{broker_port}, console {url}/console/")
    say(f"  page de la praticienne : {url}/moi/   API : {url}/docs   métriques : {url}/metrics")
    for username, password in generated.accounts.items():
        role = setup.ROLE_NAMES[setup.DEMO_ACCOUNTS[username][0]]
        say(f"  identifiant {username} / mot de passe {password}  ({role}, valable pour cette démo)")
    say("  Appuyer soi-même sur un bouton : dans un autre terminal,")
    say(f"    make demo-device        (= vigie-device --simulate --config {hand_config})")
    say("    puis « a » (maintien 2 s) ou « m » (trois appuis) ; « c » annule, « q » quitte")
    say(f"    ({setup.HAND_DEVICE} est « hors ligne » dans la console tant qu'il ne tourne pas)")
    say(f"  Répondre à la place d'un contact : curl, voir docs/sandbox.md (bac à sable : {sandbox_url})")
    say("  Ctrl-C pour arrêter\n")


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def parse_args(argv: list[str] | None = None) -> Options:
    """The demo's command line (``make demo`` passes the ports)."""
    parser = argparse.ArgumentParser(
        description="Démo Vigie : broker, dispatcher, bac à sable Twilio et balises simulées, en local."
    )
    parser.add_argument(
        "--once", action="store_true", help="une seule alerte, puis sortie (code 0) dès sa prise en charge"
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path("var/demo"), help="dossier de cette démo (vidé au départ)"
    )
    parser.add_argument(
        "--http-port", type=int, default=8080, help="port de la console et de l'API (0 = un port libre)"
    )
    parser.add_argument(
        "--broker-port", type=int, default=1883, help="port du broker MQTT (0 = un port libre)"
    )
    parser.add_argument("--interval", type=float, default=20.0, help="secondes entre deux appuis simulés")
    parser.add_argument(
        "--ack-timeout", type=int, default=25, help="secondes d'attente de chaque palier (5 au moins)"
    )
    parser.add_argument("--people", type=Path, default=DEMO_PEOPLE, help="qui répond (personnages, TOML)")
    parser.add_argument("--duration", type=float, default=None, help="s'arrêter seule après tant de secondes")
    parser.add_argument("--seed", type=int, default=None, help="graine des tirages des personnages")
    args = parser.parse_args(argv)
    return Options(
        workdir=args.workdir,
        http_port=args.http_port or free_port(),
        broker_port=args.broker_port or free_port(),
        interval_s=args.interval,
        ack_timeout_s=max(5, args.ack_timeout),
        people=args.people,
        once=args.once,
        duration_s=args.duration,
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m sandbox.demo`` (``make demo``)."""
    options = parse_args(argv)
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: every thread's stack, without stopping
    logformat.configure(logging.WARNING, sys.stderr)
    try:
        check_port_free(options.http_port, "HTTP_PORT")
        check_port_free(options.broker_port, "BROKER_PORT")
        asyncio.run(run(options))
    except DemoError as exc:
        print(f"make demo : {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        say("\ndémo arrêtée")


if __name__ == "__main__":
    main()
