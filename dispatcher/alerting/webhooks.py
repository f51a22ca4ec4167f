"""Twilio webhooks: delivery statuses, inbound SMS replies, call keypresses.

Every request must carry a valid ``X-Twilio-Signature`` computed over the
URL Twilio called — the *public* URL, since a reverse proxy usually sits in
front of the dispatcher and rewrites scheme, host and port — and the form
parameters. Anything else gets a 403: a forged "1" would silence an alert.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from dispatcher.alerting import notification_logs as nlog
from dispatcher.alerting.notifier import GATHER_PATH, SMS_WEBHOOK_PATH, STATUS_CALLBACK_PATH
from dispatcher.alerting.texts import ASK_AGAIN_SPEECH, DEFAULT_VOICE, NO_KEY_SPEECH, VOICE_LANGUAGE

log = logging.getLogger(__name__)

XML = "application/xml"
ACK_DIGIT = "1"
EMPTY_TWIML = "<Response/>"
# Twilio's webhook forms are a few hundred bytes; anything much larger is not Twilio.
MAX_BODY_BYTES = 64 * 1024


class TwilioInbox(Protocol):
    """What the webhooks hand over to the escalation engine."""

    async def delivery_status(
        self, sid: str, status: str, error_code: str | None, *, ref: str | None = None
    ) -> None:
        """A message or call changed status (``delivered``, ``failed``, ``no-answer``...).

        ``ref`` is our notification's reference carried by the callback URL: it
        names the row even when the provider's SID was never stored (a crash).
        """

    async def claim_sms(self, message_sid: str) -> bool:
        """Whether this inbound SMS (by its provider id) is seen for the first time.

        A replayed webhook carries an id already seen; a signed request without one is not Twilio's.
        """

    async def sms_reply(self, from_number: str, body: str) -> str | None:
        """A contact texted us; return a confirmation to answer with, or None."""

    async def call_keypress(
        self, call_sid: str, from_number: str, digits: str, *, ref: str | None = None
    ) -> bool:
        """A called contact pressed keys; True when it acknowledged an alert (``ref``: as above)."""


class VisitReplies(Protocol):
    """Her answers to a visit's "Tout va bien ?" (dispatcher.visits.runner.VisitTimers)."""

    async def check_reply(self, from_number: str, body: str) -> str | None:
        """The answer to send ('' for none), or None when the SMS is not a check reply."""


Form = Mapping[str, str]
Handler = Callable[[Form, str], Awaitable[Response]]


def _twiml(body: str, status_code: int = 200) -> Response:
    return Response(content=body, media_type=XML, status_code=status_code)


def _say(response: VoiceResponse, text: str) -> None:
    response.say(text, language=VOICE_LANGUAGE, voice=DEFAULT_VOICE)


class TwilioSignatures:
    """Checks ``X-Twilio-Signature`` with the ``twilio`` library's algorithm.

    The signature Twilio sends by default is HMAC-SHA1, keyed with the auth
    token, over the URL followed by every form field's name and value sorted
    by name, in base64 (``RequestValidator.compute_signature``). That one HMAC
    is computed here with the stdlib over the same string: the library's
    general version (lists of values, several dict types, a set and a sort
    per field) was a quarter of a status callback's CPU (docs/performance.md);
    tests/dispatcher/test_webhooks.py proves both give the same signature on
    the sandbox's callbacks.
    """

    def __init__(self, auth_token: str) -> None:
        if not auth_token.strip():
            # With the key "" anyone can sign a webhook (issue 13, finding 8).
            raise ValueError("jeton Twilio vide : aucune signature de webhook ne peut être vérifiée")
        self._key = auth_token.encode("utf-8")
        self._validator = RequestValidator(auth_token)

    def signature(self, url: str, form: Form) -> str:
        """The signature Twilio sends for ``url`` + ``form`` (HMAC-SHA1 in base64)."""
        signed = url + "".join([name + form[name] for name in sorted(form)])
        digest = hmac.new(self._key, signed.encode("utf-8"), hashlib.sha1).digest()
        return base64.b64encode(digest).decode("ascii")

    def valid(self, url: str, form: Form, signature: str) -> bool:
        """Whether ``signature`` signs ``url`` + ``form`` with the account's auth token.

        One HMAC for the URL exactly as configured (what Twilio signs); the
        library's ``validate`` — which always computes two, with and without
        an explicit port — only when that one does not match.
        """
        if hmac.compare_digest(self.signature(url, form).encode(), signature.encode()):
            return True
        return bool(self._validator.validate(url, dict(form), signature))


