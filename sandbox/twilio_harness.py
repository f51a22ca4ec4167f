"""Helpers to wire the Twilio sandbox to a real webhook app in tests and demos.

* :class:`RecordingInbox` — a :class:`dispatcher.alerting.webhooks.TwilioInbox` that
  records what reaches it and lets a test await it (no sleeping).
* :func:`serve_asgi` — runs an ASGI app with uvicorn on a given port inside
  the current event loop, returning once it accepts requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from sandbox.waiting import Waiters


@dataclass
class RecordingInbox:
    """Records status callbacks, SMS replies and keypresses; answers as configured."""

    sms_answer: str | None = "Alerte prise en charge. Merci."
    keypress_accepted: bool = True
    statuses: list[tuple[str, str, str | None]] = field(default_factory=list)
    replies: list[tuple[str, str]] = field(default_factory=list)
    keypresses: list[tuple[str, str, str]] = field(default_factory=list)
    refs: list[str | None] = field(default_factory=list)  # the ``ref`` of each status and keypress
    _waiters: Waiters = field(default_factory=Waiters)

    async def delivery_status(
        self, sid: str, status: str, error_code: str | None, *, ref: str | None = None
    ) -> None:
        """Record ``(sid, status, error_code)`` (and the reference in :attr:`refs`)."""
        self.statuses.append((sid, status, error_code))
        self.refs.append(ref)
        self._notify()

    async def claim_sms(self, message_sid: str) -> bool:
        """Every SMS id is new here (the real inbox records them to refuse replays)."""
        return True

    async def sms_reply(self, from_number: str, body: str) -> str | None:
        """Record ``(from_number, body)`` and answer :attr:`sms_answer`."""
        self.replies.append((from_number, body))
        self._notify()
        return self.sms_answer

    async def call_keypress(
        self, call_sid: str, from_number: str, digits: str, *, ref: str | None = None
    ) -> bool:
        """Record ``(call_sid, from_number, digits)`` and answer :attr:`keypress_accepted`."""
        self.keypresses.append((call_sid, from_number, digits))
        self.refs.append(ref)
        self._notify()
        return self.keypress_accepted and digits == "1"

    @property
    def called(self) -> bool:
        """Whether anything reached the inbox."""
        return bool(self.statuses or self.replies or self.keypresses)

    def statuses_of(self, sid: str) -> list[str]:
        """Statuses received for one SID, in arrival order."""
        return [status for s, status, _ in self.statuses if s == sid]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checked whenever something arrives."""
        await self._waiters.wait_for(predicate, within)

    def _notify(self) -> None:
        self._waiters.notify()


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any, port: int, *, host: str = "127.0.0.1", within: float = 10.0
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn in this loop; yields its base URL once it is listening."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(within):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError(f"uvicorn exited before listening on {host}:{port}")
                await asyncio.sleep(0.01)  # uvicorn offers no event to await for "started"
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
