"""The operator console as the benchmark sees it: publish → the console's WebSocket push.

One operator, scoped to the Hérault convention the alert devices belong to,
logs in exactly as the console page does (``POST /api/auth/login``, then the
``vigie_session`` cookie on the ``/api/ws`` handshake) and keeps the feed
open for the whole scenario. The client runs in its own process
(``python -m bench.console``), like the sandbox, so that the receive times
it records are not delayed by the load generator's GIL, and its parsing does
not slow the load generator down.

It writes one line per alert, the first time the feed shows it:
``<alert id> <time.monotonic()>``, taken as the frame is received. An alert is
shown by a push (``{"type": "alert", "alert": {"id": …}}``, alone or in a
batch frame, dispatcher/web/console/frames.py) or by a later
snapshot, which the feed sends when it fell behind and which the page lists
at once. Its first line is ``ready`` once the first snapshot came: alerts
published before that would be in it, not pushed.

With ``--overview-every S`` the same operator also reads the overview map
(``GET /api/overview``) every S seconds, as the console does while the map is
open, and with ``--health-table-every S`` the devices' health table (``GET
/api/devices/health?limit=200``), as consoles do at new alerts; it writes how
long each read took to ``<out>.<page>`` (seconds, one per line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench.cluster import Process, python_module
from bench.load import SentAlert
from bench.report import percentiles_ms
from dispatcher.store import open_store
from dispatcher.store.base import NewUser
from dispatcher.web.auth import SESSION_COOKIE, hash_password
from dispatcher.web.console.frames import messages_in

OPERATOR = "op-bench"
# Not a secret: a throw-away account in a throw-away database, on loopback.
OPERATOR_PASSWORD = "bench operator password"
CONVENTION = "ssj-34"  # the Boutonnet practice's convention (bench/cluster.py's SITE)
READY = "ready"
#: The goal the figure is read against: an alert is on the operator's console within 1 s.
GOAL_MS = 1000.0
#: The pages a watcher may read again and again, by name: what the console asks for.
PAGES = {"overview": "/api/overview", "health-table": "/api/devices/health?limit=200"}


def read_pushes(text: str) -> tuple[bool, dict[str, float]]:
    """The watcher's output: whether it got its snapshot, and alert id -> first push time."""
    ready = False
    pushed: dict[str, float] = {}
    for line in text.splitlines():
        if line == READY:
            ready = True
            continue
        alert_id, _, at = line.partition(" ")
        if at and alert_id not in pushed:  # a line cut by a read during its write has no time yet
            pushed[alert_id] = float(at)
    return ready, pushed


def push_latency(sent: Sequence[SentAlert], pushed: Mapping[str, float]) -> dict[str, Any]:
    """Publish → first console push, per alert: quantiles (ms), never pushed, within the goal."""
    delays = [pushed[a.alert_id] - a.published_at for a in sent if a.alert_id in pushed]
    return {
        "push_ms": percentiles_ms(delays),
        "pushed": len(delays),
        "never_pushed": len(sent) - len(delays),
        "over_goal": sum(1 for d in delays if d * 1000 > GOAL_MS),
        "goal_ms": GOAL_MS,
    }


async def add_operator(store_url: str) -> None:
    """The benchmark's operator account (role operator, the Hérault convention)."""
    store = await open_store(store_url)
    try:
        await store.add_user(
            NewUser(
                username=OPERATOR,
                display_name="Opérateur du banc",
                password_hash=hash_password(OPERATOR_PASSWORD),
                role="operator",
                conventions=(CONVENTION,),
            )
        )
    finally:
        await store.close()


