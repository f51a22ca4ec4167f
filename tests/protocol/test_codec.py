"""Decoder behaviour on bad input: each failure has a precise, countable reason."""

from __future__ import annotations

import json

import pytest

from protocol.codec import (
    Rejected,
    RejectReason,
    decode_status,
    decode_uplink,
    encode_status,
    encode_uplink,
    to_bytes,
)
from protocol.messages import MAX_PAYLOAD_BYTES
from protocol.signing import sign
from protocol.topics import UplinkKind, parse_topic, uplink_topic

KEY = b"\x01" * 32
DEVICE = "btn-test-1"
TOPIC = parse_topic(uplink_topic(DEVICE, UplinkKind.ALERT))


def keys(device_id: str) -> bytes | None:
    return KEY if device_id == DEVICE else None


def alert_fields(**override: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "v": 1,
        "type": "alert",
        "id": "a1",
        "device": DEVICE,
        "seq": 1,
        "ts": 1_795_000_000_000,
        "gesture": "hold",
    }
    fields.update(override)
    return fields


def reason_for(payload: bytes, topic: object = TOPIC) -> RejectReason:
    with pytest.raises(Rejected) as caught:
        decode_uplink(payload, topic, keys)  # type: ignore[arg-type]
    return caught.value.reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"x" * (MAX_PAYLOAD_BYTES + 1), RejectReason.TOO_LARGE),
        (b"{not json", RejectReason.NOT_JSON),
        (b"\xff\xfe", RejectReason.NOT_JSON),
        (b"[1, 2]", RejectReason.BAD_SCHEMA),
        (to_bytes(alert_fields(v=2)), RejectReason.BAD_VERSION),
        (to_bytes(alert_fields(device="btn-other")), RejectReason.TOPIC_MISMATCH),
        (to_bytes(alert_fields(type="test")), RejectReason.TOPIC_MISMATCH),
        (to_bytes(alert_fields()), RejectReason.BAD_SIGNATURE),  # unsigned
        (to_bytes({**sign(alert_fields(), KEY), "sig": "0" * 64}), RejectReason.BAD_SIGNATURE),
        (to_bytes(sign(alert_fields(gesture="shake"), KEY)), RejectReason.BAD_SCHEMA),
        (to_bytes(sign(alert_fields(seq="1"), KEY)), RejectReason.BAD_SCHEMA),
        (to_bytes(sign(alert_fields(extra="field"), KEY)), RejectReason.BAD_SCHEMA),
        (to_bytes(sign(alert_fields(id="UPPER"), KEY)), RejectReason.BAD_SCHEMA),
    ],
)
def test_bad_uplinks_are_rejected_with_a_reason(payload: bytes, reason: RejectReason) -> None:
    assert reason_for(payload) is reason


def test_unknown_device_is_rejected_before_any_signature_work() -> None:
    topic = parse_topic(uplink_topic("btn-ghost", UplinkKind.ALERT))
    payload = to_bytes(sign(alert_fields(device="btn-ghost"), KEY))
    assert reason_for(payload, topic) is RejectReason.UNKNOWN_DEVICE


def test_key_order_and_spacing_on_the_wire_do_not_matter() -> None:
    signed = sign(alert_fields(), KEY)
    reordered = json.dumps(dict(reversed(list(signed.items()))), indent=3).encode()
    assert decode_uplink(reordered, TOPIC, keys).id == "a1"


def test_encoder_refuses_to_build_an_invalid_message() -> None:
    with pytest.raises(ValueError):
        encode_uplink(kind="alert", device_id=DEVICE, event_id="a1", seq=-1, ts_ms=0, key=KEY, gesture="hold")


def test_status_round_trip_and_device_check() -> None:
    payload = encode_status(DEVICE, "offline")
    assert decode_status(payload, DEVICE).state == "offline"
    with pytest.raises(Rejected):
        decode_status(payload, "btn-other")
