"""The sandbox's REST API: the part of Twilio's 2010-04-01 API the ``twilio`` library uses.

Messages and Calls (create, fetch, list), basic auth, Twilio's error documents. Every request is
recorded, then authenticated, delayed and maybe failed as configured, then answered; a created
message or call starts its simulated life (:mod:`sandbox.twilio_simulation`).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from sandbox import twilio_lists
from sandbox.twilio_resources import (
    API_VERSION,
    E164,
    MAX_BODY,
    Call,
    Message,
    error_body,
    http_status_for,
    new_sid,
)
from sandbox.twilio_simulation import CallSimulation
from sandbox.twilio_state import CallState, RecordedRequest


class TwilioApi(CallSimulation):
    """The HTTP routes of the provider's API."""

    def _add_api_routes(self, app: web.Application) -> None:
        base = f"/{API_VERSION}/Accounts/{{account}}"
        app.router.add_post(f"{base}/Messages.json", self._create_message)
        app.router.add_post(f"{base}/Calls.json", self._create_call)
        app.router.add_get(f"{base}/Messages.json", self._list_messages)
        app.router.add_get(f"{base}/Calls.json", self._list_calls)
        app.router.add_get(base + "/Messages/{sid:[A-Za-z0-9]+}.json", self._fetch_message)
        app.router.add_get(base + "/Calls/{sid:[A-Za-z0-9]+}.json", self._fetch_call)
        app.router.add_route("*", f"/{API_VERSION}/{{tail:.*}}", self._not_found)

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
        response = handle(record, post)
        if behaviour and behaviour.answer_late_ms:
            await asyncio.sleep(behaviour.answer_late_ms / 1000)  # created: its callbacks go meanwhile
        return response

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
        self._call_states[call.sid] = CallState()
        record.sid = call.sid
        self._spawn(self._call_lifecycle(call))
        return _json(call.to_json(), 201)

    def _fetch(self, resources: dict[str, Any], request: web.Request) -> web.Response:
        resource = resources.get(request.match_info["sid"])
        if resource is None:
            return _error(20404, f"The requested resource {request.path} was not found")
        return _json(resource.to_json(), 200)

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


def _reference(status_callback: str | None) -> str | None:
    if not status_callback:
        return None
    refs = parse_qs(urlsplit(status_callback).query).get("ref")
    return refs[0] if refs else None


def _json(body: dict[str, Any], status: int) -> web.Response:
    response = web.json_response(body, status=status)
    response.headers["Twilio-Request-Id"] = new_sid("RQ")
    return response


def _error(code: int, message: str | None = None) -> web.Response:
    status = http_status_for(code)
    return _json(error_body(status, code, message), status)
