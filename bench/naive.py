"""The naive baseline: what a first, blocking implementation of the alert path looks like.

One paho callback does everything, one message at a time: verify, insert into
SQLite (WAL, synchronous=FULL, like the dispatcher), then send the same
first-tier notifications (SMS + call to the chef de poste, call to the
officier de quart) with the synchronous ``twilio`` client, one after the
other. While a provider request is in flight, every other alert waits.

Run as its own process (like ``vigie serve``) by the benchmark::

    VIGIE_MQTT__PASSWORD=PW python -m bench.naive --port P --directory-db vigie.db \
        --db naive.db --sandbox http://127.0.0.1:S --done done.log

The broker password comes from the environment, as for ``vigie serve``: a
generated secret may start with "-", which argparse would take for an option,
and argv is readable by every local user.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from twilio.rest import Client

from bench.cluster import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from broker_config.runner import DISPATCHER_USER
from protocol.codec import Rejected, decode_uplink
from protocol.topics import parse_topic, shared_uplink_filter

# The first tier the dispatcher computes for a desk button at the Boutonnet practice.
FIRST_TIER = (("+33639980101", "sms"), ("+33639980101", "voice"), ("+33465710101", "voice"))
TWIML = '<Response><Say language="fr-FR">Alerte Vigie.</Say></Response>'


class NaiveHandler:
    """Verify → insert → notify, synchronously, inside paho's callback."""

    def __init__(self, keys: dict[str, bytes], db: Path, sandbox_url: str, done: Path) -> None:
        self._keys = keys
        self._db = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS alerts (id TEXT PRIMARY KEY, device TEXT, raw BLOB)")
        self._twilio = Client(ACCOUNT_SID, AUTH_TOKEN)
        self._twilio.api.base_url = sandbox_url
        self._done = done.open("a", buffering=1)

    def on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            alert = decode_uplink(bytes(msg.payload), parse_topic(msg.topic), self._keys.get)
        except Rejected:
            return
        self._db.execute(
            "INSERT OR IGNORE INTO alerts(id, device, raw) VALUES (?, ?, ?)",
            (alert.id, alert.device, bytes(msg.payload)),
        )
        account = self._twilio.api.v2010.account
        for n, (to, channel) in enumerate(FIRST_TIER):
            # The sandbox posts none (see naive_scenario).
            callback = f"http://127.0.0.1:9/status?ref={alert.id}/{n}"
            try:
                if channel == "sms":
                    account.messages.create(
                        to=to, from_=FROM_NUMBER, body="Alerte Vigie", status_callback=callback
                    )
                else:
                    account.calls.create(to=to, from_=FROM_NUMBER, twiml=TWIML, status_callback=callback)
            except Exception as exc:  # the naive way: log and move on
                print(f"send failed: {exc}", file=sys.stderr)
        self._done.write(f"{alert.id} {time.monotonic()}\n")


def device_keys(directory_db: Path) -> dict[str, bytes]:
    conn = sqlite3.connect(f"file:{directory_db}?mode=ro", uri=True)
    try:
        return {row[0]: bytes(row[1]) for row in conn.execute("SELECT id, hmac_key FROM devices")}
    finally:
        conn.close()


PASSWORD_VARIABLE = "VIGIE_MQTT__PASSWORD"


def parse_args(argv: list[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
    """The command line, plus the broker password read from ``environ``."""
    parser = argparse.ArgumentParser(description="Blocking baseline consumer for the benchmark")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--directory-db", type=Path, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--sandbox", required=True)
    parser.add_argument("--done", type=Path, required=True)
    args = parser.parse_args(argv)
    args.password = environ.get(PASSWORD_VARIABLE, "")
    if not args.password:
        parser.error(f"{PASSWORD_VARIABLE} must hold the dispatcher's broker password")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv, os.environ)
    handler = NaiveHandler(device_keys(args.directory_db), args.db, args.sandbox, args.done)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="naive-baseline", protocol=mqtt.MQTTv5)
    client.username_pw_set(DISPATCHER_USER, args.password)
    client.on_message = handler.on_message

    def subscribe(c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        print(f"connected: {reason}", flush=True)
        if not reason.is_failure:
            c.subscribe(shared_uplink_filter(), qos=1)

    def subscribed(_c: mqtt.Client, _u: object, _mid: int, reasons: list[Any], _p: object) -> None:
        print(f"subscribed: {[str(r) for r in reasons]}", flush=True)

    client.on_connect = subscribe
    client.on_subscribe = subscribed
    client.connect_async("127.0.0.1", args.port)
    signal.signal(signal.SIGTERM, lambda *_a: client.disconnect())
    print("naive baseline ready", flush=True)
    # Retry a refused first connection like any later one instead of dying on it.
    client.loop_forever(retry_first_connection=True)


if __name__ == "__main__":
    main()
