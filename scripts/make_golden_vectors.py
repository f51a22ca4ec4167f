"""Regenerate tests/protocol/vectors/*.json (run only when the protocol version changes).

The vectors pin the wire format: tests check the encoder reproduces them byte
for byte and the verifier accepts/rejects them, so any accidental change to
canonicalisation, field names or signing breaks the build.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocol.codec import encode_downlink, encode_uplink, to_bytes
from protocol.messages import DownlinkType, Location
from protocol.replay import fresh_sequence_start
from protocol.signing import canonical_bytes

OUT = Path(__file__).resolve().parent.parent / "tests" / "protocol" / "vectors"
KEY = bytes.fromhex("6b1f0d5c9a3e47b28f10c6d2e4a59b7713f8e0a4c5d6b7e8f90a1b2c3d4e5f60")
DEVICE = "btn-montpellier-001"
TS = 1_795_000_000_000


def _vector(name: str, description: str, topic: str, payload: bytes, expect: str, **extra: Any) -> None:
    fields = json.loads(payload)
    doc = {
        "description": description,
        "key_hex": KEY.hex(),
        "topic": topic,
        "payload": payload.decode(),
        "canonical": canonical_bytes(fields).decode(),
        "sig": fields.get("sig"),
        "expect": expect,
        **extra,
    }
    (OUT / f"{name}.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def _downlink_vector(name: str, description: str, kind: DownlinkType, delay_ms: int, event_id: str) -> None:
    """A downlink about the ``alert_gps`` alert, ``delay_ms`` after it."""
    ref = "0f6d8a52-6a55-4c1e-9c7e-1d0b1e6f3a01"
    _, down = encode_downlink(
        kind=kind, device_id=DEVICE, ref=ref, ts_ms=TS + delay_ms, key=KEY, event_id=event_id
    )
    build = {"kind": kind, "ref": ref, "ts_ms": TS + delay_ms, "event_id": event_id}
    _vector(name, description, f"vigie/v1/dev/{DEVICE}/down", down, "accept", build=build)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    up = f"vigie/v1/dev/{DEVICE}"
    fix = Location(lat=43.6109, lon=3.8772, accuracy_m=12.5, fix_ts=TS - 4000, source="gnss")
    common = {"device_id": DEVICE, "ts_ms": TS, "key": KEY}
    _, alert = encode_uplink(
        kind="alert",
        event_id="0f6d8a52-6a55-4c1e-9c7e-1d0b1e6f3a01",
        seq=41,
        gesture="hold",
        location=fix,
        **common,
    )
    _vector(
        "alert_gps",
        "Alert by long hold with a GNSS fix",
        f"{up}/up/alert",
        alert,
        "accept",
        build={
            "kind": "alert",
            "event_id": "0f6d8a52-6a55-4c1e-9c7e-1d0b1e6f3a01",
            "seq": 41,
            "gesture": "hold",
            "location": fix.model_dump(),
        },
    )
    _, alert2 = encode_uplink(
        kind="alert", event_id="5c2b7e10-3f4a-4b8e-a1d2-7e9f0c3b4a02", seq=42, gesture="multi_press", **common
    )
    _vector(
        "alert_no_fix",
        "Alert by triple press, no position",
        f"{up}/up/alert",
        alert2,
        "accept",
        build={
            "kind": "alert",
            "event_id": "5c2b7e10-3f4a-4b8e-a1d2-7e9f0c3b4a02",
            "seq": 42,
            "gesture": "multi_press",
        },
    )
    _, test = encode_uplink(
        kind="test", event_id="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c03", seq=43, gesture="hold", **common
    )
    _vector(
        "test_alert",
        "Test alert: exercises the chain, reaches no responder",
        f"{up}/up/test",
        test,
        "accept",
        build={
            "kind": "test",
            "event_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c03",
            "seq": 43,
            "gesture": "hold",
        },
    )
    _, cancel = encode_uplink(
        kind="cancel",
        event_id="2d3e4f50-6172-4834-95a6-b7c8d9e0f104",
        seq=44,
        alert_id="0f6d8a52-6a55-4c1e-9c7e-1d0b1e6f3a01",
        pin="2468",
        **common,
    )
    _vector(
        "cancel",
        "Cancel with a PIN (normal and duress PINs look the same)",
        f"{up}/up/cancel",
        cancel,
        "accept",
        build={
            "kind": "cancel",
            "event_id": "2d3e4f50-6172-4834-95a6-b7c8d9e0f104",
            "seq": 44,
            "alert_id": "0f6d8a52-6a55-4c1e-9c7e-1d0b1e6f3a01",
            "pin": "2468",
        },
    )
    _, hb = encode_uplink(
        kind="heartbeat",
        event_id="7f8e9d0c-1b2a-4394-8576-a5b4c3d2e105",
        seq=45,
        battery_pct=83,
        signal_dbm=-67,
        firmware="vigie-device 0.1.0",
        uptime_s=86400,
        **common,
    )
    _vector(
        "heartbeat",
        "Heartbeat with battery, signal, firmware, uptime",
        f"{up}/up/heartbeat",
        hb,
        "accept",
        build={
            "kind": "heartbeat",
            "event_id": "7f8e9d0c-1b2a-4394-8576-a5b4c3d2e105",
            "seq": 45,
            "battery_pct": 83,
            "signal_dbm": -67,
            "firmware": "vigie-device 0.1.0",
            "uptime_s": 86400,
        },
    )
    _position_vector(up, common)
    _downlink_vector(
        "downlink_received",
        "Dispatcher confirms the alert is stored",
        "received",
        900,
        "c0ffee00-0000-4000-8000-000000000006",
    )
    _downlink_vector(
        "downlink_cancel_refused",
        "Dispatcher refused a cancel (wrong PIN or too many tries): the alert stays open; ref is the alert",
        "cancel_refused",
        1900,
        "c0ffee00-0000-4000-8000-000000000007",
    )
    tampered = json.loads(alert)
    tampered["location"]["lat"] = 43.7
    _vector(
        "tampered_location",
        "Alert whose position was altered after signing",
        f"{up}/up/alert",
        to_bytes(tampered),
        "bad_signature",
    )
    other_key = json.loads(alert2)
    other_key["device"] = "btn-montpellier-002"
    _vector(
        "wrong_device",
        "Valid alert replayed on another device's topic",
        "vigie/v1/dev/btn-montpellier-002/up/alert",
        to_bytes(other_key),
        "bad_signature",
    )
    _vector(
        "replayed_alert",
        "Same signed bytes as alert_gps but a new id is impossible; an older seq is a replay",
        f"{up}/up/alert",
        alert,
        "replay",
        window={"high": 45, "seen_seqs": [41, 42, 43, 44, 45]},
    )
    _lost_state_vectors(up, alert2)


def _position_vector(up: str, common: dict[str, Any]) -> None:
    """A live position for the ``alert_gps`` alert, 5 s later, the fix 0.8 s older than the message."""
    alert_id = "0f6d8a52-6a55-4c1e-9c7e-1d0b1e6f3a01"
    event_id = "3b4c5d6e-7f80-4912-a3b4-c5d6e7f80a09"
    fix = Location(lat=43.6115, lon=3.8781, accuracy_m=6.0, fix_ts=TS + 4200, source="gnss")
    _, position = encode_uplink(
        kind="position",
        event_id=event_id,
        seq=46,
        alert_id=alert_id,
        location=fix,
        **(common | {"ts_ms": TS + 5000}),
    )
    _vector(
        "position",
        "Live position while the alert_gps alert is open (sent every position_interval_s with a fix)",
        f"{up}/up/position",
        position,
        "accept",
        build={
            "kind": "position",
            "event_id": event_id,
            "seq": 46,
            "alert_id": alert_id,
            "location": fix.model_dump(),
        },
    )


def _lost_state_vectors(up: str, old_alert: bytes) -> None:
    """The device's state directory is lost an hour after the vectors above (docs/protocol.md)."""
    reflashed_at = TS + 3_600_000
    seq = fresh_sequence_start(reflashed_at)
    _, alert = encode_uplink(
        kind="alert",
        device_id=DEVICE,
        event_id="e1a2b3c4-d5e6-4f70-8192-a3b4c5d6e708",
        seq=seq,
        ts_ms=reflashed_at,
        key=KEY,
        gesture="hold",
    )
    _vector(
        "resync_after_lost_state",
        "First alert after the state directory was lost: its counter starts at the clock (ms), "
        "above the old counter's window",
        f"{up}/up/alert",
        alert,
        "accept",
        build={
            "kind": "alert",
            "event_id": "e1a2b3c4-d5e6-4f70-8192-a3b4c5d6e708",
            "seq": seq,
            "gesture": "hold",
        },
        fresh_start={"now_ms": reflashed_at, "seq": seq},
        window={"high": 45, "seen_seqs": [41, 42, 43, 44, 45]},
    )
    _vector(
        "replayed_before_lost_state",
        "A captured message of the old counter (alert_no_fix, seq 42), replayed after the new one was seen",
        f"{up}/up/alert",
        old_alert,
        "replay",
        window={"high": seq, "seen_seqs": [41, 42, 43, 44, 45, seq]},
    )


if __name__ == "__main__":
    main()
