"""The sandbox's simulated network and people: message and call lifecycles, signed webhooks.

An SMS goes ``sent`` then its final status; a call rings, is answered (or not), reads its TwiML and
holds for a keypress. Each step posts a status callback signed like Twilio's; a contact's reply or
keypress (scripted, drawn for a person, or asked for with :meth:`CallSimulation.reply` /
:meth:`CallSimulation.press`) posts the dispatcher's SMS or ``<Gather action>`` webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import ClientError, ClientOSError, ServerDisconnectedError
from yarl import URL

from sandbox.twilio_resources import (
    API_VERSION,
    Call,
    Message,
    NumberBehaviour,
    find_gather_action,
    new_sid,
    rfc2822,
    said_texts,
)
from sandbox.twilio_state import (
    CallState,
    RecordedWebhook,
    SandboxError,
    SandboxState,
    WebhookResult,
    log,
)

PRESS_WAIT_S = 30.0
DEFAULT_SMS_ERROR = {"undelivered": 30003, "failed": 30008}


class CallSimulation(SandboxState):
    """The network and the people behind the numbers."""

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
        if not message.status_callback or not self.config.status_callbacks:
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

    async def _hold(self, call: Call, state: CallState, behaviour: NumberBehaviour) -> None:
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
        if (
            not call.status_callback
            or event not in call.status_callback_events
            or not self.config.status_callbacks
        ):
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
            log.warning("bac à sable : webhook %s vers %s en échec : %s", kind, url, record.error)
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


async def _first(*events: asyncio.Event) -> None:
    """Return as soon as one of ``events`` is set."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
