"""SMS and voice notifications through Twilio (or the sandbox speaking its API).

The notifier sends exactly one HTTP request per call and says what is known
about it afterwards, as a :class:`ProviderResult`; it never retries by
itself. Retrying a POST whose fate is unknown could text a gendarme twice —
or, worse, make the engine believe an SMS left when it did not — so the
decision belongs to the caller, who persists the attempt. The rule is:

* the provider created the resource -> ``accepted`` with its SID;
* nothing reached the provider (connection refused, pool wait or connect
  timeout, i.e. before this request held a connection to the provider) or the provider
  answered 5xx/429 -> ``failed``, ``retryable=True``;
* the provider answered another 4xx (invalid number, auth) -> ``failed``,
  permanent;
* the request left but no answer came back (timeout, reset) -> ``unknown``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from yarl import URL

from dispatcher.alerting import notification_logs as nlog
from dispatcher.alerting.reconcile import ProviderRecord
from dispatcher.settings import TwilioSettings

log = logging.getLogger(__name__)

STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
SMS_WEBHOOK_PATH = "/webhooks/twilio/sms"
GATHER_PATH = "/webhooks/twilio/voice/gather"
# Only what someone uses: 'completed' carries every final status (busy,
# no-answer, failed...) the escalation falls back on, 'answered' the console's
# timeline. 'initiated' and 'ringing' were two more signed callbacks per call
# (each a request, a signature check and a store write on the dispatcher's
# event loop) that nobody read.
CALL_STATUS_EVENTS: tuple[str, ...] = ("answered", "completed")
# Concurrent provider requests. Size it for rate x provider latency: 100 alerts/s
# x 3 requests x a 3 s provider is 900 in flight; requests beyond the pool wait
# for a connection and may time out before leaving.
DEFAULT_MAX_CONNECTIONS = 4000  # see TwilioSettings.max_connections

Outcome = Literal["accepted", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """What is known about one provider request once it returned.

    ``status`` is the provider's status of the resource (``queued``...) when
    it answered with one; ``error_code`` is Twilio's numeric code as a string
    (``"21211"``) or a local one (``"timeout"``, ``"connect-error"``...).
    """

    outcome: Outcome
    sid: str | None = None
    status: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False

    @property
    def accepted(self) -> bool:
        """The provider created the message or call."""
        return self.outcome == "accepted"


class _Attempt:
    """Tracks whether the current request got its connection (its headers are written next)."""

    __slots__ = ("_on_connected", "sent")

    def __init__(self, on_connected: Callable[[], None] | None = None) -> None:
        self.sent = False
        self._on_connected = on_connected

    def connected(self) -> None:
        self.sent = True
        self.settled()

    def settled(self) -> None:
        """Tell the caller, once: the request holds its connection, or it is over without one."""
        callback, self._on_connected = self._on_connected, None
        if callback is not None:
            callback()


class _MarkingConnector(aiohttp.TCPConnector):
    """Marks the current attempt once it holds a connection to the provider.

    A request that never got one (connection refused, connect timeout, a wait
    for a free connection of the pool) provably did not reach the provider.
    From here aiohttp writes the request at once; a failure in that short
    window is counted as having left (``unknown``, reconciled with the
    provider), the safe side. aiohttp's ``TraceConfig`` told the same thing at
    the headers, but enabling it costs every request about eight signal
    coroutines (request start/end, chunks, connection events) on the event loop.
    """

    def __init__(self, attempt: ContextVar[_Attempt | None], *, limit: int) -> None:
        super().__init__(limit=limit)
        self._current = attempt

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
    ) -> Any:
        connection = await super().connect(req, traces, timeout)
        attempt = self._current.get()
        if attempt is not None:
            attempt.connected()
        return connection


class _TimedHttpClient(AsyncTwilioHttpClient):
    """Twilio's aiohttp client, with its timeout actually applied.

    twilio 9.x stores the ``timeout`` given to ``AsyncTwilioHttpClient`` but
    passes only the per-request one (always ``None`` from ``create_async``)
    to aiohttp, which then means "no timeout at all". The session is created
    on first use because aiohttp needs a running event loop.
    """

    session: aiohttp.ClientSession | None

    def __init__(self, *, timeout: float, attempt: ContextVar[_Attempt | None], max_connections: int) -> None:
        super().__init__(pool_connections=False, timeout=timeout)
        self._max_connections = max_connections
        self._attempt = attempt

    def log_request(self, kwargs: dict[str, Any]) -> None:
        # The library formats ten log lines per request before asking whether
        # INFO is enabled (it is not: see dispatcher.alerting.delivery); ask first.
        if self.logger.isEnabledFor(logging.INFO):
            super().log_request(kwargs)

    def log_response(self, status_code: int, response: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            super().log_response(status_code, response)

    async def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the library's signature
        allow_redirects: bool = False,
    ) -> Response:
        if self.session is None:
            connector = _MarkingConnector(self._attempt, limit=self._max_connections)
            self.session = aiohttp.ClientSession(connector=connector)
        body: bytes | None = None
        if data is not None:
            # Encoded here, without building an aiohttp FormData: that was about
            # a third of each request's CPU on the event loop.
            body = form_body(data).encode()
            headers = {**(headers or {}), "Content-Type": "application/x-www-form-urlencoded"}
        if auth is not None:
            # The same header twilio's client would build with aiohttp's BasicAuth,
            # which aiohttp deprecates (a warning per request, removal in 4.0).
            headers = {**(headers or {}), "Authorization": aiohttp.encode_basic_auth(*auth)}
        return await super().request(
            method,
            url,
            params=params,
            data=body,  # type: ignore[arg-type]  # aiohttp sends bytes as they are
            headers=headers,
            auth=None,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )


def form_body(data: dict[str, object]) -> str:
    """``data`` as an ``application/x-www-form-urlencoded`` body, lists as repeated keys.

    What ``urlencode(data, doseq=True)`` (aiohttp's FormData) means, written by
    yarl's C quoter (aiohttp's own URL library): ``quote_plus`` escapes one UTF-8
    byte at a time in Python, ≈ 60 µs for a call's TwiML, 15 % of a provider
    request's CPU on the event loop; yarl takes ≈ 7 µs. The text differs only
    in characters a query may hold unescaped (``!$'()*,/:?@``), which every form
    parser decodes the same. Values yarl does not take (booleans, bytes) go
    through ``urlencode``.
    """
    try:
        return URL.build(query=data).raw_query_string  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return urlencode(data, doseq=True)


class TwilioNotifier:
    """Sends SMS and places calls, one request each, reporting a :class:`ProviderResult`.

    Holds no state about alerts: the engine persists SIDs and decides retries.
    """

    def __init__(
        self,
        *,
        settings: TwilioSettings,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        call_status_events: Sequence[str] = CALL_STATUS_EVENTS,
    ) -> None:
        self._settings = settings
        self._call_events = list(call_status_events)
        self._timeout = settings.request_timeout_s
        self._public = settings.public_base_url.rstrip("/")
        self._attempt: ContextVar[_Attempt | None] = ContextVar(f"twilio-attempt-{id(self)}", default=None)
        self._http = _TimedHttpClient(
            timeout=self._timeout, attempt=self._attempt, max_connections=max_connections
        )
        self._client = Client(
            settings.account_sid, settings.auth_token.get_secret_value(), http_client=self._http
        )
        # The one switch that points the unmodified library at the sandbox.
        self._client.api.base_url = settings.api_base_url.rstrip("/")
        # Resolve the lazily imported resource classes now, not on the first alert.
        self._account = self._client.api.v2010.account

    def status_callback_url(self, reference: str) -> str:
        """Public URL Twilio posts delivery statuses to (the reference only helps reading logs)."""
        return f"{self._public}{STATUS_CALLBACK_PATH}?ref={_quote(reference)}"

    def gather_action_url(self, reference: str) -> str:
        """Public URL of the ``<Gather action>`` for a call about ``reference``."""
        return f"{self._public}{GATHER_PATH}?ref={_quote(reference)}"

    async def send_sms(
        self, to: str, body: str, *, reference: str, on_connected: Callable[[], None] | None = None
    ) -> ProviderResult:
        """Send one SMS; never raises for provider or network trouble.

        ``on_connected`` is called once the request holds its connection to the
        provider (its headers are written next), or once it is over without one.
        """
        return await self._run(
            "sms",
            to,
            reference,
            on_connected,
            lambda: self._account.messages.create_async(
                to=to,
                from_=self._settings.from_number,
                body=body,
                status_callback=self.status_callback_url(reference),
            ),
        )

    async def place_call(
        self, to: str, twiml: str, *, reference: str, on_connected: Callable[[], None] | None = None
    ) -> ProviderResult:
        """Place one voice call running ``twiml``; never raises for provider or network trouble.

        ``on_connected``: as for :meth:`send_sms`.
        """
        return await self._run(
            "call",
            to,
            reference,
            on_connected,
            lambda: self._account.calls.create_async(
                to=to,
                from_=self._settings.from_number,
                twiml=twiml,
                status_callback=self.status_callback_url(reference),
                status_callback_event=self._call_events,
                status_callback_method="POST",
            ),
        )

    async def _run(
        self,
        kind: str,
        to: str,
        reference: str,
        on_connected: Callable[[], None] | None,
        create: Callable[[], Awaitable[Any]],
    ) -> ProviderResult:
        attempt = _Attempt(on_connected)
        token = self._attempt.set(attempt)
        try:
            async with asyncio.timeout(self._timeout):
                instance = await create()
        except Exception as exc:  # the boundary: nothing from twilio or aiohttp escapes
            result = _classify(exc, sent=attempt.sent)
        else:
            result = ProviderResult("accepted", sid=instance.sid, status=instance.status)
        finally:
            self._attempt.reset(token)
            attempt.settled()
        _log_result(kind, to, reference, result)
        return result

    async def records_to(self, channel: str, to: str, *, limit: int = 50) -> list[ProviderRecord]:
        """The provider's latest messages (``sms``) or calls (``voice``) to ``to``, newest first.

        Twilio's list endpoints filtered by recipient only: a ``DateSent`` /
        ``StartTime`` filter would leave out a message not sent yet or a call
        not started, exactly those a lost request may have created. Raises
        :class:`ProviderUnavailable` when the provider cannot answer.
        """
        resources = self._account.messages if channel == "sms" else self._account.calls
        try:
            async with asyncio.timeout(self._timeout):
                found = await resources.list_async(to=to, limit=limit, page_size=limit)
        except Exception as exc:  # the boundary, as for sends
            raise ProviderUnavailable(_describe(exc)) from exc
        return [_record(r) for r in found]

    async def record(self, channel: str, sid: str) -> ProviderRecord | None:
        """The provider's message or call ``sid``; None if it does not know it."""
        resources = self._account.messages if channel == "sms" else self._account.calls
        try:
            async with asyncio.timeout(self._timeout):
                found = await resources(sid).fetch_async()
        except TwilioRestException as exc:
            if int(exc.status) == 404:
                return None
            raise ProviderUnavailable(_describe(exc)) from exc
        except Exception as exc:
            raise ProviderUnavailable(_describe(exc)) from exc
        return _record(found)

    async def aclose(self) -> None:
        """Close the HTTP session (idempotent)."""
        await self._http.close()
        self._http.session = None


class ProviderUnavailable(Exception):
    """The provider could not answer a lookup (down, timed out, 5xx)."""


def _record(resource: Any) -> ProviderRecord:
    created = resource.date_created
    return ProviderRecord(
        sid=str(resource.sid),
        to=str(resource.to),
        status=str(resource.status),
        created_at=created.timestamp() if created is not None else 0.0,
    )


def _quote(reference: str) -> str:
    # Keep '/' literal (legal in a query): fewer escapes, fewer chances that a
    # proxy or client normalises the URL differently from what Twilio signed.
    return quote(reference, safe="/")


def _classify(exc: Exception, *, sent: bool) -> ProviderResult:
    """Map an exception raised around one provider request to a result."""
    if isinstance(exc, TwilioRestException | TwilioServiceException):
        # The provider answered: whatever it said, it did not create the resource.
        status = int(exc.status)
        code = str(exc.code) if exc.code is not None else f"http-{status}"
        retryable = status >= 500 or status == 429
        return ProviderResult(
            "failed", error_code=code, error_message=_rest_message(exc), retryable=retryable
        )
    if not sent:
        # Nothing was written to the provider: safe to try again.
        code = "timeout" if isinstance(exc, TimeoutError) else "connect-error"
        return ProviderResult("failed", error_code=code, error_message=_describe(exc), retryable=True)
    if isinstance(exc, TimeoutError):
        code = "timeout"
    elif isinstance(exc, aiohttp.ClientError):
        code = "transport-error"
    elif isinstance(exc, TwilioException):
        code = "provider-error"
    else:
        code = "unexpected-error"
        log.exception(nlog.PROVIDER_BUG)
    return ProviderResult("unknown", error_code=code, error_message=_describe(exc), retryable=False)


def _rest_message(exc: TwilioRestException | TwilioServiceException) -> str:
    if isinstance(exc, TwilioServiceException):
        return exc.detail or exc.title
    # TwilioRestException.msg is "Unable to create record: <Twilio message>".
    return str(exc.msg).split(": ", 1)[-1] if exc.msg else f"HTTP {exc.status}"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _log_result(kind: str, to: str, reference: str, result: ProviderResult) -> None:
    level = logging.INFO if result.accepted else logging.WARNING
    log.log(
        level,
        nlog.PROVIDER_RESULT,
        nlog.channel(kind),
        to,
        reference,
        nlog.outcome(result.outcome),
        result.sid,
        result.status,
        result.error_code,
        nlog.yes_no(result.retryable),
    )
