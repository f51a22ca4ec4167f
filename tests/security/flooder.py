"""A hostile device's flood, run as a process of its own: ``python -m tests.security.flooder``.

A real attacker floods from another machine: its publishing costs the
dispatcher nothing but the messages. Run in the test's own process, the
flooder's paho threads took the interpreter lock from the dispatcher's network
thread, and the victim's delay measured that instead (issue 13, finding 3).

Reads payloads, one per line, from the file ``--payloads``; publishes them at
QoS 0 on ``--topic`` (``--rate`` per second, or as fast as paho can); prints
``started`` after a tenth of them and ``done`` at the end, on stdout. The
password comes from the ``FLOOD_PASSWORD`` environment variable (dev broker),
or the TLS identity from ``--ca``/``--cert``/``--key`` (production broker).
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt

PASSWORD_ENV = "FLOOD_PASSWORD"


def _client(args: argparse.Namespace) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )
    if args.ca:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
        ctx.load_cert_chain(args.cert, args.key)
        client.tls_set_context(ctx)
    else:
        client.username_pw_set(args.username, os.environ[PASSWORD_ENV])
    return client


def _connect(client: mqtt.Client, host: str, port: int) -> None:
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: object, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object) -> None:
        if rc.is_failure:
            refused.append(str(rc))
        connected.set()

    client.on_connect = on_connect
    client.connect(host, port)
    client.loop_start()
    if not connected.wait(15) or refused:
        sys.exit(f"flooder: not connected ({refused or 'no CONNACK'})")


def flood(client: mqtt.Client, topic: str, payloads: list[bytes], rate: float | None) -> None:
    """Publish every payload (QoS 0), paced at ``rate`` per second unless None."""
    begin = time.monotonic()
    for n, payload in enumerate(payloads):
        client.publish(topic, payload, qos=0)
        if n == len(payloads) // 10:
            print("started", flush=True)
        if rate is not None and n % 100 == 0:
            ahead = begin + n / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # pacing the attacker
    print("done", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--username", default="")
    parser.add_argument("--ca", default="")
    parser.add_argument("--cert", default="")
    parser.add_argument("--key", default="")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--payloads", required=True)
    parser.add_argument("--rate", type=float, default=None)
    args = parser.parse_args()
    with open(args.payloads, "rb") as f:
        payloads = f.read().splitlines()
    client = _client(args)
    _connect(client, args.host, args.port)
    flood(client, args.topic, payloads, args.rate)
    client.disconnect()  # after every queued publish is written
    client.loop_stop()


if __name__ == "__main__":
    main()
