"""Store conformance of the responder links (issue 15): every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatcher.store.base import Conflict, LinkSpec, NotFound, Transition
from tests.store.coverage import covers
from tests.store.test_conformance import first, new_alert, seed, spec, window


def link(contact: str, token: str) -> LinkSpec:
    return LinkSpec(contact, hashlib.sha256(token.encode()).hexdigest())


@covers("add_responder_link", "responder_link", "insert_alerts", "apply_transition")
async def test_links_are_written_with_their_decision_and_read_with_their_alert_state(store: Any) -> None:
    await seed(store)
    opening = replace(first("a-1", spec("chef")), links=(link("chef", "t-chef"),))
    await store.insert_alerts([(new_alert("a-1"), window(1), opening)])
    found = await store.responder_link(link("chef", "t-chef").token_hash)
    assert found is not None
    assert (found.alert_id, found.contact_id, found.alert_state) == ("a-1", "chef", "notifying")
    assert abs(found.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert await store.responder_link(link("chef", "t-other").token_hash) is None

    # Another link for the same contact (another instance sent the SMS again), and a closing.
    await store.add_responder_link("a-1", link("chef", "t-chef-2"))
    await store.add_responder_link("a-1", link("chef", "t-chef-2"))  # a known hash is kept, no error
    closing = Transition(alert_id="a-1", expected_version=1, state="resolved", escalation={"closed": True})
    await store.apply_transition(closing)
    for token in ("t-chef", "t-chef-2"):
        closed = await store.responder_link(link("chef", token).token_hash)
        assert closed is not None and closed.alert_state == "resolved"
        assert closed.alert_updated_at >= found.created_at - timedelta(seconds=1)


@covers("add_responder_link", "responder_link", "apply_transition")
async def test_links_of_a_refused_transition_or_an_unknown_alert_are_not_stored(store: Any) -> None:
    await seed(store)
    await store.insert_alerts([(new_alert("a-1"), window(1), first("a-1", spec("chef")))])
    stale = Transition(
        alert_id="a-1", expected_version=0, state="notifying", escalation={}, links=(link("chef", "t"),)
    )
    with pytest.raises(Conflict):
        await store.apply_transition(stale)
    assert await store.responder_link(link("chef", "t").token_hash) is None
    with pytest.raises(NotFound):
        await store.add_responder_link("a-404", link("chef", "t"))
    assert await store.responder_link(link("chef", "t").token_hash) is None
