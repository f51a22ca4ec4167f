"""Topic tree: ids cannot smuggle wildcards or levels; parsing is exact."""

from __future__ import annotations

import pytest

from protocol.topics import (
    TopicError,
    UplinkKind,
    downlink_topic,
    parse_topic,
    shared_uplink_filter,
    uplink_topic,
)


@pytest.mark.parametrize("bad", ["", "A", "a/b", "a+b", "#", "-a", "a-", "é", "a" * 65])
def test_ids_outside_the_alphabet_are_refused(bad: str) -> None:
    with pytest.raises(TopicError):
        uplink_topic(bad, UplinkKind.ALERT)


def test_round_trip() -> None:
    parsed = parse_topic(uplink_topic("bracelet-mmg-7", UplinkKind.CANCEL))
    assert (parsed.device_id, parsed.channel, parsed.kind) == ("bracelet-mmg-7", "up", UplinkKind.CANCEL)
    assert parse_topic(downlink_topic("b1")).channel == "down"


@pytest.mark.parametrize(
    "topic", ["vigie/v1/dev/b1/up/shout", "vigie/v1/dev/b1/up", "other/b1/status", "vigie/v1/dev/B1/status"]
)
def test_foreign_topics_are_refused(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(topic)


def test_shared_filter() -> None:
    assert shared_uplink_filter() == "$share/dispatch/vigie/v1/dev/+/up/+"
