"""TwilioNotifier: the unmodified twilio async client talking HTTP to the sandbox."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from broker_config.runner import free_port
from dispatcher.alerting.notifier import STATUS_CALLBACK_PATH, TwilioNotifier, form_body
from dispatcher.settings import TwilioSettings
from sandbox.twilio_resources import NumberBehaviour
from sandbox.twilio_server import TwilioSandbox

FROM = "+33465710000"
CONTACT = "+33639980101"
# Nothing listens there: the sandbox's status callbacks fail fast, locally.
PUBLIC = f"http://127.0.0.1:{free_port()}"
TWIML = f'<Response><Gather numDigits="1" action="{PUBLIC}/g"><Say>Alerte</Say></Gather></Response>'

MakeNotifier = Callable[..., TwilioNotifier]


@pytest.fixture
async def sandbox() -> AsyncIterator[TwilioSandbox]:
    async with TwilioSandbox(port=free_port()) as box:
        yield box


@pytest.fixture
async def make_notifier(sandbox: TwilioSandbox) -> AsyncIterator[MakeNotifier]:
    made: list[TwilioNotifier] = []

    def make(*, timeout: float = 5.0, token: str | None = None, api: str | None = None) -> TwilioNotifier:
        settings = TwilioSettings(
            account_sid=sandbox.account_sid,
            auth_token=SecretStr(token or sandbox.auth_token),
            from_number=FROM,
            api_base_url=api or sandbox.base_url,
            public_base_url=PUBLIC,
            request_timeout_s=timeout,
        )
        notifier = TwilioNotifier(settings=settings)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        await notifier.aclose()


async def test_sms_is_sent_once_and_recorded(sandbox: TwilioSandbox, make_notifier: MakeNotifier) -> None:
    result = await make_notifier().send_sms(CONTACT, "Alerte : Dr Dupont", reference="a1-c1-sms")
    assert result.accepted
    assert result.sid is not None and re.fullmatch(r"SM[0-9a-f]{32}", result.sid)
    assert result.status == "queued"
    assert result.retryable is False
    [request] = sandbox.requests_to(CONTACT)
    assert request.kind == "message"
    assert request.params["Body"] == "Alerte : Dr Dupont"
    assert request.params["From"] == FROM
    assert request.params["StatusCallback"] == f"{PUBLIC}{STATUS_CALLBACK_PATH}?ref=a1-c1-sms"
    assert request.sid == result.sid
    assert request.status == 201
    assert request.ref == "a1-c1-sms"


async def test_call_carries_the_twiml_and_callback_events(
    sandbox: TwilioSandbox, make_notifier: MakeNotifier
) -> None:
    result = await make_notifier().place_call(CONTACT, TWIML, reference="a1-c1-voice")
    assert result.accepted
    assert result.sid is not None and re.fullmatch(r"CA[0-9a-f]{32}", result.sid)
    [request] = sandbox.requests_to(CONTACT, kind="call")
    assert request.params["Twiml"] == TWIML
    call = sandbox.calls[result.sid]
    assert call.status_callback_events == {"answered", "completed"}  # only what the engine uses
    assert call.twiml == TWIML


async def test_provider_500_is_a_retryable_failure(
    sandbox: TwilioSandbox, make_notifier: MakeNotifier
) -> None:
    sandbox.configure(failure_rate=1.0)
    result = await make_notifier().send_sms(CONTACT, "x", reference="r")
    assert result.outcome == "failed"
    assert result.retryable is True
    assert result.error_code == "20500"
    assert result.sid is None
    assert len(sandbox.requests) == 1


async def test_rate_limited_number_is_retryable(sandbox: TwilioSandbox, make_notifier: MakeNotifier) -> None:
    sandbox.set_number(CONTACT, NumberBehaviour(reject_code=20429))
    result = await make_notifier().place_call(CONTACT, TWIML, reference="r")
    assert (result.outcome, result.retryable, result.error_code) == ("failed", True, "20429")


async def test_invalid_number_is_a_permanent_failure(
    sandbox: TwilioSandbox, make_notifier: MakeNotifier
) -> None:
    result = await make_notifier().send_sms("0639980101", "x", reference="r")
    assert result.outcome == "failed"
    assert result.retryable is False
    assert result.error_code == "21211"
    assert result.error_message is not None and "Invalid 'To' Phone Number" in result.error_message


async def test_wrong_credentials_are_permanent(sandbox: TwilioSandbox, make_notifier: MakeNotifier) -> None:
    result = await make_notifier(token="wrong-token-0123456789abcdef").send_sms(CONTACT, "x", reference="r")
    assert (result.outcome, result.retryable, result.error_code) == ("failed", False, "20003")


async def test_timeout_after_sending_is_unknown_and_never_retried(
    sandbox: TwilioSandbox, make_notifier: MakeNotifier
) -> None:
    # Sent within 1.5 s (taking its connection: 0.3 s could pass before it on a loaded machine),
    # answered after 4 s.
    sandbox.configure(latency_ms=4000)
    result = await make_notifier(timeout=1.5).send_sms(CONTACT, "x", reference="r")
    assert result.outcome == "unknown"
    assert result.retryable is False
    assert result.error_code == "timeout"
    # Let the sandbox finish the request the notifier gave up on: the SMS was
    # in fact created, which is exactly why a blind retry would be wrong.
    await sandbox.idle(within=30)
    [request] = sandbox.requests
    assert request.status == 201 and request.sid is not None


async def test_connection_refused_is_retryable(make_notifier: MakeNotifier) -> None:
    result = await make_notifier(api=f"http://127.0.0.1:{free_port()}").send_sms(CONTACT, "x", reference="r")
    assert result.outcome == "failed"
    assert result.retryable is True
    assert result.error_code == "connect-error"


async def test_the_caller_hears_once_when_the_request_holds_its_connection(
    sandbox: TwilioSandbox, make_notifier: MakeNotifier
) -> None:
    """Delivery lets the next request of an outage's backlog go at this moment: before the
    provider has received anything, after this request can no longer be overtaken."""
    notifier = make_notifier()
    heard: list[int] = []

    def connected() -> None:
        heard.append(len(sandbox.requests))  # what the provider had received by then

    assert (await notifier.place_call(CONTACT, TWIML, reference="r1", on_connected=connected)).accepted
    assert heard == [0]
    refused = make_notifier(api=f"http://127.0.0.1:{free_port()}")
    result = await refused.send_sms(CONTACT, "x", reference="r2", on_connected=lambda: heard.append(-1))
    assert result.error_code == "connect-error" and heard == [0, -1], "told also when it never connected"


async def test_concurrent_sends_are_independent(sandbox: TwilioSandbox, make_notifier: MakeNotifier) -> None:
    slow = "+33639980199"
    # The notifier gives up on the slow one after 3 s while the ten others, on the same client,
    # must be accepted within those 3 s (0.5 s before: ten requests could miss it on a loaded machine).
    sandbox.set_number(slow, NumberBehaviour(latency_ms=6000))
    notifier = make_notifier(timeout=3.0)
    results = await asyncio.gather(
        notifier.send_sms(slow, "x", reference="slow"),
        *(notifier.send_sms(f"+336399801{i:02d}", "x", reference=f"r{i}") for i in range(10)),
    )
    assert results[0].outcome == "unknown"
    assert all(r.accepted for r in results[1:])


async def test_aclose_is_idempotent(make_notifier: MakeNotifier) -> None:
    notifier = make_notifier()
    assert (await notifier.send_sms(CONTACT, "x", reference="r")).accepted
    await notifier.aclose()
    await notifier.aclose()


_FORM_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)  # no lone surrogate
_FORM_VALUES = st.one_of(
    _FORM_TEXT, st.integers(), st.booleans(), st.lists(_FORM_TEXT, max_size=3), st.tuples(_FORM_TEXT)
)


@given(st.dictionaries(_FORM_TEXT, _FORM_VALUES, max_size=6))
def test_form_body_means_what_urlencode_means(data: dict[str, object]) -> None:
    # What the provider reads: every pair, in order, decoded as any form parser does.
    body = form_body(data)
    assert parse_qsl(body, keep_blank_values=True) == parse_qsl(
        urlencode(data, doseq=True), keep_blank_values=True
    )
    assert parse_qsl(form_body({"To": "+33639980101"})) == [("To", "+33639980101")]  # '+' is escaped
