"""Twilio webhooks: signature checks, TwiML answers, and the sandbox calling a real app."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from broker_config.runner import free_port
from dispatcher.alerting.notifier import GATHER_PATH, SMS_WEBHOOK_PATH, STATUS_CALLBACK_PATH, TwilioNotifier
from dispatcher.alerting.texts import ASK_AGAIN_SPEECH
from dispatcher.alerting.webhooks import TwilioSignatures, TwilioWebhooks, urlencoded_fields
from dispatcher.settings import TwilioSettings
from sandbox.twilio_harness import RecordingInbox, serve_asgi
from sandbox.twilio_resources import NumberBehaviour
from sandbox.twilio_server import TwilioSandbox

TOKEN = "test-auth-token-5f1c0a9e7b3d2468"
PUBLIC = "https://vigie.example.fr"  # what Twilio calls; the app itself sits behind a proxy
FROM = "+33465710000"
CONTACT = "+33639980101"
OTHER = "+33639980102"
CALL_SID = "CA" + "1" * 32


def make_app(inbox: RecordingInbox, *, token: str = TOKEN, public: str = PUBLIC) -> FastAPI:
    app = FastAPI()
    app.add_middleware(TwilioWebhooks, auth_token=token, public_base_url=public, inbox=inbox)
    return app


def sign(url: str, params: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


@pytest.fixture
def inbox() -> RecordingInbox:
    return RecordingInbox()


@pytest.fixture
async def client(inbox: RecordingInbox) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(inbox))
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8080") as c:
        yield c


# -- signature ------------------------------------------------------------------------


async def test_signed_status_reaches_the_inbox(client: httpx.AsyncClient, inbox: RecordingInbox) -> None:
    params = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    path = f"{STATUS_CALLBACK_PATH}?ref=a1-c1"
    response = await client.post(path, data=params, headers=sign(PUBLIC + path, params))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert inbox.statuses == [("SM" + "a" * 32, "undelivered", "30003")]


async def test_call_status_without_error_code(client: httpx.AsyncClient, inbox: RecordingInbox) -> None:
    params = {"CallSid": CALL_SID, "CallStatus": "no-answer", "To": CONTACT}
    response = await client.post(
        STATUS_CALLBACK_PATH, data=params, headers=sign(PUBLIC + STATUS_CALLBACK_PATH, params)
    )
    assert response.status_code == 200
    assert inbox.statuses == [(CALL_SID, "no-answer", None)]


@dataclass(frozen=True)
class Forgery:
    name: str
    headers: dict[str, str]


PARAMS = {"From": CONTACT, "To": FROM, "Body": "1", "MessageSid": "SM" + "b" * 32}
FORGERIES = [
    Forgery("unsigned", {}),
    Forgery("garbage", {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}),
    Forgery("other token", sign(PUBLIC + SMS_WEBHOOK_PATH, PARAMS, token="another-token")),
    # Signed for the internal URL the app sees, not the public one Twilio calls.
    Forgery("internal url", sign("http://10.0.0.5:8080" + SMS_WEBHOOK_PATH, PARAMS)),
    Forgery("other params", sign(PUBLIC + SMS_WEBHOOK_PATH, PARAMS | {"Body": "2"})),
]


@pytest.mark.parametrize("forgery", FORGERIES, ids=lambda f: f.name)
@pytest.mark.parametrize("path", [STATUS_CALLBACK_PATH, SMS_WEBHOOK_PATH, GATHER_PATH])
async def test_forged_requests_are_refused(
    client: httpx.AsyncClient,
    inbox: RecordingInbox,
    forgery: Forgery,
    path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = forgery.headers
    if forgery.name in ("other token", "other params"):
        headers = {"X-Twilio-Signature": _resign_for(path, forgery)}
    elif forgery.name == "internal url":
        headers = sign("http://10.0.0.5:8080" + path, PARAMS)
    response = await client.post(path, data=PARAMS | {"CallSid": CALL_SID, "Digits": "1"}, headers=headers)
    assert response.status_code == 403
    assert not inbox.called
    assert "webhook Twilio refusé" in caplog.text


def _resign_for(path: str, forgery: Forgery) -> str:
    params = PARAMS | {"CallSid": CALL_SID, "Digits": "1"}
    if forgery.name == "other token":
        return sign(PUBLIC + path, params, token="another-token")["X-Twilio-Signature"]
    return sign(PUBLIC + path, params | {"Digits": "2"})["X-Twilio-Signature"]


async def test_query_string_is_part_of_the_signed_url(
    client: httpx.AsyncClient, inbox: RecordingInbox
) -> None:
    params = {"MessageSid": "SM" + "c" * 32, "MessageStatus": "sent"}
    signed_without_query = sign(PUBLIC + STATUS_CALLBACK_PATH, params)
    response = await client.post(f"{STATUS_CALLBACK_PATH}?ref=x", data=params, headers=signed_without_query)
    assert response.status_code == 403
    assert not inbox.called


async def test_signature_over_the_explicit_port_variant_is_accepted(
    client: httpx.AsyncClient, inbox: RecordingInbox
) -> None:
    # Twilio may sign https://host:443/... for a URL configured without the port.
    params = {"MessageSid": "SM" + "d" * 32, "MessageStatus": "delivered"}
    signed = sign(PUBLIC + ":443" + STATUS_CALLBACK_PATH, params)
    response = await client.post(STATUS_CALLBACK_PATH, data=params, headers=signed)
    assert response.status_code == 200
    assert inbox.statuses == [("SM" + "d" * 32, "delivered", None)]


async def test_accented_sms_body_is_verified_and_passed_on(
    client: httpx.AsyncClient, inbox: RecordingInbox
) -> None:
    params = PARAMS | {"Body": "1 reçu, j'arrive"}
    response = await client.post(
        SMS_WEBHOOK_PATH, data=params, headers=sign(PUBLIC + SMS_WEBHOOK_PATH, params)
    )
    assert response.status_code == 200
    assert inbox.replies == [(CONTACT, "1 reçu, j'arrive")]


async def test_webhook_paths_accept_only_post(client: httpx.AsyncClient, inbox: RecordingInbox) -> None:
    response = await client.get(STATUS_CALLBACK_PATH)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert not inbox.called


async def test_oversized_body_is_refused_unread(
    client: httpx.AsyncClient, inbox: RecordingInbox, caplog: pytest.LogCaptureFixture
) -> None:
    params = {"MessageSid": "SM" + "e" * 32, "MessageStatus": "sent", "Padding": "x" * 70_000}
    response = await client.post(
        STATUS_CALLBACK_PATH, data=params, headers=sign(PUBLIC + STATUS_CALLBACK_PATH, params)
    )
    assert response.status_code == 413
    assert not inbox.called
    assert "refusé : corps de plus de 65536 octets" in caplog.text


async def test_other_paths_reach_the_rest_of_the_app(inbox: RecordingInbox) -> None:
    app = make_app(inbox)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/healthz")).json() == {"ok": True}
        assert (await c.post("/webhooks/twilio/unknown")).status_code == 404
    assert not inbox.called


# -- TwiML answers --------------------------------------------------------------------


async def test_sms_reply_is_answered_with_a_message(client: httpx.AsyncClient, inbox: RecordingInbox) -> None:
    response = await client.post(
        SMS_WEBHOOK_PATH, data=PARAMS, headers=sign(PUBLIC + SMS_WEBHOOK_PATH, PARAMS)
    )
    assert response.status_code == 200
    assert inbox.replies == [(CONTACT, "1")]
    root = ET.fromstring(response.text)
    assert root.findtext("Message") == "Alerte prise en charge. Merci."


async def test_sms_reply_without_answer_is_empty_twiml(
    client: httpx.AsyncClient, inbox: RecordingInbox
) -> None:
    inbox.sms_answer = None
    response = await client.post(
        SMS_WEBHOOK_PATH, data=PARAMS, headers=sign(PUBLIC + SMS_WEBHOOK_PATH, PARAMS)
    )
    assert ET.fromstring(response.text).find("Message") is None


def gather_params(digits: str) -> dict[str, str]:
    return {
        "CallSid": CALL_SID,
        "Digits": digits,
        "From": FROM,
        "To": CONTACT,
        "Direction": "outbound-api",
        "CallStatus": "in-progress",
    }


@pytest.mark.parametrize(
    ("digits", "accepted", "expected"),
    [
        ("1", True, "Alerte prise en compte. Merci."),
        ("1", False, "Cette alerte est déjà prise en charge ou terminée. Merci."),
        ("7", False, "Touche non reconnue. Appuyez sur 1 pour prendre en charge l'alerte."),
        ("", False, ASK_AGAIN_SPEECH),  # the alert's gather ended in silence and redirected here
    ],
)
async def test_gather_answers(
    client: httpx.AsyncClient, inbox: RecordingInbox, digits: str, accepted: bool, expected: str
) -> None:
    inbox.keypress_accepted = accepted
    params = gather_params(digits)
    path = f"{GATHER_PATH}?ref=a1-c1"
    response = await client.post(path, data=params, headers=sign(PUBLIC + path, params))
    assert response.status_code == 200
    # The contact is the callee (To) of the call we placed, not our caller id.
    assert inbox.keypresses == [(CALL_SID, CONTACT, digits)]
    assert inbox.refs == ["a1-c1"]  # our reference travels with the keypress: no SID lookup needed
    root = ET.fromstring(response.text)
    say = root.find(".//Say")
    assert say is not None and say.text == expected and say.get("language") == "fr-FR"
    if digits != "1":
        gather = root.find("Gather")
        assert gather is not None and gather.get("action") == PUBLIC + path


# -- the sandbox calling a real app over HTTP -----------------------------------------


@dataclass
class Stack:
    sandbox: TwilioSandbox
    notifier: TwilioNotifier
    inbox: RecordingInbox
    public: str


@pytest.fixture
async def stack(inbox: RecordingInbox) -> AsyncIterator[Stack]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    sandbox = TwilioSandbox(port=free_port(), auth_token=TOKEN, sms_webhook_url=public + SMS_WEBHOOK_PATH)
    async with serve_asgi(make_app(inbox, public=public), port), sandbox:
        settings = TwilioSettings(
            account_sid=sandbox.account_sid,
            auth_token=SecretStr(TOKEN),
            from_number=FROM,
            api_base_url=sandbox.base_url,
            public_base_url=public,
            request_timeout_s=5,
        )
        # Every call event, to check the whole chain (the dispatcher asks for fewer).
        events = ("initiated", "ringing", "answered", "completed")
        notifier = TwilioNotifier(settings=settings, call_status_events=events)
        try:
            yield Stack(sandbox, notifier, inbox, public)
        finally:
            await notifier.aclose()


async def test_sms_status_callbacks_reach_the_inbox_signed(stack: Stack) -> None:
    # The engine's references contain a slash: it must survive quoting and signing.
    result = await stack.notifier.send_sms(CONTACT, "Alerte", reference="a1/n1 é")
    assert result.sid is not None
    sid = result.sid
    await stack.inbox.wait_for(lambda: "delivered" in stack.inbox.statuses_of(sid))
    assert stack.inbox.statuses_of(sid) == ["sent", "delivered"]
    webhooks = stack.sandbox.webhooks
    await stack.sandbox.wait_for(lambda: len(webhooks) == 2 and all(w.status for w in webhooks))
    assert [w.status for w in webhooks] == [200, 200]


async def test_failing_number_reports_undelivered_with_code(stack: Stack) -> None:
    stack.sandbox.set_number(CONTACT, NumberBehaviour(sms_status="undelivered"))
    result = await stack.notifier.send_sms(CONTACT, "Alerte", reference="r")
    assert result.accepted and result.sid is not None
    sid = result.sid
    await stack.inbox.wait_for(lambda: "undelivered" in stack.inbox.statuses_of(sid))
    assert (sid, "undelivered", "30003") in stack.inbox.statuses


async def test_reply_one_reaches_the_inbox_and_gets_the_confirmation(stack: Stack) -> None:
    assert (await stack.notifier.send_sms(CONTACT, "Alerte", reference="r")).accepted
    result = await stack.sandbox.reply(CONTACT, "1")
    assert result.status == 200
    assert stack.inbox.replies == [(CONTACT, "1")]
    assert result.said == ["Alerte prise en charge. Merci."]


async def test_keypress_through_the_control_api(stack: Stack) -> None:
    twiml = (
        f'<Response><Gather numDigits="1" action="{stack.notifier.gather_action_url("a1/n2")}">'
        "<Say>Alerte</Say></Gather></Response>"
    )
    call = await stack.notifier.place_call(CONTACT, twiml, reference="a1-c1-voice")
    assert call.sid is not None
    sid = call.sid
    async with httpx.AsyncClient(base_url=stack.sandbox.base_url) as http:
        response = await http.post("/_sandbox/press", json={"to": CONTACT, "digits": "1"})
    assert response.status_code == 200, response.text
    assert response.json()["said"] == ["Alerte prise en compte. Merci."]
    assert stack.inbox.keypresses == [(sid, CONTACT, "1")]
    await stack.inbox.wait_for(lambda: "completed" in stack.inbox.statuses_of(sid))
    assert stack.inbox.statuses_of(sid) == ["initiated", "ringing", "in-progress", "completed"]


async def test_unanswered_call_reports_no_answer(stack: Stack) -> None:
    stack.sandbox.set_number(CONTACT, NumberBehaviour(call_status="no-answer"))
    call = await stack.notifier.place_call(CONTACT, "<Response><Say>x</Say></Response>", reference="r")
    assert call.sid is not None
    sid = call.sid
    await stack.inbox.wait_for(lambda: "no-answer" in stack.inbox.statuses_of(sid))
    assert not stack.inbox.keypresses


async def test_contact_that_acknowledges_by_itself(stack: Stack) -> None:
    stack.sandbox.set_number(CONTACT, NumberBehaviour(ack_after_ms=10))
    twiml = (
        f'<Response><Gather action="{stack.notifier.gather_action_url("r")}"><Say>x</Say></Gather></Response>'
    )
    call = await stack.notifier.place_call(CONTACT, twiml, reference="r")
    await stack.inbox.wait_for(lambda: bool(stack.inbox.keypresses))
    assert stack.inbox.keypresses == [(call.sid, CONTACT, "1")]


async def test_stdlib_signature_equals_the_twilio_library_on_sandbox_callbacks(stack: Stack) -> None:
    """The middleware's own HMAC (dispatcher side) signs exactly what the library signs (sandbox side)."""
    stack.sandbox.set_number(CONTACT, NumberBehaviour(sms_status="undelivered"))
    sms = await stack.notifier.send_sms(CONTACT, "Alerte é", reference="a1/n1 é")
    stack.sandbox.set_number(OTHER, NumberBehaviour(call_status="no-answer"))
    call = await stack.notifier.place_call(OTHER, "<Response><Say>x</Say></Response>", reference="a1/n2")
    assert sms.sid is not None and call.sid is not None
    sids = (sms.sid, call.sid)
    await stack.inbox.wait_for(
        lambda: (
            "undelivered" in stack.inbox.statuses_of(sids[0])
            and "no-answer" in stack.inbox.statuses_of(sids[1])
        )
    )
    callbacks = [w for w in stack.sandbox.webhooks if w.kind == "status"]
    assert len(callbacks) >= 2 + 2  # the inbox got them: the middleware accepted each signature
    ours, theirs = TwilioSignatures(TOKEN), RequestValidator(TOKEN)
    for w in callbacks:
        assert ours.signature(w.url, w.params) == theirs.compute_signature(w.url, w.params)
        assert ours.valid(w.url, w.params, theirs.compute_signature(w.url, w.params))
        assert not ours.valid(
            w.url, {**w.params, "MessageStatus": "delivered"}, ours.signature(w.url, w.params)
        )


@pytest.mark.parametrize(
    "text",
    [
        urlencode(
            {"From": "+33639980101", "Body": "Oui, j'arrive & c'est 1=1 é", "Timestamp": "Sat, 28 Nov"}
        ),
        "ref=a1%2Fn1+%C3%A9&x=&=v&flag&&a=b=c&%ZZ=%E9&plus=a+b%2Bc&",
        "",
        "&&&",
        "%C3&%A9=%C3%A9%C3",
    ],
)
def test_urlencoded_fields_equal_parse_qsl(text: str) -> None:
    assert urlencoded_fields(text) == parse_qsl(text, keep_blank_values=True)
    assert urlencoded_fields(text, keep_blank_values=False) == parse_qsl(text)
