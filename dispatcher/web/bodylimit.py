"""Request body limits and a strict JSON pre-check for the whole HTTP app (ASGI middleware).

One 400 MB ``/api/auth/login`` body took the process to 1.76 GB and stalled
the event loop for 1.5 s. Here a declared ``Content-Length`` over the limit
gets a 413 before a byte of the body is read, and a body streamed without a
length (chunked) is cut off with a 413 as soon as it passes the limit. Limits
are per path prefix (login bodies are tiny; a convention can be large).

JSON bodies are parsed once here with a parser that refuses what Python's
``json`` would otherwise accept and the rest of the app cannot handle —
``NaN``/``Infinity`` (a 500 further down) and nesting deep enough to raise
``RecursionError`` — answering 422 with a message that never echoes the body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Refused = Callable[[str], None]


class _TooLarge(Exception):
    """The body went past the limit while it was being buffered."""


class _NonFinite(ValueError):
    """NaN, Infinity or -Infinity: accepted by Python's json, not by the JSON standard."""


def _reject_constant(_name: str) -> Any:
    raise _NonFinite


def check_json(body: bytes) -> str | None:
    """Why ``body`` is not acceptable JSON (French, never quoting it), or None when it is."""
    try:
        json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        return "JSON trop imbriqué"
    except _NonFinite:
        return "NaN et Infinity ne sont pas des nombres JSON valides"
    except UnicodeDecodeError:
        return "JSON invalide : encodage non UTF-8"
    except ValueError:
        return "JSON invalide"
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            mime = value.split(b";", 1)[0].strip().lower()
            return mime == b"application/json" or mime.endswith(b"+json")
    return False


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length header as an int; -1 when it is present but not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return None


class BodyLimit:
    """Caps every request body; refuses non-finite or too deeply nested JSON with 422."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        prefix_limits: Sequence[tuple[str, int]] = (),
        on_refused: Refused | None = None,
    ) -> None:
        self._app = app
        self._default = max_bytes
        # Longest prefix first, so that /api/auth/ wins over /api/.
        self._prefixes = sorted(prefix_limits, key=lambda p: len(p[0]), reverse=True)
        self._on_refused = on_refused or (lambda _reason: None)

    def limit_for(self, path: str) -> int:
        """The body limit of ``path`` in bytes."""
        return next((limit for prefix, limit in self._prefixes if path.startswith(prefix)), self._default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self._app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and (declared < 0 or declared > limit):
            await self._refuse(scope, receive, send, 413, f"corps de requête limité à {limit} octets")
            return
        if _is_json(scope):
            await self._json(scope, receive, send, limit)
        else:
            await self._streamed(scope, receive, send, limit)

    async def _json(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Read the (bounded) body, check it, then hand the same bytes to the app."""
        try:
            body = await _read_all(receive, limit)
        except _TooLarge:
            await self._refuse(scope, receive, send, 413, f"corps de requête limité à {limit} octets")
            return
        problem = check_json(body) if body else None
        if problem is not None:
            await self._refuse(scope, receive, send, 422, problem)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # only http.disconnect can come now
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._app(scope, replay, send)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Pass the body through, counting; past the limit, answer 413 and tell the app the client left.

        An exception raised from ``receive`` would not do: FastAPI turns any
        error while reading a body into its own 400.
        """
        seen = 0
        started = refused = False

        async def counting() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit and not started:
                    refused = True
                    await self._refuse(scope, receive, send, 413, f"corps de requête limité à {limit} octets")
                    return {"type": "http.disconnect"}
            return message

        async def watching(message: Message) -> None:
            nonlocal started
            if refused:
                return  # our 413 is the answer; whatever the app says after it is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, counting, watching)
        except Exception:
            if not refused:
                raise
            log.debug("requête abandonnée par l'application après le refus de son corps", exc_info=True)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        reason = "body_too_large" if status == 413 else "invalid_json"
        log.warning("HTTP %s %s refusée (%d) : %s", scope["method"], scope["path"], status, detail)
        self._on_refused(reason)
        # Connection: close — the rest of an oversized body is never read.
        headers = {"Connection": "close"} if status == 413 else None
        await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)


async def _read_all(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
