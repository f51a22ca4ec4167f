"""``vigie-sandbox-twilio`` / ``python -m sandbox.twilio_server``: the sandbox as its own process."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path

import uvloop

from protocol import logformat
from sandbox.people import People
from sandbox.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioSandbox


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Local Twilio API sandbox for Vigie")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each API answer")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="share of API calls answered 500")
    parser.add_argument("--callback-latency-ms", type=float, default=50.0, help="delay between statuses")
    parser.add_argument(
        "--no-status-callbacks",
        dest="status_callbacks",
        action="store_false",
        help="post no status callback (benchmark: the alert path alone)",
    )
    parser.add_argument("--call-hold-ms", type=float, default=5000.0, help="answered call waits for a key")
    parser.add_argument("--sms-webhook-url", default=None, help="where replies are posted (our number)")
    parser.add_argument("--log", type=Path, default=None, help="JSONL file of every request")
    parser.add_argument("--seed", type=int, default=None, help="seed of the failure and people draws")
    parser.add_argument("--people", type=Path, default=None, help="personas TOML (see sandbox/people.py)")
    return parser.parse_args(argv)


FREEZE_CHECK_S = 2.0


async def keep_records_out_of_full_collections(check_s: float = FREEZE_CHECK_S) -> None:
    """Freeze what survived each full garbage collection (this process's heap only grows).

    The sandbox keeps every request, message, call and webhook it saw, so each
    of its full collections walked all of them: 50-160 ms with its loop
    stopped, every 10-15 s at 100 alerts/s, and those stalls counted in the
    benchmark's "received by the sandbox" (docs/performance.md, fifteenth
    round); Twilio's own servers do not stall for our heap. Frozen objects are
    still freed by reference counting; a reference cycle alive at a freeze and
    dropped later is never collected, a small leak a stand-in can afford. In
    this process only: the demo and the tests run the sandbox in theirs.
    """
    done = gc.get_stats()[2]["collections"]
    while True:
        await asyncio.sleep(check_s)
        if gc.get_stats()[2]["collections"] != done:
            gc.freeze()
            done = gc.get_stats()[2]["collections"]


async def _serve(args: argparse.Namespace) -> None:
    sandbox = TwilioSandbox(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        failure_rate=args.failure_rate,
        callback_latency_ms=args.callback_latency_ms,
        call_hold_ms=args.call_hold_ms,
        sms_webhook_url=args.sms_webhook_url,
        log_path=args.log,
        seed=args.seed,
        people=People.from_file(args.people, seed=args.seed) if args.people else None,
    )
    sandbox.configure(status_callbacks=args.status_callbacks)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sandbox.start()
    print(f"twilio sandbox listening on {sandbox.base_url} (account {sandbox.account_sid})", flush=True)
    freezer = asyncio.create_task(keep_records_out_of_full_collections())
    try:
        await stop.wait()
    finally:
        freezer.cancel()
        await sandbox.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the sandbox as a process until SIGINT/SIGTERM."""
    logformat.configure(logging.INFO, sys.stderr)
    uvloop.run(_serve(_parse_args(argv)))
