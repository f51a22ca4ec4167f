"""What the Twilio sandbox holds: its settings, what it recorded, and the state its parts share.

:class:`SandboxState` owns the resources (messages, calls), the per-number scripts, the people and
the recorded requests/webhooks; :mod:`sandbox.twilio_simulation` (the network and the people) and
:mod:`sandbox.twilio_api` (the REST API) build on it, :mod:`sandbox.twilio_server` assembles them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from aiohttp import ClientSession, web
from twilio.request_validator import RequestValidator

from sandbox.people import People
from sandbox.twilio_resources import Call, Message, NumberBehaviour
from sandbox.waiting import Waiters

log = logging.getLogger("sandbox.twilio_server")  # one logger name for the whole sandbox, as before

DEFAULT_ACCOUNT_SID = "AC" + "5a" * 16
DEFAULT_AUTH_TOKEN = "sandbox-auth-token-0123456789abcdef"


class SandboxError(Exception):
    """A control request that cannot be honoured (unknown call, no webhook URL...)."""


@dataclass
class SandboxConfig:
    """Runtime-adjustable behaviour of the whole sandbox."""

    latency_ms: float = 0.0  # before answering an API request
    failure_rate: float = 0.0  # share of API requests answered with a 500
    callback_latency_ms: float = 0.0  # between two status transitions / callbacks
    call_hold_ms: float = 5000.0  # an answered call waits this long for a keypress
    sms_webhook_url: str | None = None  # our number's "A message comes in" URL
    # Off: no status callback is posted at all, as for an account whose callbacks go nowhere. The
    # benchmark measures the alert path alone this way; refusing them instead (a closed port) had
    # the sandbox fail and retry 1,200 connections a second, slowing its own API for every peer.
    status_callbacks: bool = True


@dataclass
class RecordedRequest:
    """One API request, recorded when it arrived."""

    seq: int
    received_at: float  # time.monotonic()
    wall_time: float  # time.time()
    method: str
    path: str
    kind: str  # message | call | fetch-message | fetch-call | list-message | list-call | other
    to: str | None
    params: dict[str, str]
    ref: str | None = None  # the notifier's reference, read from StatusCallback's ?ref=
    status: int | None = None
    sid: str | None = None
    answered_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        # Shallow (vars, not asdict's deep copy): logged once per request, and
        # the copy is serialised right away. Same JSON.
        return {"type": "api", **vars(self)}


@dataclass
class RecordedWebhook:
    """One request the sandbox made to the dispatcher."""

    seq: int
    sent_at: float
    kind: str  # status | sms | gather | twiml
    url: str
    params: dict[str, str]
    status: int | None = None
    response: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": "webhook", **vars(self)}


@dataclass(frozen=True)
class WebhookResult:
    """What the dispatcher answered to a simulated reply or keypress."""

    status: int | None
    body: str
    said: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CallState:
    """Where one call is, for a keypress to wait on."""

    answered: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    pressed: asyncio.Event = field(default_factory=asyncio.Event)


class SandboxState:
    """The state shared by the sandbox's parts, and the helpers they all use."""

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        failure_rate: float = 0.0,
        callback_latency_ms: float = 0.0,
        call_hold_ms: float = 5000.0,
        sms_webhook_url: str | None = None,
        log_path: Path | None = None,
        seed: int | None = None,
        people: People | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.config = SandboxConfig(
            latency_ms=latency_ms,
            failure_rate=failure_rate,
            callback_latency_ms=callback_latency_ms,
            call_hold_ms=call_hold_ms,
            sms_webhook_url=sms_webhook_url,
        )
        self.requests: list[RecordedRequest] = []
        self.webhooks: list[RecordedWebhook] = []
        self.messages: dict[str, Message] = {}
        self.calls: dict[str, Call] = {}
        self._host = host
        self._port = port
        self._log_path = log_path
        self._log: IO[str] | None = None
        self._rng = random.Random(seed)
        self._validator = RequestValidator(auth_token)
        self._numbers: dict[str, NumberBehaviour] = {}
        self.people = people or People({}, seed=seed)
        self._call_states: dict[str, CallState] = {}
        self._seq = itertools.count(1)
        self._inflight = 0
        self._waiters = Waiters()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("bac à sable : tâche de fond en échec", exc_info=task.exception())

    def _notify(self) -> None:
        self._waiters.notify()

    def _write_log(self, entry: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.write(json.dumps(entry, ensure_ascii=False) + "\n")