class TwilioWebhooks:
    """ASGI middleware answering Twilio's webhooks in front of the rest of the app.

    Status callbacks are the dispatcher's busiest HTTP traffic (about six per
    alert, all while alerts are being sent), so they skip FastAPI's routing,
    dependency injection and exception middlewares; docs/performance.md has
    the measurement. Every other request goes on to ``app``. The paths are
    the ones the notifier gives Twilio.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        auth_token: str,
        public_base_url: str,
        inbox: TwilioInbox,
        visit_replies: VisitReplies | None = None,
    ) -> None:
        self._app = app
        self._visit_replies = visit_replies
        self._signatures = TwilioSignatures(auth_token)
        self._public = public_base_url.rstrip("/")
        self._inbox = inbox
        self._routes: dict[str, Handler] = {
            STATUS_CALLBACK_PATH: self._status,
            SMS_WEBHOOK_PATH: self._sms,
            GATHER_PATH: self._gather,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None:
            await self._app(scope, receive, send)
            return
        response = await self._answer(Request(scope, receive), handler)
        await response(scope, receive, send)

    async def _answer(self, request: Request, handler: Handler) -> Response:
        if request.method != "POST":
            return Response(status_code=405, headers={"Allow": "POST"})
        url = self._public_url(request)
        body = await _body(request)
        if body is None:
            log.warning(nlog.WEBHOOK_TOO_BIG, MAX_BODY_BYTES, url)
            return _twiml(EMPTY_TWIML, 413)
        form = _form(request, body)
        signature = request.headers.get("X-Twilio-Signature")
        if not signature:
            log.warning(nlog.WEBHOOK_UNSIGNED, url)
            return _twiml(EMPTY_TWIML, 403)
        if not self._signatures.valid(url, form, signature):
            log.warning(nlog.WEBHOOK_BAD_SIGNATURE, url)
            return _twiml(EMPTY_TWIML, 403)
        return await handler(form, url)

    def _public_url(self, request: Request) -> str:
        """The URL Twilio called (and signed): the public base, not the proxy's upstream."""
        query = request.scope.get("query_string", b"").decode("latin-1")
        path = request.scope["path"]
        return f"{self._public}{path}?{query}" if query else f"{self._public}{path}"

    async def _status(self, form: Form, url: str) -> Response:
        sid = form.get("MessageSid") or form.get("CallSid") or ""
        state = form.get("MessageStatus") or form.get("CallStatus") or ""
        if not sid or not state:
            log.warning(nlog.STATUS_INCOMPLETE, dict(form))
            return _twiml(EMPTY_TWIML, 400)
        await self._inbox.delivery_status(sid, state, form.get("ErrorCode") or None, ref=_reference(url))
        return _twiml(EMPTY_TWIML)

    async def _sms(self, form: Form, _url: str) -> Response:
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        if not await self._inbox.claim_sms(sid):
            return _twiml(EMPTY_TWIML)  # replayed (or not Twilio's): nothing done, nothing answered
        answer = await self._visit_reply(form)
        if answer is None:
            answer = await self._inbox.sms_reply(form.get("From", ""), form.get("Body", ""))
        response = MessagingResponse()
        if answer:
            response.message(answer)
        return _twiml(str(response.to_xml()))

    async def _visit_reply(self, form: Form) -> str | None:
        """A practitioner answering her visit check: a separate branch before the responders'."""
        if self._visit_replies is None:
            return None
        return await self._visit_replies.check_reply(form.get("From", ""), form.get("Body", ""))

    async def _gather(self, form: Form, url: str) -> Response:
        digits = form.get("Digits", "")
        # On a call we placed, From is our caller id and To is the contact.
        direction = form.get("Direction", "outbound-api")
        contact = form.get("To" if direction.startswith("outbound") else "From", "")
        call_sid = form.get("CallSid", "")
        accepted = await self._inbox.call_keypress(call_sid, contact, digits, ref=_reference(url))
        return _twiml(_gather_answer(accepted, digits, url))


def _reference(url: str) -> str | None:
    """Our notification reference (``alert/notification id``) from a callback URL's ``ref``."""
    for key, value in urlencoded_fields(url.partition("?")[2], keep_blank_values=False):
        if key == "ref":
            return value
    return None


def urlencoded_fields(text: str, *, keep_blank_values: bool = True) -> list[tuple[str, str]]:
    """``urllib.parse.parse_qsl(text, keep_blank_values)``, field for field, at a third of its cost.

    Fields are split on ``&`` only and decoded as UTF-8 with replacement, like
    ``parse_qsl``'s defaults; a field is unquoted only when it holds ``%`` or
    ``+`` (parse_qsl coerces and unquotes every one: 45 % of a status
    callback's CPU in the middleware). tests/dispatcher/test_webhooks.py
    compares both on callbacks and on malformed bodies.
    """
    fields: list[tuple[str, str]] = []
    for field in text.split("&"):
        name, _, value = field.partition("=")
        if not field or not (value or keep_blank_values):
            continue
        fields.append((_unquote_plus(name), _unquote_plus(value)))
    return fields


def _unquote_plus(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text, errors="replace") if "%" in text else text


async def _body(request: Request) -> bytes | None:
    """The request body, or None past :data:`MAX_BODY_BYTES` (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _form(request: Request, body: bytes) -> Form:
    """Twilio posts ``application/x-www-form-urlencoded``; anything else has no fields."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    return dict(urlencoded_fields(body.decode("utf-8", errors="replace")))


def _gather_answer(accepted: bool, digits: str, action_url: str) -> str:
    response = VoiceResponse()
    if accepted:
        _say(response, "Alerte prise en compte. Merci.")
    elif digits == ACK_DIGIT:
        _say(response, "Cette alerte est déjà prise en charge ou terminée. Merci.")
    elif not digits:
        # The alert's <Gather> ended in silence and redirected here: ask once more.
        again = response.gather(num_digits=1, action=action_url, method="POST", timeout=8)
        _say(again, ASK_AGAIN_SPEECH)
        _say(response, NO_KEY_SPEECH)
    else:
        again = response.gather(num_digits=1, action=action_url, method="POST", timeout=5)
        _say(again, "Touche non reconnue. Appuyez sur 1 pour prendre en charge l'alerte.")
    return str(response.to_xml())
