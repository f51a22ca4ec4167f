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

The parts: :mod:`sandbox.twilio_state` (settings, records), :mod:`sandbox.twilio_api` (the REST API),
:mod:`sandbox.twilio_simulation` (message and call lifecycles, people, signed webhooks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from sandbox.twilio_api import TwilioApi
from sandbox.twilio_resources import NumberBehaviour
from sandbox.twilio_state import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    RecordedRequest,
    RecordedWebhook,
    SandboxConfig,
    SandboxError,
    WebhookResult,
)

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "RecordedRequest",
    "RecordedWebhook",
    "SandboxConfig",
    "SandboxError",
    "TwilioSandbox",
    "WebhookResult",
    "main",
]

WEBHOOK_TIMEOUT_S = 15.0  # Twilio gives up on a webhook after 15 s
IDLE_CONNECTION_S = 2.0  # keep-alive of the sandbox's connections to the dispatcher


class TwilioSandbox(TwilioApi):
    """The sandbox server; ``await start()`` then point the notifier at :attr:`base_url`.

    Acting as a contact from Python: :meth:`reply` and :meth:`press` (:mod:`sandbox.twilio_simulation`).
    """

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

    # -- HTTP app --------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        self._add_api_routes(app)
        from sandbox.twilio_control import add_control_routes  # it imports this module

        add_control_routes(app, self)
        return app


def main(argv: list[str] | None = None) -> None:
    """Run the sandbox as a process until SIGINT/SIGTERM (``sandbox/twilio_cli.py``)."""
    from sandbox.twilio_cli import main as run

    run(argv)


if __name__ == "__main__":
    main()
