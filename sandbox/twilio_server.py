"""A local stand-in for Twilio's REST API, callbacks and callees.

It speaks enough of the 2010-04-01 API (Messages, Calls, basic auth, error
documents) for the unmodified ``twilio`` library to talk to it, then plays
the network and the people on it: signed status callbacks, a contact
replying ``1`` by SMS, a contact pressing ``1`` during a call. Latency,
failure rate and per-number behaviour are adjustable while it runs, and
every API request is recorded (monotonic receive time, JSONL log) so tests
and the benchmark can count what was sent to whom.

Control API (``/_sandbox/...``, no auth: bind it to loopback): :mod:`sandbox.twilio_control`.
The process: :mod:`sandbox.twilio_cli`. Curl examples: docs/sandbox.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from aiohttp import (
    ClientError,
    ClientOSError,
    ClientSession,
    ClientTimeout,
    ServerDisconnectedError,
    TCPConnector,
    web,
)
from twilio.request_validator import RequestValidator
from yarl import URL

from sandbox import twilio_lists
from sandbox.people import People
from sandbox.twilio_resources import (
    API_VERSION,
    E164,
    MAX_BODY,
    Call,
    Message,
    NumberBehaviour,
    error_body,
    find_gather_action,
    http_status_for,
    new_sid,
    rfc2822,
    said_texts,
)
from sandbox.waiting import Waiters

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT_SID = "AC" + "5a" * 16
DEFAULT_AUTH_TOKEN = "sandbox-auth-token-0123456789abcdef"
WEBHOOK_TIMEOUT_S = 15.0  # Twilio gives up on a webhook after 15 s
IDLE_CONNECTION_S = 2.0  # keep-alive of the sandbox's connections to the dispatcher
PRESS_WAIT_S = 30.0
DEFAULT_SMS_ERROR = {"undelivered": 30003, "failed": 30008}


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
class _CallState:
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    pressed: asyncio.Event = field(default_factory=asyncio.Event)


class TwilioSandbox:
    """The sandbox server; ``await start()`` then point the notifier at :attr:`base_url`."""

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
        self._call_states: dict[str, _CallState] = {}
        self._seq = itertools.count(1)
        self._inflight = 0
        self._waiters = Waiters()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    # -- lifecycle -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running sandbox (the notifier's ``api_base_url``)."""
        if self._runner is None:
            raise RuntimeError("sandbox not started")
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        """Listen on host:port (port 0 picks a free one)."""
        if self._log_path is not None:
            self._log = self._log_path.open("a", encoding="utf-8", buffering=1)
        # Idle connections are dropped before the dispatcher's server would close them
        # (uvicorn: 5 s), so a callback seldom lands on a connection being closed.
        self._session = ClientSession(
            timeout=ClientTimeout(total=WEBHOOK_TIMEOUT_S),
            connector=TCPConnector(keepalive_timeout=IDLE_CONNECTION_S),
        )
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        if self._port == 0:
            self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Cancel pending callbacks, close the listener, the client session and the log."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self._session = None  # stop() may be called twice (the demo stops it before the dispatcher)
        if self._log is not None:
            self._log.close()
            self._log = None

    async def __aenter__(self) -> TwilioSandbox:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # -- Python control API ----------------------------------------------------------

    def configure(self, **changes: Any) -> SandboxConfig:
        """Change :class:`SandboxConfig` fields while running."""
        for name, value in changes.items():
            if not hasattr(self.config, name):
                raise ValueError(f"unknown sandbox setting {name!r}")
            setattr(self.config, name, value)
        return self.config

    def set_number(self, number: str, behaviour: NumberBehaviour) -> None:
        """Override how ``number`` behaves (always fails, never answers, acks by itself...)."""
        self._numbers[number] = behaviour

    @property
    def numbers(self) -> dict[str, NumberBehaviour]:
        """The scripted numbers (a copy)."""
        return dict(self._numbers)

    def clear_numbers(self) -> None:
        """Forget every per-number override."""
        self._numbers.clear()

    def reset(self) -> None:
        """Forget recorded requests, webhooks and resources (not the configuration)."""
        self.requests.clear()
        self.webhooks.clear()
        self.messages.clear()
        self.calls.clear()
        self._call_states.clear()

    def requests_to(self, number: str, kind: str | None = None) -> list[RecordedRequest]:
        """API requests whose ``To`` is ``number`` (optionally of one kind)."""
        return [r for r in self.requests if r.to == number and (kind is None or r.kind == kind)]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until ``predicate()`` holds; re-checked after every recorded event."""
        await self._waiters.wait_for(predicate, within)

    async def idle(self, within: float = 5.0) -> None:
        """Wait until no API request is being processed (latency sleeps included)."""
        await self.wait_for(lambda: self._inflight == 0, within)

    async def reply(self, from_number: str, body: str, *, to: str | None = None) -> WebhookResult:
        """Simulate ``from_number`` texting ``body`` to our number (the inbound SMS webhook)."""
        url = self.config.sms_webhook_url
        if not url:
            raise SandboxError("no sms_webhook_url configured")
        to = to or self._our_number_for(from_number)
        sid = new_sid("SM")
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "Body": body,
            "From": from_number,
            "FromCountry": "FR",
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": to,
            "ToCountry": "FR",
        }
        return await self._post_webhook("sms", url, params)

    async def press(
        self, *, call_sid: str | None = None, to: str | None = None, digits: str = "1"
    ) -> WebhookResult:
        """Simulate the callee of a call pressing ``digits`` (posts the ``<Gather action>``)."""
        call = self._find_call(call_sid, to)
        state = self._call_states[call.sid]
        # The callee can only press once the call is answered and the TwiML read.
        await asyncio.wait_for(_first(state.answered, state.ended), PRESS_WAIT_S)
        if call.final or not state.answered.is_set():
            raise SandboxError(f"call {call.sid} is {call.status}: nobody can press a key")
        if not call.gather_action:
            raise SandboxError(f"call {call.sid} has no <Gather action> to post to")
        params = self._call_params(call) | {
            "Digits": digits,
            "FinishedOnKey": "",
            "msg": "Gather End",
        }
        result = await self._post_webhook("gather", call.gather_action, params)
        state.pressed.set()
        return result

    # -- HTTP app --------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        base = f"/{API_VERSION}/Accounts/{{account}}"
        app.router.add_post(f"{base}/Messages.json", self._create_message)
        app.router.add_post(f"{base}/Calls.json", self._create_call)
        app.router.add_get(f"{base}/Messages.json", self._list_messages)
        app.router.add_get(f"{base}/Calls.json", self._list_calls)
        app.router.add_get(base + "/Messages/{sid:[A-Za-z0-9]+}.json", self._fetch_message)
        app.router.add_get(base + "/Calls/{sid:[A-Za-z0-9]+}.json", self._fetch_call)
        app.router.add_route("*", f"/{API_VERSION}/{{tail:.*}}", self._not_found)
        from sandbox.twilio_control import add_control_routes  # it imports this module

        add_control_routes(app, self)
        return app

    async def _create_message(self, request: web.Request) -> web.Response:
        return await self._api(request, "message", self._do_create_message)

    async def _create_call(self, request: web.Request) -> web.Response:
        return await self._api(request, "call", self._do_create_call)

    async def _fetch_message(self, request: web.Request) -> web.Response:
        return await self._api(request, "fetch-message", lambda _r, _p: self._fetch(self.messages, request))

    async def _fetch_call(self, request: web.Request) -> web.Response:
        return await self._api(request, "fetch-call", lambda _r, _p: self._fetch(self.calls, request))

    async def _list_messages(self, request: web.Request) -> web.Response:
        return await self._api(request, "list-message", lambda _r, _p: self._list(request, "messages"))

    async def _list_calls(self, request: web.Request) -> web.Response:
        return await self._api(request, "list-call", lambda _r, _p: self._list(request, "calls"))

    def _list(self, request: web.Request, key: str) -> web.Response:
        query = dict(request.query)
        try:
            if key == "messages":
                body = twilio_lists.page(
                    key, twilio_lists.select_messages(self.messages.values(), query), query, request.path
                )
            else:
                body = twilio_lists.page(
                    key, twilio_lists.select_calls(self.calls.values(), query), query, request.path
                )
        except twilio_lists.BadQuery as exc:
            return _error(20001, str(exc))
        return _json(body, 200)

    async def _not_found(self, request: web.Request) -> web.Response:
        return await self._api(request, "other", lambda _r, _p: _error(20404, f"{request.path} not found"))

    async def _api(
        self,
        request: web.Request,
        kind: str,
        handle: Callable[[RecordedRequest, Any], web.Response],
    ) -> web.Response:
        """Record, authenticate, delay, maybe fail, then run ``handle``."""
        post = await request.post() if request.method == "POST" else None
        params = {k: str(v) for k, v in post.items()} if post is not None else {}
        record = self._record_request(request, kind, params)
        self._inflight += 1
        try:
            response = await self._answer(request, record, post, handle)
        finally:
            self._inflight -= 1
        record.status = response.status
        record.answered_at = time.monotonic()
        self._write_log(record.to_json())
        self._notify()
        return response

    async def _answer(
        self,
        request: web.Request,
        record: RecordedRequest,
        post: Any,
        handle: Callable[[RecordedRequest, Any], web.Response],
    ) -> web.Response:
        if not self._authenticated(request):
            response = _error(20003, "Authentication Error - invalid username or password")
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return response
        if request.match_info.get("account", self.account_sid) != self.account_sid:
            return _error(20404, f"The requested resource {request.path} was not found")
        behaviour = self._numbers.get(record.to or "")
        latency = behaviour.latency_ms if behaviour and behaviour.latency_ms is not None else None
        delay = latency if latency is not None else self.config.latency_ms
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if (behaviour and behaviour.http_500) or self._rng.random() < self.config.failure_rate:
            return _error(20500)
        return handle(record, post)

    def _authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == self.account_sid and password == self.auth_token

    def _validate_numbers(self, post: Any) -> web.Response | None:
        to, from_ = post.get("To"), post.get("From")
        if not to:
            return _error(21604)
        if not E164.match(str(to)):
            return _error(21211, f"Invalid 'To' Phone Number: {to}")
        if not from_:
            return _error(21603)
        behaviour = self._numbers.get(str(to))
        if behaviour and behaviour.reject_code:
            return _error(behaviour.reject_code)
        return None

    def _do_create_message(self, record: RecordedRequest, post: Any) -> web.Response:
        invalid = self._validate_numbers(post)
        if invalid is not None:
            return invalid
        body = str(post.get("Body") or "")
        if not body:
            return _error(21602)
        if len(body) > MAX_BODY:
            return _error(21617)
        message = Message(
            sid=new_sid("SM"),
            account_sid=self.account_sid,
            to=str(post["To"]),
            from_=str(post["From"]),
            body=body,
            status_callback=post.get("StatusCallback"),
        )
        self.messages[message.sid] = message
        record.sid = message.sid
        self._spawn(self._message_lifecycle(message))
        return _json(message.to_json(), 201)

    def _do_create_call(self, record: RecordedRequest, post: Any) -> web.Response:
        invalid = self._validate_numbers(post)
        if invalid is not None:
            return invalid
        twiml, url = post.get("Twiml"), post.get("Url")
        if not twiml and not url:
            return _error(21205)
        events: set[str] = set()
        for value in post.getall("StatusCallbackEvent", []):
            events.update(str(value).split())
        call = Call(
            sid=new_sid("CA"),
            account_sid=self.account_sid,
            to=str(post["To"]),
            from_=str(post["From"]),
            twiml=str(twiml) if twiml else None,
            url=str(url) if url else None,
            status_callback=post.get("StatusCallback"),
            status_callback_events=frozenset(events or {"completed"}),
        )
        self.calls[call.sid] = call
        self._call_states[call.sid] = _CallState()
        record.sid = call.sid
        self._spawn(self._call_lifecycle(call))
        return _json(call.to_json(), 201)

    def _fetch(self, resources: dict[str, Any], request: web.Request) -> web.Response:
        resource = resources.get(request.match_info["sid"])
        if resource is None:
            return _error(20404, f"The requested resource {request.path} was not found")
        return _json(resource.to_json(), 200)

    # -- simulated network and people ------------------------------------------------

    async def _step(self) -> None:
        if self.config.callback_latency_ms > 0:
            await asyncio.sleep(self.config.callback_latency_ms / 1000)

    async def _message_lifecycle(self, message: Message) -> None:
        behaviour = self._numbers.get(message.to) or self.people.sms(message.to, message.body)
        behaviour = behaviour or NumberBehaviour()
        final = behaviour.sms_status
        steps = ["sent", final] if final != "failed" else [final]
        for status in steps:
            await self._step()
            code = behaviour.error_code or DEFAULT_SMS_ERROR.get(status)
            message.set_status(status, code if status in DEFAULT_SMS_ERROR else None)
            await self._message_callback(message)
        if final == "delivered" and behaviour.ack_after_ms is not None:
            await asyncio.sleep(behaviour.ack_after_ms / 1000)
            if self.config.sms_webhook_url:
                await self.reply(message.to, behaviour.ack_text, to=message.from_)

    async def _message_callback(self, message: Message) -> None:
        if not message.status_callback:
            self._notify()
            return
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_,
            "MessageSid": message.sid,
            "MessageStatus": message.status,
            "SmsSid": message.sid,
            "SmsStatus": message.status,
            "To": message.to,
        }
        if message.error_code is not None:
            params["ErrorCode"] = str(message.error_code)
        await self._post_webhook("status", message.status_callback, params)

    async def _call_lifecycle(self, call: Call) -> None:
        state = self._call_states[call.sid]
        behaviour = self._numbers.get(call.to) or self.people.call(call.to) or NumberBehaviour()
        try:
            for status, event in (("initiated", "initiated"), ("ringing", "ringing")):
                await self._step()
                call.set_status(status)
                await self._call_callback(call, event)
            await self._step()
            if behaviour.call_status != "completed":
                call.set_status(behaviour.call_status)
                return
            call.set_status("in-progress")
            await self._load_twiml(call)
            state.answered.set()
            await self._call_callback(call, "answered")
            await self._hold(call, state, behaviour)
            call.set_status("completed")
        finally:
            state.ended.set()
            if call.final:
                await self._call_callback(call, "completed")

    async def _hold(self, call: Call, state: _CallState, behaviour: NumberBehaviour) -> None:
        """Keep the answered call open until a keypress, or until the gather gives up."""
        if behaviour.ack_after_ms is not None and call.gather_action:
            await asyncio.sleep(behaviour.ack_after_ms / 1000)
            if not state.pressed.is_set():
                await self.press(call_sid=call.sid, digits=behaviour.ack_text)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.pressed.wait(), self.config.call_hold_ms / 1000)

    async def _load_twiml(self, call: Call) -> None:
        if call.twiml is not None:
            call.gather_action = find_gather_action(call.twiml, None)
            return
        if call.url is None:
            return
        result = await self._post_webhook("twiml", call.url, self._call_params(call))
        if result.status == 200:
            call.gather_action = find_gather_action(result.body, call.url)

    async def _call_callback(self, call: Call, event: str) -> None:
        if not call.status_callback or event not in call.status_callback_events:
            self._notify()
            return
        call.sequence += 1
        params = self._call_params(call) | {
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(call.sequence - 1),
            "Timestamp": rfc2822(call.date_updated),  # what to_json() says, without building it all
        }
        if call.final and call.duration is not None:
            params["CallDuration"] = str(call.duration)
            params["Duration"] = str(max(1, (call.duration + 59) // 60))
        await self._post_webhook("status", call.status_callback, params)

    def _call_params(self, call: Call) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": call.status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": "outbound-api",
            "From": call.from_,
            "To": call.to,
        }

    async def _post_webhook(self, kind: str, url: str, params: dict[str, str]) -> WebhookResult:
        """POST a form to the dispatcher, signed like Twilio, and record it."""
        record = RecordedWebhook(next(self._seq), time.monotonic(), kind, url, params)
        self.webhooks.append(record)
        headers = {
            "X-Twilio-Signature": self._validator.compute_signature(url, params),
            "I-Twilio-Idempotency-Token": new_sid(""),
            "User-Agent": "TwilioProxy/1.1",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        try:
            await self._send_webhook(record, url, urlencode(params).encode(), headers)
        except (ClientError, TimeoutError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            log.warning("sandbox webhook %s to %s failed: %s", kind, url, record.error)
        self._write_log(record.to_json())
        self._notify()
        return WebhookResult(record.status, record.response, said_texts(record.response), record.error)

    async def _send_webhook(self, record: RecordedWebhook, url: str, body: bytes, headers: Any) -> None:
        """POST ``body``; once more on a pooled connection the server had just closed.

        A keep-alive connection the dispatcher's server times out as we reuse it
        resets before the request is read: sending again is what any HTTP client
        does, and what keeps the demo's long runs from losing a callback.
        """
        assert self._session is not None, "sandbox not started"
        for attempt in (1, 2):
            try:
                # encoded=True: send the URL byte for byte as given, like Twilio does;
                # requoting it (yarl's default) would break the signature.
                async with self._session.post(URL(url, encoded=True), data=body, headers=headers) as response:
                    record.status = response.status
                    record.response = await response.text()
                    return
            except (ServerDisconnectedError, ClientOSError):
                if attempt == 2:
                    raise

    # -- helpers ---------------------------------------------------------------------

    def _find_call(self, call_sid: str | None, to: str | None) -> Call:
        if call_sid:
            call = self.calls.get(call_sid)
            if call is None:
                raise SandboxError(f"unknown call {call_sid}")
            return call
        live = [c for c in self.calls.values() if c.to == to and not c.final]
        if not live:
            raise SandboxError(f"no live call to {to}")
        return live[-1]

    def _our_number_for(self, contact: str) -> str:
        for message in reversed(list(self.messages.values())):
            if message.to == contact:
                return message.from_
        for call in reversed(list(self.calls.values())):
            if call.to == contact:
                return call.from_
        raise SandboxError(f"nothing was sent to {contact}: say which number it replies to ('to')")

    def _record_request(self, request: web.Request, kind: str, params: dict[str, str]) -> RecordedRequest:
        record = RecordedRequest(
            seq=next(self._seq),
            received_at=time.monotonic(),
            wall_time=time.time(),
            method=request.method,
            path=request.path,
            kind=kind,
            to=params.get("To"),
            params=params,
            ref=_reference(params.get("StatusCallback")),
        )
        self.requests.append(record)
        self._notify()
        return record

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sandbox background task failed", exc_info=task.exception())

    def _notify(self) -> None:
        self._waiters.notify()

    def _write_log(self, entry: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.write(json.dumps(entry, ensure_ascii=False) + "\n")

    # -- control endpoints -----------------------------------------------------------

def _reference(status_callback: str | None) -> str | None:
    if not status_callback:
        return None
    refs = parse_qs(urlsplit(status_callback).query).get("ref")
    return refs[0] if refs else None


async def _first(*events: asyncio.Event) -> None:
    """Return as soon as one of ``events`` is set."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()


def _json(body: dict[str, Any], status: int) -> web.Response:
    response = web.json_response(body, status=status)
    response.headers["Twilio-Request-Id"] = new_sid("RQ")
    return response


def _error(code: int, message: str | None = None) -> web.Response:
    status = http_status_for(code)
    return _json(error_body(status, code, message), status)


def main(argv: list[str] | None = None) -> None:
    """Run the sandbox as a process until SIGINT/SIGTERM (``sandbox/twilio_cli.py``)."""
    from sandbox.twilio_cli import main as run

    run(argv)


if __name__ == "__main__":
    main()