async def login(base_url: str, username: str, password: str) -> str:
    """Log in as the console page does; the session cookie's value."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/api/auth/login", json={"username": username, "password": password})
        response.raise_for_status()
        return str(response.cookies[SESSION_COOKIE])


async def watch(
    base_url: str,
    username: str,
    password: str,
    out: Path,
    *,
    reopen_every_s: float | None = None,
    read_every_s: Mapping[str, float] | None = None,
) -> None:
    """Log in, open the feed, and write each alert's first push until the feed closes.

    ``reopen_every_s``: close the feed and open it again that often, as a page
    reloaded does: each time the dispatcher builds a fresh snapshot of every
    open alert (in a surge, thousands) while alerts keep coming.
    ``read_every_s``: each of these :data:`PAGES` read that often meanwhile.
    """
    session = await login(base_url, username, password)
    async with asyncio.TaskGroup() as tasks:  # a failed read ends the watcher, with its error
        pollers = [
            tasks.create_task(_read_page(base_url, session, PAGES[page], page_path(out, page), every_s))
            for page, every_s in (read_every_s or {}).items()
        ]
        await _feed(base_url, session, out, reopen_every_s)
        for poller in pollers:
            poller.cancel()


def page_path(out: Path, page: str) -> Path:
    """Where the watcher writes the read times of ``page``."""
    return out.with_name(f"{out.name}.{page}")


async def _read_page(base_url: str, session: str, path: str, out: Path, every_s: float) -> None:
    cookie = {"Cookie": f"{SESSION_COOKIE}={session}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        with out.open("a", buffering=1) as lines:
            while True:
                started = time.monotonic()
                response = await client.get(path, headers=cookie)
                response.raise_for_status()
                lines.write(f"{time.monotonic() - started}\n")
                await asyncio.sleep(every_s)


async def _feed(base_url: str, session: str, out: Path, reopen_every_s: float | None) -> None:
    ws_url = base_url.replace("http", "ws", 1) + "/api/ws"
    feed = FeedLines()
    with out.open("a", buffering=1) as lines:  # line-buffered: the parent reads it while we run
        while True:
            async with websockets.connect(
                ws_url, additional_headers={"Cookie": f"{SESSION_COOKIE}={session}"}, max_size=None
            ) as ws:
                try:
                    async with asyncio.timeout(reopen_every_s):
                        async for frame in ws:
                            at = time.monotonic()
                            for line in feed.lines_for(json.loads(frame), at):
                                lines.write(line + "\n")
                        return  # the dispatcher closed the feed
                except TimeoutError:
                    continue  # reopen


class FeedLines:
    """The watcher's output lines for the feed's messages, in order (pure)."""

    def __init__(self) -> None:
        self._ready = False
        self._seen: set[str] = set()

    def lines_for(self, frame: Mapping[str, Any], at: float) -> list[str]:
        """The lines for one frame of the feed: a lone message or a batch of them."""
        return [line for message in messages_in(frame) for line in self._lines_for(message, at)]

    def _lines_for(self, message: Mapping[str, Any], at: float) -> list[str]:
        """``ready`` for the first snapshot; then each alert the first time the feed shows it."""
        if message.get("type") == "snapshot" and not self._ready:
            self._ready = True
            self._seen.update(a["id"] for a in message["alerts"])
            return [READY]
        # A later snapshot is the feed catching up after it fell behind: the page
        # lists what it holds from that moment, as it lists a pushed alert.
        if message.get("type") == "snapshot":
            shown = list(message["alerts"])
        elif message.get("type") == "alert":
            shown = [message["alert"]]
        else:
            shown = []
        out = []
        for alert in shown:
            if alert["id"] not in self._seen:
                self._seen.add(alert["id"])
                out.append(f"{alert['id']} {at}")
        return out


class ConsoleWatcher:
    """The watcher process of one scenario: start it, wait for its snapshot, read its pushes."""

    def __init__(
        self,
        workdir: Path,
        base_url: str,
        *,
        reopen_every_s: float | None = None,
        read_every_s: Mapping[str, float] | None = None,
    ) -> None:
        self.out = workdir / "console-pushes.log"
        self.out.write_text("")
        argv = python_module(
            "bench.console", "--url", base_url, "--username", OPERATOR, "--out", str(self.out)
        )
        if reopen_every_s is not None:
            argv += ["--reopen-every", str(reopen_every_s)]
        for page, every_s in (read_every_s or {}).items():
            page_path(self.out, page).write_text("")
            argv += [f"--{page}-every", str(every_s)]
        self._process = Process("console", argv, workdir / "console.log")

    def start(self, timeout: float = 30.0) -> None:
        """Start the client and wait until its feed is live (the snapshot came)."""
        self._process.start()
        deadline = time.monotonic() + timeout
        while not self.ready():
            proc = self._process.proc
            if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"console watcher not live; see {self._process.log_path}")
            time.sleep(0.05)

    def ready(self) -> bool:
        return read_pushes(self.out.read_text())[0]

    def pushes(self) -> dict[str, float]:
        """Alert id -> when the console first received it (time.monotonic())."""
        return read_pushes(self.out.read_text())[1]

    def page_reads(self, page: str) -> dict[str, Any]:
        """The reads of ``page`` (a key of :data:`PAGES`): how many, and how long they took (ms)."""
        times = [float(line) for line in page_path(self.out, page).read_text().split()]
        return {"reads": len(times), "read_ms": percentiles_ms(times)}

    def stop(self) -> None:
        self._process.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One operator console's feed, first push per alert.")
    parser.add_argument("--url", required=True, help="the dispatcher's HTTP base URL")
    parser.add_argument("--username", default=OPERATOR)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reopen-every", type=float, default=None, help="seconds; a page reloaded")
    parser.add_argument("--overview-every", type=float, default=None, help="seconds; the map read again")
    parser.add_argument(
        "--health-table-every", type=float, default=None, help="seconds; the devices' health table read again"
    )
    args = parser.parse_args(argv)
    reads = {"overview": args.overview_every, "health-table": args.health_table_every}
    asyncio.run(
        watch(
            args.url,
            args.username,
            OPERATOR_PASSWORD,
            args.out,
            reopen_every_s=args.reopen_every,
            read_every_s={page: every_s for page, every_s in reads.items() if every_s is not None},
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
