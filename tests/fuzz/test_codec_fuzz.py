"""Property-based fuzzing of the wire decoders: whatever arrives, only ``Rejected`` escapes.

Every decoder (uplink, downlink, status) is fed raw bytes, arbitrary JSON,
truncations, mutations of genuine signed messages (re-signed, so the schema is
reached too), oversized and wrong-version payloads. A decoder that raised
anything else (KeyError, RecursionError, pydantic's ValidationError...) would
make the ingest drop a batch, so this is a property of the hot path.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocol.codec import (
    Rejected,
    RejectReason,
    decode_downlink,
    decode_status,
    decode_uplink,
    encode_downlink,
    encode_uplink,
    to_bytes,
)
from protocol.messages import MAX_PAYLOAD_BYTES, Location
from protocol.replay import ALERT_TIME_WINDOW, ReplayVerdict, SequenceWindow
from protocol.signing import sign
from protocol.topics import ParsedTopic, UplinkKind, parse_topic, uplink_topic

KEY = bytes(range(32))
DEVICE = "btn-fuzz-1"
TOPICS = {kind: parse_topic(uplink_topic(DEVICE, kind)) for kind in UplinkKind}
FIX = Location(lat=43.6115, lon=3.8781, accuracy_m=6.0, fix_ts=1_794_999_999_200, source="gnss")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def key_for(device_id: str) -> bytes | None:
    return KEY if device_id == DEVICE else None


def genuine(kind: UplinkKind = UplinkKind.ALERT) -> dict[str, Any]:
    bodies: dict[UplinkKind, dict[str, Any]] = {
        UplinkKind.ALERT: {"gesture": "hold"},
        UplinkKind.TEST: {"gesture": "keyboard"},
        UplinkKind.CANCEL: {"alert_id": "a-1", "pin": "1234"},
        UplinkKind.HEARTBEAT: {"firmware": "fw/1", "uptime_s": 5, "battery_pct": 80},
        UplinkKind.POSITION: {"alert_id": "a-1", "location": FIX},
    }
    body = bodies[kind]
    _, payload = encode_uplink(
        kind=kind.value, device_id=DEVICE, event_id="e-1", seq=7, ts_ms=1_795_000_000_000, key=KEY, **body
    )
    decoded: dict[str, Any] = json.loads(payload)
    return decoded


def outcome(decode: Any, *args: Any) -> RejectReason | None:
    """Run a decoder; return the rejection reason, None when accepted. Anything else fails the test."""
    try:
        decode(*args)
    except Rejected as rejected:
        assert isinstance(rejected.reason, RejectReason)
        return rejected.reason
    return None


def all_decoders(payload: bytes, topic: ParsedTopic) -> None:
    outcome(decode_uplink, payload, topic, key_for)
    outcome(decode_downlink, payload, DEVICE, KEY)
    outcome(decode_status, payload, DEVICE)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["v", "type", "id", "device", "seq", "ts", "gesture", "location", "sig", "alert_id", "pin", "ref"]


@FUZZ
@given(payload=st.binary(max_size=MAX_PAYLOAD_BYTES + 64), kind=st.sampled_from(list(UplinkKind)))
def test_random_bytes_are_only_ever_rejected(payload: bytes, kind: UplinkKind) -> None:
    all_decoders(payload, TOPICS[kind])


@FUZZ
@given(value=json_values, kind=st.sampled_from(list(UplinkKind)))
def test_any_json_document_is_only_ever_rejected(value: Any, kind: UplinkKind) -> None:
    payload = json.dumps(value, allow_nan=True).encode()
    all_decoders(payload, TOPICS[kind])


@FUZZ
@given(kind=st.sampled_from(list(UplinkKind)), field=st.sampled_from(FIELDS), value=json_values)
def test_a_resigned_message_with_any_field_changed_is_accepted_or_rejected_cleanly(
    kind: UplinkKind, field: str, value: Any
) -> None:
    fields = genuine(kind) | {field: value}
    try:
        payload = to_bytes(sign(fields, KEY))
    except ValueError:  # NaN/Infinity cannot be signed canonically: send it unsigned
        payload = json.dumps(fields, allow_nan=True).encode()
    reason = outcome(decode_uplink, payload, TOPICS[kind], key_for)
    assert reason is None or reason in set(RejectReason)


@FUZZ
@given(kind=st.sampled_from(list(UplinkKind)), field=st.sampled_from(FIELDS), value=json_values)
def test_any_change_without_the_key_fails_the_signature(kind: UplinkKind, field: str, value: Any) -> None:
    original = genuine(kind)
    assume(field != "sig" and original.get(field, object()) != value)
    tampered = json.dumps(original | {field: value}, allow_nan=True).encode()
    reason = outcome(decode_uplink, tampered, TOPICS[kind], key_for)
    assert reason is not None  # never accepted with the old signature
    assert reason in {
        RejectReason.BAD_SIGNATURE,
        RejectReason.BAD_VERSION,
        RejectReason.TOPIC_MISMATCH,
        RejectReason.UNKNOWN_DEVICE,
        RejectReason.TOO_LARGE,
        RejectReason.NOT_JSON,  # NaN/Infinity: refused by the decoder itself (issue 13)
        RejectReason.TOO_DEEP,
    }


@FUZZ
@given(kind=st.sampled_from(list(UplinkKind)), data=st.data())
def test_truncated_messages_are_not_json(kind: UplinkKind, data: st.DataObject) -> None:
    payload = to_bytes(genuine(kind))
    cut = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
    assert outcome(decode_uplink, payload[:cut], TOPICS[kind], key_for) in {
        RejectReason.NOT_JSON,
        RejectReason.BAD_SCHEMA,  # e.g. b"1" parses as a number
    }


@FUZZ
@given(extra=st.integers(min_value=1, max_value=100_000))
def test_oversized_payloads_are_refused_before_parsing(extra: int) -> None:
    padding = "x" * (MAX_PAYLOAD_BYTES + extra)
    payload = to_bytes(sign(genuine() | {"gesture": padding}, KEY))
    assert outcome(decode_uplink, payload, TOPICS[UplinkKind.ALERT], key_for) is RejectReason.TOO_LARGE
    assert outcome(decode_downlink, payload, DEVICE, KEY) is RejectReason.TOO_LARGE
    assert outcome(decode_status, payload, DEVICE) is RejectReason.TOO_LARGE


@FUZZ
@given(version=json_values.filter(lambda v: not (type(v) is int and v == 1)) | st.sampled_from([1.0, True]))
def test_every_other_version_is_bad_version(version: Any) -> None:
    fields = genuine() | {"v": version}
    payload = json.dumps(fields, allow_nan=True).encode()
    assume(len(payload) <= MAX_PAYLOAD_BYTES)
    reason = outcome(decode_uplink, payload, TOPICS[UplinkKind.ALERT], key_for)
    try:
        json.dumps(version, allow_nan=False)
    except ValueError:  # NaN/Infinity are not JSON: refused by the decoder before the version
        assert reason is RejectReason.NOT_JSON
        return
    # ``True == 1 == 1.0`` in Python: the decoder checks the type too (1.0 once passed as 1).
    assert reason is RejectReason.BAD_VERSION


def test_deeply_nested_json_is_refused_not_crashing() -> None:
    payload = b"[" * (MAX_PAYLOAD_BYTES - 1)
    assert outcome(decode_uplink, payload, TOPICS[UplinkKind.ALERT], key_for) is RejectReason.TOO_DEEP


@FUZZ
@given(
    kind=st.sampled_from(["received", "acknowledged", "resolved", "cancelled"]),
    field=st.sampled_from(FIELDS),
    value=json_values,
)
def test_downlinks_resigned_with_any_field_changed_decode_cleanly(kind: Any, field: str, value: Any) -> None:
    _, payload = encode_downlink(kind=kind, device_id=DEVICE, ref="a-1", ts_ms=1_795_000_000_000, key=KEY)
    fields = json.loads(payload) | {field: value}
    try:
        mutated = to_bytes(sign(fields, KEY))
    except ValueError:
        mutated = json.dumps(fields, allow_nan=True).encode()
    outcome(decode_downlink, mutated, DEVICE, KEY)


@FUZZ
@given(seqs=st.lists(st.integers(min_value=0, max_value=20_000), min_size=1, max_size=60))
def test_a_sequence_number_is_admitted_at_most_once(seqs: list[int]) -> None:
    window = SequenceWindow()
    admitted: set[int] = set()
    for seq in seqs:
        if window.is_fresh(seq):
            assert seq not in admitted, f"seq {seq} accepted twice (replay)"
            window = window.admit(seq)
            admitted.add(seq)
        else:
            assert seq in admitted or seq < window.high - 4095, f"fresh seq {seq} refused"


@FUZZ
@given(offset_ms=st.integers(min_value=-(10**12), max_value=10**12))
def test_time_window_verdicts_are_total(offset_ms: int) -> None:
    now = int(time.time() * 1000)
    verdict = ALERT_TIME_WINDOW.check(now + offset_ms, now)
    assert verdict in set(ReplayVerdict)
