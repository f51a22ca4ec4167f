"""Responder links: tokens, hashes, expiry, and when a token may go out in an SMS (real SQLite store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatcher.alerting import escalation as esc
from dispatcher.alerting.escalation_plan import Recipient
from dispatcher.alerting.responder_links import (
    ResponderLinks,
    hash_token,
    link_usable,
    needs_link,
    new_token,
    well_formed,
)
from dispatcher.domain import Channel
from dispatcher.store import open_store
from dispatcher.store.base import Conflict, ResponderLink, Transition
from tests.store.test_conformance import first, new_alert, seed, spec, window

BASE = "https://vigie.example.fr"
CHEF = Recipient("chef", "Chef de poste", "+33639980101", (Channel.SMS, Channel.VOICE))
QUART = Recipient("quart", "Officier de quart", "+33465710101", (Channel.VOICE,))


def test_tokens_are_random_128_bit_url_safe_and_stored_hashed() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) == 22 and well_formed(t) for t in tokens)  # 16 bytes = 128 bits, base64url
    token = next(iter(tokens))
    assert hash_token(token) != token and len(hash_token(token)) == 64
    assert not well_formed("abc") and not well_formed("x" * 65) and not well_formed("a/b" + "c" * 20)


def test_only_the_sms_that_ask_to_act_carry_a_link() -> None:
    assert needs_link("sms", "alert") and needs_link("sms", "duress_notice")
    assert not needs_link("voice", "alert")
    assert not any(
        needs_link("sms", p) for p in ("ack_notice", "cancelled", "false_alarm", "resolved", "test")
    )


@pytest.mark.parametrize(
    ("state", "closed_ago_s", "usable"),
    [("notifying", 10_000, True), ("acknowledged", 10_000, True), ("duress", 10_000, True),
     ("resolved", 60, True), ("resolved", 1801, False), ("cancelled", 1801, False),
     ("false_alarm", 1799, True)],
)  # fmt: skip
def test_a_link_opens_while_its_alert_is_open_and_for_the_grace_delay_after(
    state: str, closed_ago_s: float, usable: bool
) -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    link = ResponderLink("h", "a1", "chef", now, state, now - timedelta(seconds=closed_ago_s))
    assert link_usable(link, now, grace_s=1800) is usable


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Any]:
    s = await open_store(f"sqlite:///{tmp_path / 'links.db'}")
    await seed(s)
    try:
        yield s
    finally:
        await s.close()


def notify(recipient: Recipient, channel: Channel, purpose: str = "alert") -> esc.Notify:
    return esc.Notify(recipient, channel, purpose, 0, 0)  # type: ignore[arg-type]


async def test_a_token_goes_out_only_once_its_hash_is_committed_and_a_restart_mints_a_new_one(
    store: Any,
) -> None:
    links = ResponderLinks(store, BASE + "/")
    commands = [notify(CHEF, Channel.SMS), notify(CHEF, Channel.VOICE), notify(QUART, Channel.VOICE)]
    specs = links.plan("a-1", commands)
    assert [s.contact_id for s in specs] == ["chef"]  # one per SMS contact, none for voice-only
    opening = replace(first("a-1", spec("chef")), links=specs)
    await store.insert_alerts([(new_alert("a-1"), window(1), opening)])
    links.committed([opening])
    url = await links.url_for("a-1", "chef")
    assert url.startswith(f"{BASE}/r/") and len(url) == len(BASE) + 3 + 22
    stored = await store.responder_link(hash_token(url.rsplit("/", 1)[1]))
    assert stored is not None and stored.contact_id == "chef", (
        "the SMS carries the token minted with the decision"
    )
    assert links.plan("a-1", commands) == (), "a relance reuses the contact's link"

    # After a restart the plain token is gone: the next SMS gets a new link, committed before it is written.
    restarted = ResponderLinks(store, BASE)
    again = await restarted.url_for("a-1", "chef")
    assert again != url
    for sent in (url, again):
        assert await store.responder_link(hash_token(sent.rsplit("/", 1)[1])) is not None


async def test_a_token_of_a_transition_that_was_refused_never_goes_out(store: Any) -> None:
    await store.insert_alerts([(new_alert("a-1"), window(1), first("a-1", spec("chef")))])
    links = ResponderLinks(store, BASE)
    specs = links.plan("a-1", [notify(CHEF, Channel.SMS)])
    stale = Transition("a-1", expected_version=0, state="notifying", escalation={}, links=specs)
    with pytest.raises(Conflict):
        await store.apply_transition(stale)
    url = await links.url_for("a-1", "chef")  # the refused one was never promoted
    assert hash_token(url.rsplit("/", 1)[1]) != specs[0].token_hash
    assert await store.responder_link(hash_token(url.rsplit("/", 1)[1])) is not None
