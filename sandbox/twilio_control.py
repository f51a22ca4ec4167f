"""The sandbox's control API: see what was sent, act as a contact, tune the network (docs/sandbox.md).

No authentication: the sandbox only ever listens on loopback.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from typing import Any

from aiohttp import web

from sandbox.people import persona_from_json
from sandbox.twilio_resources import NumberBehaviour
from sandbox.twilio_server import SandboxError, TwilioSandbox, WebhookResult

Handler = Callable[[web.Request], Awaitable[web.Response]]


def add_control_routes(app: web.Application, sandbox: TwilioSandbox) -> None:
    """Mount the ``/_sandbox/...`` endpoints of ``sandbox`` on ``app``."""

    def bound(handler: Callable[[TwilioSandbox, web.Request], Awaitable[web.Response]]) -> Handler:
        return functools.partial(handler, sandbox)

    app.router.add_get("/_sandbox/config", bound(_config))
    app.router.add_post("/_sandbox/config", bound(_config))
    app.router.add_post("/_sandbox/numbers", bound(_numbers))
    app.router.add_delete("/_sandbox/numbers", bound(_numbers))
    app.router.add_post("/_sandbox/reply", bound(_reply))
    app.router.add_post("/_sandbox/press", bound(_press))
    app.router.add_get("/_sandbox/requests", bound(_requests))
    app.router.add_get("/_sandbox/webhooks", bound(_webhooks))
    app.router.add_post("/_sandbox/reset", bound(_reset))
    app.router.add_get("/_sandbox/people", bound(_people))
    app.router.add_post("/_sandbox/people", bound(_people))


async def _config(sandbox: TwilioSandbox, request: web.Request) -> web.Response:
    if request.method == "POST":
        try:
            sandbox.configure(**await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(asdict(sandbox.config))

async def _numbers(sandbox: TwilioSandbox, request: web.Request) -> web.Response:
    if request.method == "DELETE":
        sandbox.clear_numbers()
        return web.json_response({})
    try:
        data = dict(await request.json())
        number = str(data.pop("number"))
        sandbox.set_number(number, NumberBehaviour.from_json(data))
    except (KeyError, ValueError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({n: b.to_json() for n, b in sandbox.numbers.items()})

async def _reply(sandbox: TwilioSandbox, request: web.Request) -> web.Response:
    data = await request.json()
    return await _control(sandbox.reply(str(data["from"]), str(data.get("body", "1")), to=data.get("to")))

async def _press(sandbox: TwilioSandbox, request: web.Request) -> web.Response:
    data = await request.json()
    digits = str(data.get("digits", "1"))
    return await _control(sandbox.press(call_sid=data.get("call_sid"), to=data.get("to"), digits=digits))

async def _requests(sandbox: TwilioSandbox, request: web.Request) -> web.Response:
    wanted = {k: request.query[k] for k in ("to", "kind", "ref") if k in request.query}
    selected = [r.to_json() for r in sandbox.requests if all(getattr(r, k) == v for k, v in wanted.items())]
    return web.json_response(selected)

async def _webhooks(sandbox: TwilioSandbox, _request: web.Request) -> web.Response:
    return web.json_response([w.to_json() for w in sandbox.webhooks])

async def _people(sandbox: TwilioSandbox, request: web.Request) -> web.Response:
    if request.method == "POST":
        try:
            data = dict(await request.json())
            number = str(data.pop("number"))
            sandbox.people.personas[number] = persona_from_json(data)
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({n: asdict(p) for n, p in sandbox.people.personas.items()})

async def _reset(sandbox: TwilioSandbox, _request: web.Request) -> web.Response:
    sandbox.reset()
    return web.json_response({})


async def _control(action: Coroutine[Any, Any, WebhookResult]) -> web.Response:
    try:
        result = await action
    except SandboxError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    except TimeoutError:
        return web.json_response({"error": "timed out"}, status=504)
    return web.json_response(result.to_json())
