"""The Twilio sandbox: API fidelity (through the unmodified library), control API, log, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from broker_config.runner import free_port, wait_for_port
from sandbox.twilio_harness import serve_asgi
from sandbox.twilio_resources import find_gather_action
from sandbox.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioSandbox

FROM = "+33465710000"
CONTACT = "+33639980101"


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[TwilioSandbox]:
    async with TwilioSandbox(port=free_port(), log_path=tmp_path / "requests.jsonl", seed=7) as box:
        yield box


@pytest.fixture
async def client(sandbox: TwilioSandbox) -> AsyncIterator[Client]:
    http = AsyncTwilioHttpClient(timeout=5)
    twilio = Client(sandbox.account_sid, sandbox.auth_token, http_client=http)
    twilio.api.base_url = sandbox.base_url
    try:
        yield twilio
    finally:
        await http.close()


async def test_message_resource_is_shaped_like_twilio(sandbox: TwilioSandbox) -> None:
    async with httpx.AsyncClient(
        base_url=sandbox.base_url, auth=(sandbox.account_sid, sandbox.auth_token)
    ) as http:
        response = await http.post(
            f"/2010-04-01/Accounts/{sandbox.account_sid}/Messages.json",
            data={"To": CONTACT, "From": FROM, "Body": "é" * 161},
        )
    assert response.status_code == 201
    body = response.json()
    assert body["sid"].startswith("SM") and len(body["sid"]) == 34
    assert body["status"] == "queued"
    assert body["num_segments"] == "2"
    assert body["price"] is None and body["error_code"] is None
    assert body["api_version"] == "2010-04-01"
    assert body["direction"] == "outbound-api"
    assert body["uri"] == f"/2010-04-01/Accounts/{sandbox.account_sid}/Messages/{body['sid']}.json"
    assert parsedate_to_datetime(body["date_created"]).utcoffset() is not None
    assert response.headers["Twilio-Request-Id"].startswith("RQ")


async def test_unmodified_library_creates_and_fetches(sandbox: TwilioSandbox, client: Client) -> None:
    message = await client.messages.create_async(to=CONTACT, from_=FROM, body="Alerte")
    fetched = await client.messages(message.sid).fetch_async()
    assert fetched.sid == message.sid and fetched.body == "Alerte"
    await sandbox.wait_for(lambda: sandbox.messages[message.sid].status == "delivered")
    assert (await client.messages(message.sid).fetch_async()).status == "delivered"
    call = await client.calls.create_async(to=CONTACT, from_=FROM, twiml="<Response><Say>x</Say></Response>")
    assert (await client.calls(call.sid).fetch_async()).to == CONTACT
    assert [r.kind for r in sandbox.requests] == [
        "message",
        "fetch-message",
        "fetch-message",
        "call",
        "fetch-call",
    ]


async def test_unknown_resource_is_a_twilio_404(client: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        await client.messages("SM" + "0" * 32).fetch_async()
    assert caught.value.status == 404 and caught.value.code == 20404


async def test_bad_credentials_get_401_with_twilio_error(sandbox: TwilioSandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url, auth=(sandbox.account_sid, "nope")) as http:
        response = await http.post(
            f"/2010-04-01/Accounts/{sandbox.account_sid}/Calls.json", data={"To": CONTACT}
        )
    assert response.status_code == 401
    assert response.json()["code"] == 20003
    assert response.json()["more_info"] == "https://www.twilio.com/docs/errors/20003"
    assert "Basic" in response.headers["WWW-Authenticate"]
    assert sandbox.requests[0].status == 401  # recorded all the same


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"To": "06 39 98 01 01", "From": FROM, "Body": "x"}, 21211),
        ({"From": FROM, "Body": "x"}, 21604),
        ({"To": CONTACT, "Body": "x"}, 21603),
        ({"To": CONTACT, "From": FROM}, 21602),
        ({"To": CONTACT, "From": FROM, "Body": "x" * 1601}, 21617),
    ],
)
async def test_invalid_messages_get_400(sandbox: TwilioSandbox, data: dict[str, str], code: int) -> None:
    async with httpx.AsyncClient(
        base_url=sandbox.base_url, auth=(sandbox.account_sid, sandbox.auth_token)
    ) as http:
        response = await http.post(f"/2010-04-01/Accounts/{sandbox.account_sid}/Messages.json", data=data)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not sandbox.messages


async def test_seeded_failure_rate(sandbox: TwilioSandbox, client: Client) -> None:
    sandbox.configure(failure_rate=0.5)
    outcomes = []
    for i in range(40):
        try:
            await client.messages.create_async(to=f"+336399801{i:02d}", from_=FROM, body="x")
            outcomes.append(201)
        except TwilioRestException as exc:
            assert exc.code == 20500
            outcomes.append(exc.status)
    assert 5 < outcomes.count(500) < 35
    assert len(sandbox.requests) == 40


async def test_control_api(sandbox: TwilioSandbox, client: Client) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        config = (
            await http.post("/_sandbox/config", json={"latency_ms": 5, "callback_latency_ms": 1})
        ).json()
        assert config["latency_ms"] == 5
        assert (await http.post("/_sandbox/config", json={"nope": 1})).status_code == 400
        numbers = await http.post("/_sandbox/numbers", json={"number": CONTACT, "reject_code": 21610})
        assert numbers.json()[CONTACT]["reject_code"] == 21610
        with pytest.raises(TwilioRestException):
            await client.messages.create_async(to=CONTACT, from_=FROM, body="x")
        await http.delete("/_sandbox/numbers")
        await client.messages.create_async(to=CONTACT, from_=FROM, body="x")
        await client.messages.create_async(to="+33639980102", from_=FROM, body="x")
        listed = (await http.get("/_sandbox/requests", params={"to": CONTACT})).json()
        assert [r["status"] for r in listed] == [400, 201]
        missing = await http.post("/_sandbox/press", json={"to": "+33639980199"})
        assert missing.status_code == 409
        no_webhook = await http.post("/_sandbox/reply", json={"from": CONTACT, "body": "1"})
        assert no_webhook.status_code == 409
        await http.post("/_sandbox/reset")
        assert (await http.get("/_sandbox/requests")).json() == []


async def test_jsonl_log_has_every_api_request(
    sandbox: TwilioSandbox, client: Client, tmp_path: Path
) -> None:
    await client.messages.create_async(to=CONTACT, from_=FROM, body="x")
    await client.calls.create_async(to=CONTACT, from_=FROM, url="http://127.0.0.1:9/twiml")
    lines = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    api = [line for line in lines if line["type"] == "api"]
    assert [(line["kind"], line["to"], line["status"]) for line in api] == [
        ("message", CONTACT, 201),
        ("call", CONTACT, 201),
    ]
    assert api[0]["received_at"] <= api[1]["received_at"]


def test_gather_action_resolution() -> None:
    twiml = '<?xml version="1.0"?><Response><Gather action="/g?x=1"><Say>a</Say></Gather></Response>'
    assert find_gather_action(twiml, "https://h.example/voice/doc") == "https://h.example/g?x=1"
    assert find_gather_action(twiml, None) == "/g?x=1"
    no_action = "<Response><Gather><Say>a</Say></Gather></Response>"
    assert find_gather_action(no_action, "https://h.example/doc") == "https://h.example/doc"
    assert find_gather_action("<Response><Say>a</Say></Response>", None) is None
    assert find_gather_action("not xml", None) is None


async def test_call_with_url_fetches_signed_twiml_then_press(sandbox: TwilioSandbox, client: Client) -> None:
    """Twilio-style Url calls: the TwiML is fetched (signed) and a relative action is resolved."""
    seen: list[tuple[str, bool]] = []
    app = FastAPI()
    validator = RequestValidator(DEFAULT_AUTH_TOKEN)

    async def check(request: Request, name: str) -> None:
        form = await request.form()
        seen.append((name, validator.validate(str(request.url), form, request.headers["X-Twilio-Signature"])))

    @app.post("/voice/answer")
    async def answer(request: Request) -> Response:
        await check(request, "answer")
        twiml = '<Response><Gather numDigits="1" action="keys?ref=a1"><Say>Alerte</Say></Gather></Response>'
        return Response(twiml, media_type="application/xml")

    @app.post("/voice/keys")
    async def keys(request: Request) -> Response:
        await check(request, "keys:" + str((await request.form())["Digits"]))
        return Response("<Response><Say>Merci</Say></Response>", media_type="application/xml")

    port = free_port()
    async with serve_asgi(app, port) as base:
        call = await client.calls.create_async(to=CONTACT, from_=FROM, url=f"{base}/voice/answer")
        result = await sandbox.press(call_sid=call.sid, digits="1")
        assert result.said == ["Merci"]
        assert sandbox.calls[call.sid].gather_action == f"{base}/voice/keys?ref=a1"
        await sandbox.wait_for(lambda: sandbox.calls[call.sid].status == "completed")
    assert seen == [("answer", True), ("keys:1", True)]


def test_standalone_process(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "sandbox.jsonl"
    argv = ["--port", str(port), "--log", str(log), "--latency-ms", "1", "--failure-rate", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.twilio_server", *argv])
    try:
        wait_for_port("127.0.0.1", port, 15.0, proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            response = http.post(
                f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json",
                data={"To": CONTACT, "From": FROM, "Body": "x"},
                auth=(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN),
            )
            assert response.status_code == 201
            assert len(http.get("/_sandbox/requests").json()) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert json.loads(log.read_text().splitlines()[0])["status"] == 201


async def test_status_callbacks_can_be_switched_off(sandbox: TwilioSandbox, client: Client) -> None:
    """Off (the benchmark's alert path alone): the statuses still move, nothing is posted back."""
    received: list[str] = []
    app = FastAPI()

    @app.post("/status")
    async def status(request: Request) -> Response:
        form = await request.form()
        received.append(str(form.get("MessageStatus") or form.get("CallStatus")))
        return Response(status_code=204)

    async with serve_asgi(app, free_port()) as base:
        on = await client.messages.create_async(
            to=CONTACT, from_=FROM, body="x", status_callback=f"{base}/status"
        )
        await sandbox.wait_for(lambda: sandbox.messages[on.sid].status == "delivered")
        await sandbox.wait_for(lambda: "delivered" in received)

        async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
            config = (
                await http.post("/_sandbox/config", json={"status_callbacks": False, "call_hold_ms": 0})
            ).json()
        assert config["status_callbacks"] is False
        posted_before = len(sandbox.webhooks)
        sms = await client.messages.create_async(
            to=CONTACT, from_=FROM, body="x", status_callback=f"{base}/status"
        )
        call = await client.calls.create_async(
            to=CONTACT,
            from_=FROM,
            twiml="<Response><Say>a</Say></Response>",
            status_callback=f"{base}/status",
        )
        await sandbox.wait_for(lambda: sandbox.messages[sms.sid].status == "delivered")
        await sandbox.wait_for(lambda: sandbox.calls[call.sid].final)
    assert len(sandbox.webhooks) == posted_before
    assert received.count("delivered") == 1


def test_the_standalone_sandbox_starts_without_status_callbacks() -> None:
    port = free_port()
    argv = ["--port", str(port), "--no-status-callbacks"]
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.twilio_server", *argv])
    try:
        wait_for_port("127.0.0.1", port, 15.0, proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert http.get("/_sandbox/config").json()["status_callbacks"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=10)
