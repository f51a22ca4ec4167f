"""The heartbeat fast path accepts exactly what the full decoder accepts, and says nothing else.

``decode_heartbeat`` returning None hands the message to ``decode_uplink``,
which refuses it with its reason (tested end to end, with the counted
reasons, in tests/security/test_mqtt_heartbeat_fastpath.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from protocol.codec import decode_uplink, encode_uplink, to_bytes
from protocol.fastbeat import decode_heartbeat, signed_part
from protocol.messages import Heartbeat, Location
from protocol.signing import canonical_bytes, sign, signed_bytes
from protocol.topics import UplinkKind, parse_topic, uplink_topic

KEY = bytes(range(32))
DEVICE = "btn-montpellier-001"
TOPIC = parse_topic(uplink_topic(DEVICE, UplinkKind.HEARTBEAT))


def fields(**overrides: Any) -> dict[str, Any]:
    """The golden heartbeat vector's fields (without its signature), with ``overrides``."""
    vector = json.loads((Path(__file__).parent / "vectors" / "heartbeat.json").read_text())
    return {k: v for k, v in json.loads(vector["payload"]).items() if k != "sig"} | overrides


def test_the_devices_encoding_takes_the_fast_path_with_the_same_content() -> None:
    model, wire = encode_uplink(
        kind="heartbeat",
        device_id=DEVICE,
        event_id="hb-1",
        seq=7,
        ts_ms=1_795_000_000_000,
        key=KEY,
        battery_pct=83,
        signal_dbm=None,
        firmware="vigie-device 0.1.0",
        uptime_s=12,
    )
    fast = decode_heartbeat(wire, DEVICE, KEY)
    assert fast is not None
    assert isinstance(model, Heartbeat)
    assert msgspec.structs.asdict(fast) == model.model_dump(exclude={"location"})


def test_the_signed_layout_is_the_canonical_bytes_then_the_signature() -> None:
    wire = signed_bytes(fields(), KEY)
    parts = signed_part(wire)
    assert parts is not None and parts[0] == canonical_bytes(fields())
    assert json.loads(wire)["sig"] == parts[1].decode() == sign(fields(), KEY)["sig"]


def test_a_bad_signature_is_left_to_the_full_decoder() -> None:
    wire = signed_bytes(fields(), KEY)
    assert decode_heartbeat(wire, DEVICE, bytes(32)) is None  # another device's key
    flipped = wire[:-3] + (b"0" if wire[-3:-2] != b"0" else b"1") + wire[-2:]
    assert decode_heartbeat(flipped, DEVICE, KEY) is None


def test_a_body_changed_after_signing_is_left_to_the_full_decoder() -> None:
    wire = signed_bytes(fields(), KEY)
    assert decode_heartbeat(wire.replace(b'"battery_pct":83', b'"battery_pct":84'), DEVICE, KEY) is None


def test_another_devices_heartbeat_on_this_topic_is_left_to_the_full_decoder() -> None:
    wire = signed_bytes(fields(device="btn-other"), KEY)
    assert decode_heartbeat(wire, DEVICE, KEY) is None


def test_other_layouts_and_a_location_take_the_full_path_and_are_accepted_there() -> None:
    old_layout = to_bytes(sign(fields(), KEY))  # key order of the wire before the signed layout
    location = Location(lat=43.6, lon=3.87, accuracy_m=12.0, fix_ts=1_795_000_000_000, source="gnss")
    with_fix = signed_bytes(fields(location=location.model_dump()), KEY)
    for wire in (old_layout, with_fix):
        assert decode_heartbeat(wire, DEVICE, KEY) is None
        assert isinstance(decode_uplink(wire, TOPIC, lambda _d: KEY), Heartbeat)


def test_schema_violations_signed_by_the_key_are_not_accepted() -> None:
    bad = [
        fields(battery_pct=101),
        fields(battery_pct=True),
        fields(seq=-1),
        fields(seq=1.0),
        fields(id="abc\n"),  # Python's $ would let the newline through
        fields(firmware=""),
        fields(extra="field"),
        fields(v=2),
        fields(type="alert"),
    ]
    for f in bad:
        assert decode_heartbeat(signed_bytes(f, KEY), DEVICE, KEY) is None


def test_an_oversized_payload_is_not_decoded() -> None:
    wire = signed_bytes(fields(firmware="x" * 40) | {"pad": "y" * 5000}, KEY)
    assert decode_heartbeat(wire, DEVICE, KEY) is None


@given(
    battery=st.one_of(st.none(), st.integers(-5, 105)),
    signal=st.one_of(st.none(), st.integers(-160, 5)),
    firmware=st.text(max_size=45),
    uptime=st.integers(-2, 2**63),
    seq=st.integers(-1, 2**53 + 1),
)
def test_fast_path_accepts_only_what_the_full_decoder_accepts_with_the_same_fields(
    battery: int | None, signal: int | None, firmware: str, uptime: int, seq: int
) -> None:
    wire = signed_bytes(
        fields(battery_pct=battery, signal_dbm=signal, firmware=firmware, uptime_s=uptime, seq=seq), KEY
    )
    fast = decode_heartbeat(wire, DEVICE, KEY)
    if fast is None:
        return  # the full decoder decides
    full = decode_uplink(wire, TOPIC, lambda _d: KEY)
    assert isinstance(full, Heartbeat)
    assert (fast.battery_pct, fast.signal_dbm, fast.firmware, fast.uptime_s, fast.seq) == (
        full.battery_pct,
        full.signal_dbm,
        full.firmware,
        full.uptime_s,
        full.seq,
    )
