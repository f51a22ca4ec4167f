"""``make demo``: the whole of Vigie on this machine, nothing external.

A Mosquitto with the project's dev config, the dispatcher (embedded SQLite,
Hérault sample directory), the sandbox SMS/voice provider, and simulated
devices that press now and then. Every SMS and call the police would receive
is printed; one contact "answers" so the full cycle shows: alert → SMS/calls
→ acknowledged → the device feels it. ``--once`` runs a single alert and
exits 0 when the device got its 'acknowledged' feedback (used by the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from broker_config.runner import DISPATCHER_USER, DevBroker, free_port
from dispatcher.app import create_app
from dispatcher.auth import hash_password
from dispatcher.directory import load_directory
from dispatcher.domain import Device, DeviceKind
from dispatcher.notifier import SMS_WEBHOOK_PATH
from dispatcher.service import running_dispatcher
from dispatcher.settings import DispatcherSettings, FallbackContactSettings, MqttSettings, TwilioSettings
from dispatcher.store.base import NewUser
from dispatcher.store.sqlite import SqliteStore
from sandbox.fleet import SimulatedDevice, new_device_secrets
from sandbox.twilio_resources import NumberBehaviour
from sandbox.twilio_server import TwilioSandbox

HERAULT = Path(__file__).resolve().parents[1] / "dispatcher" / "data" / "herault.yaml"
DEMO_DEVICES = {  # device id -> (practitioner, site)
    "btn-cabinet-boutonnet": ("dr-claire-fabre", "cabinet-boutonnet"),
    "bracelet-mmg-benali": ("dr-karim-benali", "mmg-saint-gely"),
}
ANSWERING_CONTACT = "+33639980101"  # the Montpellier chef de poste replies "1" after 3 s
log = logging.getLogger("vigie.demo")


DEMO_ACCOUNTS = {  # console username -> (role, display name); passwords are generated per run
    "operateur": ("operator", "Opérateur SSJ 34"),
    "admin": ("admin", "Administrateur Vigie"),
}


@dataclass(frozen=True)
class DemoSecrets:
    """What this run generated: device keys/passwords and console passwords (printed once)."""

    devices: dict[str, tuple[bytes, str]]
    accounts: dict[str, str]


async def _prepare_store(db: Path) -> DemoSecrets:
    store = await SqliteStore.open(db)
    try:
        await load_directory(HERAULT, store, None)
        devices: dict[str, tuple[bytes, str]] = {}
        for device_id, (practitioner, site) in DEMO_DEVICES.items():
            key, password = new_device_secrets()
            kind = DeviceKind.BUTTON if device_id.startswith("btn") else DeviceKind.BRACELET
            device = Device(
                id=device_id, kind=kind, label=device_id, practitioner_id=practitioner, site_id=site
            )
            await store.add_device(device, key)
            devices[device_id] = (key, password)
        return DemoSecrets(devices, await _add_demo_accounts(store))
    finally:
        await store.close()


async def _add_demo_accounts(store: SqliteStore) -> dict[str, str]:
    """Console accounts for this run only; the store keeps argon2 hashes."""
    passwords = {name: secrets.token_urlsafe(9) for name in DEMO_ACCOUNTS}
    for username, (role, display) in DEMO_ACCOUNTS.items():
        await store.add_user(
            NewUser(
                username=username,
                display_name=display,
                password_hash=hash_password(passwords[username]),
                role=role,
                conventions=("ssj-34",) if role == "operator" else (),
            )
        )
    return passwords


def _print_provider_traffic(sandbox: TwilioSandbox, seen: int) -> int:
    for request in sandbox.requests[seen:]:
        if request.kind == "message":
            print(f"\n📱 SMS to {request.to}:\n{request.params.get('Body', '')}\n", flush=True)
        elif request.kind == "call":
            print(f"📞 CALL to {request.to} (TwiML, French voice, press 1 to acknowledge)", flush=True)
    return len(sandbox.requests)


async def _press_and_follow(device: SimulatedDevice, sandbox: TwilioSandbox, seen: int) -> int:
    print(f"\n🔴 {device.device_id}: hidden button held for 2 s — alert sent", flush=True)
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id, 10)
    print(f"   {device.device_id}: one short vibration — the dispatcher has the alert", flush=True)
    waiting = asyncio.create_task(asyncio.to_thread(device.wait_downlink, "acknowledged", alert_id, 30))
    while not waiting.done():
        seen = _print_provider_traffic(sandbox, seen)
        await asyncio.sleep(0.2)
    await waiting
    seen = _print_provider_traffic(sandbox, seen)
    print(f"   {device.device_id}: three pulses — a police contact acknowledged (replied 1)", flush=True)
    return seen


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


async def run(workdir: Path, *, once: bool, http_port: int, interval_s: float) -> None:
    await asyncio.to_thread(_fresh_dir, workdir)
    generated = await _prepare_store(workdir / "vigie.db")
    broker = DevBroker(workdir / "broker")
    broker.add_account(DISPATCHER_USER, new_device_secrets()[1])
    for device_id, (_, password) in generated.devices.items():
        broker.add_account(device_id, password)
    public = f"http://127.0.0.1:{http_port}"
    sandbox = TwilioSandbox(
        sms_webhook_url=public + SMS_WEBHOOK_PATH, log_path=workdir / "sandbox-requests.jsonl"
    )
    sandbox.set_number(ANSWERING_CONTACT, NumberBehaviour(ack_after_ms=3000))
    settings = DispatcherSettings(
        database_url=f"sqlite:///{workdir / 'vigie.db'}",
        mqtt=MqttSettings(port=broker.port, password=broker.accounts[DISPATCHER_USER]),  # type: ignore[arg-type]
        twilio=TwilioSettings(
            account_sid=sandbox.account_sid,
            auth_token=sandbox.auth_token,  # type: ignore[arg-type]
            from_number="+33465710199",
            api_base_url="http://placeholder",
            public_base_url=public,
        ),
        # Demo value (ARCEP fiction range); production: VIGIE_FALLBACK__NAME / __PHONE.
        fallback=FallbackContactSettings(name="Permanence Vigie (démo)", phone="+33465710190"),
        http_port=http_port,
    )
    with broker:
        await sandbox.start()
        settings.twilio.api_base_url = sandbox.base_url
        try:
            await _run_dispatcher(settings, broker, generated, sandbox, once=once, interval_s=interval_s)
        finally:
            await sandbox.stop()


async def _run_dispatcher(
    settings: DispatcherSettings,
    broker: DevBroker,
    generated: DemoSecrets,
    sandbox: TwilioSandbox,
    *,
    once: bool,
    interval_s: float,
) -> None:
    async with running_dispatcher(settings) as d:
        app = create_app(settings=settings, inbox=d.engine, metrics=d.metrics, ready=d.bridge, dispatcher=d)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=settings.http_port,
                log_level="warning",
                timeout_graceful_shutdown=2,
            )
        )
        http = asyncio.create_task(server.serve())
        devices = [
            SimulatedDevice(i, key, "127.0.0.1", broker.port, pw)
            for i, (key, pw) in generated.devices.items()
        ]
        for device in devices:
            await asyncio.to_thread(device.connect)
        _print_banner(settings.twilio.public_base_url, broker.port, generated.accounts)
        try:
            seen = 0
            while True:
                for device in devices:
                    seen = await _press_and_follow(device, sandbox, seen)
                    if once:
                        return
                    await asyncio.sleep(interval_s)
        finally:
            for device in devices:
                device.close()
            server.should_exit = True
            await http


def _print_banner(url: str, broker_port: int, accounts: dict[str, str]) -> None:
    print(f"Vigie demo running — broker 127.0.0.1:{broker_port}")
    print(f"  operator console: {url}/console/   API docs: {url}/docs   metrics: {url}/metrics")
    for username, password in accounts.items():
        print(f"  login {username!r} / {password!r} ({DEMO_ACCOUNTS[username][0]}, this run only)")
    print("  Ctrl-C to stop\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--once", action="store_true", help="one alert, then exit 0 once acknowledged")
    parser.add_argument(
        "--workdir", type=Path, default=Path("var/demo"), help="state of this run (wiped first)"
    )
    parser.add_argument("--http-port", type=int, default=8080, help="console/API port (0 = any free one)")
    parser.add_argument("--interval", type=float, default=20.0, help="seconds between simulated presses")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(
            run(
                args.workdir,
                once=args.once,
                http_port=args.http_port or free_port(),
                interval_s=args.interval,
            )
        )
    except KeyboardInterrupt:
        print("\ndemo stopped")


if __name__ == "__main__":
    main()
