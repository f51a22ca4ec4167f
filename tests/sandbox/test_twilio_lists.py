"""The sandbox's Messages and Calls list endpoints, read through the unmodified ``twilio`` library."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from broker_config.runner import free_port
from sandbox.twilio_resources import NumberBehaviour
from sandbox.twilio_server import TwilioSandbox

FROM = "+33465710000"
CHEF = "+33639980101"
OFFICIER = "+33465710101"
TWIML = "<Response><Say>x</Say></Response>"


@pytest.fixture
async def sandbox() -> AsyncIterator[TwilioSandbox]:
    async with TwilioSandbox(port=free_port(), call_hold_ms=50) as box:
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


async def test_messages_are_listed_by_recipient_newest_first(sandbox: TwilioSandbox, client: Client) -> None:
    first = await client.messages.create_async(to=CHEF, from_=FROM, body="un")
    second = await client.messages.create_async(to=CHEF, from_=FROM, body="deux")
    await client.messages.create_async(to=OFFICIER, from_=FROM, body="autre")
    listed = await client.messages.list_async(to=CHEF)
    assert [m.sid for m in listed] == [second.sid, first.sid]
    assert {m.to for m in listed} == {CHEF}
    assert [r.kind for r in sandbox.requests][-1] == "list-message"


async def test_messages_are_filtered_by_date_sent_like_twilio(sandbox: TwilioSandbox, client: Client) -> None:
    sent = await client.messages.create_async(to=CHEF, from_=FROM, body="envoyé")
    sandbox.set_number(OFFICIER, NumberBehaviour(sms_status="failed"))
    await client.messages.create_async(to=OFFICIER, from_=FROM, body="jamais envoyé")
    await sandbox.wait_for(lambda: all(m.final for m in sandbox.messages.values()))
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    after = await client.messages.list_async(date_sent_after=hour_ago)
    assert [m.sid for m in after] == [sent.sid]  # a message never sent has no date_sent
    assert await client.messages.list_async(date_sent_before=hour_ago) == []
    assert [m.sid for m in await client.messages.list_async(date_sent=datetime.now(UTC))] == [sent.sid]


async def test_calls_are_listed_by_recipient_and_start_time(sandbox: TwilioSandbox, client: Client) -> None:
    sandbox.set_number(CHEF, NumberBehaviour(call_status="no-answer"))
    unanswered = await client.calls.create_async(to=CHEF, from_=FROM, twiml=TWIML)
    answered = await client.calls.create_async(to=OFFICIER, from_=FROM, twiml=TWIML)
    await sandbox.wait_for(lambda: all(c.final for c in sandbox.calls.values()))
    [found] = await client.calls.list_async(to=CHEF)
    assert (found.sid, found.status) == (unanswered.sid, "no-answer")
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    started = await client.calls.list_async(start_time_after=hour_ago)
    assert [c.sid for c in started] == [answered.sid]  # a call never answered never started
    assert [c.sid for c in await client.calls.list_async(status="completed")] == [answered.sid]


async def test_pages_are_followed_by_the_library(sandbox: TwilioSandbox, client: Client) -> None:
    sids = [(await client.messages.create_async(to=CHEF, from_=FROM, body=f"n{i}")).sid for i in range(5)]
    listed = await client.messages.list_async(to=CHEF, page_size=2)
    assert [m.sid for m in listed] == sids[::-1]
    assert [r.kind for r in sandbox.requests].count("list-message") == 3  # pages of 2, 2 and 1
    assert len(await client.messages.list_async(to=CHEF, limit=3, page_size=2)) == 3


async def test_a_malformed_date_is_refused_like_twilio(sandbox: TwilioSandbox) -> None:
    async with httpx.AsyncClient(
        base_url=sandbox.base_url, auth=(sandbox.account_sid, sandbox.auth_token)
    ) as http:
        response = await http.get(
            f"/2010-04-01/Accounts/{sandbox.account_sid}/Messages.json", params={"DateSent>": "hier"}
        )
    assert response.status_code == 400 and response.json()["code"] == 20001
