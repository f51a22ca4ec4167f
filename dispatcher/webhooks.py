"""Twilio webhooks: delivery statuses, inbound SMS replies, call keypresses.

Every request must carry a valid ``X-Twilio-Signature`` computed over the
URL Twilio called — the *public* URL, since a reverse proxy usually sits in
front of the dispatcher and rewrites scheme, host and port — and the form
parameters. Anything else gets a 403: a forged "1" would silence an alert.
"""

from __future__ import annotations

import logging
from typing import Protocol

from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from dispatcher.notifier import GATHER_PATH, SMS_WEBHOOK_PATH, STATUS_CALLBACK_PATH
from dispatcher.texts import DEFAULT_VOICE, VOICE_LANGUAGE

log = logging.getLogger(__name__)

XML = "application/xml"
ACK_DIGIT = "1"


class TwilioInbox(Protocol):
    """What the webhooks hand over to the escalation engine."""

    async def delivery_status(self, sid: str, status: str, error_code: str | None) -> None:
        """A message or call changed status (``delivered``, ``failed``, ``no-answer``...)."""

    async def sms_reply(self, from_number: str, body: str) -> str | None:
        """A contact texted us; return a confirmation to answer with, or None."""

    async def call_keypress(self, call_sid: str, from_number: str, digits: str) -> bool:
        """A called contact pressed keys; True when it acknowledged an alert."""


class _SignatureError(Exception):
    """A Twilio webhook whose X-Twilio-Signature does not verify (answered 403)."""


def _twiml(body: str, status_code: int = 200) -> Response:
    return Response(content=body, media_type=XML, status_code=status_code)


def _say(response: VoiceResponse, text: str) -> None:
    response.say(text, language=VOICE_LANGUAGE, voice=DEFAULT_VOICE)


def twilio_webhooks_router(*, auth_token: str, public_base_url: str, inbox: TwilioInbox) -> APIRouter:
    """Routes Twilio calls back, verified against ``public_base_url`` + path + query.

    Include it in the app without a prefix: the paths are the ones the
    notifier gives Twilio.
    """
    validator = RequestValidator(auth_token)
    public = public_base_url.rstrip("/")
    router = APIRouter()

    def public_url(request: Request, path: str) -> str:
        query = request.url.query
        return f"{public}{path}?{query}" if query else f"{public}{path}"

    async def verified_form(request: Request, path: str) -> FormData:
        form = await request.form()
        signature = request.headers.get("X-Twilio-Signature")
        url = public_url(request, path)
        if not signature:
            log.warning("twilio webhook rejected: no X-Twilio-Signature (url=%s)", url)
            raise _SignatureError
        if not validator.validate(url, form, signature):
            log.warning("twilio webhook rejected: bad signature for url=%s", url)
            raise _SignatureError
        return form

    @router.post(STATUS_CALLBACK_PATH, response_class=Response)
    async def status(request: Request) -> Response:
        try:
            form = await verified_form(request, STATUS_CALLBACK_PATH)
        except _SignatureError:
            return _twiml("<Response/>", 403)
        sid = str(form.get("MessageSid") or form.get("CallSid") or "")
        state = str(form.get("MessageStatus") or form.get("CallStatus") or "")
        if not sid or not state:
            log.warning("twilio status callback without sid/status: %s", dict(form))
            return _twiml("<Response/>", 400)
        error = form.get("ErrorCode")
        await inbox.delivery_status(sid, state, str(error) if error else None)
        return _twiml("<Response/>")

    @router.post(SMS_WEBHOOK_PATH, response_class=Response)
    async def sms(request: Request) -> Response:
        try:
            form = await verified_form(request, SMS_WEBHOOK_PATH)
        except _SignatureError:
            return _twiml("<Response/>", 403)
        answer = await inbox.sms_reply(str(form.get("From", "")), str(form.get("Body", "")))
        response = MessagingResponse()
        if answer:
            response.message(answer)
        return _twiml(str(response.to_xml()))

    @router.post(GATHER_PATH, response_class=Response)
    async def gather(request: Request) -> Response:
        try:
            form = await verified_form(request, GATHER_PATH)
        except _SignatureError:
            return _twiml("<Response/>", 403)
        digits = str(form.get("Digits", ""))
        # On a call we placed, From is our caller id and To is the contact.
        direction = str(form.get("Direction", "outbound-api"))
        contact = str(form.get("To" if direction.startswith("outbound") else "From", ""))
        accepted = await inbox.call_keypress(str(form.get("CallSid", "")), contact, digits)
        return _twiml(_gather_answer(accepted, digits, public_url(request, GATHER_PATH)))

    return router


def _gather_answer(accepted: bool, digits: str, action_url: str) -> str:
    response = VoiceResponse()
    if accepted:
        _say(response, "Alerte prise en compte. Merci.")
    elif digits == ACK_DIGIT:
        _say(response, "Cette alerte est déjà prise en charge ou terminée. Merci.")
    else:
        again = response.gather(num_digits=1, action=action_url, method="POST", timeout=5)
        _say(again, "Touche non reconnue. Appuyez sur 1 pour prendre en charge l'alerte.")
    return str(response.to_xml())
