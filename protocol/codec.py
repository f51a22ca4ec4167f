"""Encoding and decoding of wire messages: the one place bytes become models.

Decoding checks, in order: size, nesting depth, JSON, version, topic/payload agreement, the
device's key, the signature, then the schema. Each failure raises
:class:`Rejected` with a :class:`RejectReason` that callers count and log.
Freshness (sequence and time windows) is stateful and lives in
:mod:`protocol.replay`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from protocol.messages import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    UPLINK_ADAPTER,
    Alert,
    Cancel,
    Downlink,
    DownlinkType,
    Heartbeat,
    Location,
    Position,
    Status,
    TestAlert,
)
from protocol.signing import has_valid_signature, sign, signed_bytes
from protocol.topics import ParsedTopic

UplinkMessage = Alert | TestAlert | Cancel | Heartbeat | Position
KeyLookup = Callable[[str], bytes | None]

# The schema nests two levels (the message, its location); anything deeper is
# hostile. Bounding it before json.loads keeps every later step (signature
# re-serialisation, validation) far from Python's recursion limit.
MAX_JSON_DEPTH = 8
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")


class RejectReason(StrEnum):
    """Why a message was refused; used as a metrics label and in logs."""

    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    BAD_VERSION = "bad_version"
    BAD_SCHEMA = "bad_schema"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_DEVICE = "unknown_device"
    BAD_SIGNATURE = "bad_signature"
    REPLAY = "replay"
    STALE = "stale"
    FUTURE_TS = "future_ts"
    RATE_LIMITED = "rate_limited"
    QUEUE_FULL = "queue_full"  # the sender's own ingest queue is full (it is flooding)
    TOO_DEEP = "too_deep"
    # A position for an alert that is not this device's (unknown, or another device's).
    NOT_ITS_ALERT = "not_its_alert"
    # A position for the device's own alert that is no longer open (resolved, cancelled...).
    ALERT_CLOSED = "alert_closed"
    # Not the sender's fault as far as we know: a bug met while processing it.
    # Counted and logged like any rejection so that one message never stops the ingest.
    INTERNAL_ERROR = "internal_error"


class Rejected(Exception):
    """A message that must not be acted upon."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


def new_event_id() -> str:
    """A fresh event id (UUID4, which fits the ``[a-z0-9-]`` id rule)."""
    return str(uuid.uuid4())


def to_bytes(fields: Mapping[str, Any]) -> bytes:
    """Compact JSON for the wire (signature already included)."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def encode_uplink(
    *,
    kind: str,
    device_id: str,
    event_id: str,
    seq: int,
    ts_ms: int,
    key: bytes,
    location: Location | None = None,
    **body: Any,
) -> tuple[UplinkMessage, bytes]:
    """Build, validate and sign an uplink; return the model and its wire bytes (signed layout)."""
    fields: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "type": kind,
        "id": event_id,
        "device": device_id,
        "seq": seq,
        "ts": ts_ms,
        **body,
    }
    if location is not None:
        fields["location"] = location.model_dump()
    payload = signed_bytes(fields, key)
    return UPLINK_ADAPTER.validate_python(json.loads(payload)), payload


def encode_downlink(
    *, kind: DownlinkType, device_id: str, ref: str, ts_ms: int, key: bytes, event_id: str | None = None
) -> tuple[Downlink, bytes]:
    """Build and sign a downlink for ``device_id`` about alert ``ref``."""
    fields = {
        "v": PROTOCOL_VERSION,
        "type": kind,
        "id": event_id or new_event_id(),
        "device": device_id,
        "ref": ref,
        "ts": ts_ms,
    }
    signed = sign(fields, key)
    return Downlink.model_validate(signed), to_bytes(signed)


def encode_status(device_id: str, state: str) -> bytes:
    """Payload of the retained status message / Last Will."""
    return to_bytes(Status(v=PROTOCOL_VERSION, state=state, device=device_id).model_dump())  # type: ignore[arg-type]


def nesting_exceeds(payload: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if ``payload``'s JSON arrays/objects nest deeper than ``limit``.

    The common case costs two C-level counts: a payload with at most ``limit``
    brackets cannot nest deeper. Only the rest is scanned byte by byte
    (skipping string contents), and payloads are at most 4 KiB.
    """
    if payload.count(b"[") + payload.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif byte in _CLOSERS:
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity: json.loads would accept them


def _load_object(payload: bytes) -> dict[str, Any]:
    """Bounded, fail-closed JSON: size, then depth, then the parser; nothing but Rejected escapes."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected(RejectReason.TOO_LARGE, f"{len(payload)} octets > {MAX_PAYLOAD_BYTES}")
    if nesting_exceeds(payload):
        raise Rejected(RejectReason.TOO_DEEP, f"JSON imbriqué sur plus de {MAX_JSON_DEPTH} niveaux")
    try:
        obj = json.loads(payload, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise Rejected(RejectReason.NOT_JSON, str(exc)[:120]) from None
    if not isinstance(obj, dict):
        raise Rejected(RejectReason.BAD_SCHEMA, "le contenu n'est pas un objet JSON")
    version = obj.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:  # not 1.0 nor true: the integer 1
        raise Rejected(RejectReason.BAD_VERSION, f"v={version!r}")
    return obj


def _check_signature(obj: Mapping[str, Any], key: bytes) -> None:
    if not has_valid_signature(obj, key):
        raise Rejected(RejectReason.BAD_SIGNATURE)


def _schema_error(exc: ValidationError) -> Rejected:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return Rejected(RejectReason.BAD_SCHEMA, f"{where}: {first['msg']}")


def decode_uplink(payload: bytes, topic: ParsedTopic, key_for: KeyLookup) -> UplinkMessage:
    """Verify and parse an uplink received on ``topic``.

    ``key_for(device_id)`` returns the device's HMAC key, or None when the
    device is unknown or revoked.
    """
    obj = _load_object(payload)
    if obj.get("device") != topic.device_id or topic.kind is None or obj.get("type") != topic.kind.value:
        why = f"balise ou type du contenu différents de ceux du sujet {topic}"
        raise Rejected(RejectReason.TOPIC_MISMATCH, why)
    key = key_for(topic.device_id)
    if key is None:
        raise Rejected(RejectReason.UNKNOWN_DEVICE, topic.device_id)
    _check_signature(obj, key)
    try:
        return UPLINK_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise _schema_error(exc) from None


def decode_downlink(payload: bytes, device_id: str, key: bytes) -> Downlink:
    """Verify and parse a downlink addressed to ``device_id``."""
    obj = _load_object(payload)
    if obj.get("device") != device_id:
        raise Rejected(RejectReason.TOPIC_MISMATCH, "message descendant destiné à une autre balise")
    _check_signature(obj, key)
    try:
        return Downlink.model_validate(obj)
    except ValidationError as exc:
        raise _schema_error(exc) from None


def decode_status(payload: bytes, device_id: str) -> Status:
    """Parse a retained status / Last Will message."""
    obj = _load_object(payload)
    try:
        status = Status.model_validate(obj)
    except ValidationError as exc:
        raise _schema_error(exc) from None
    if status.device != device_id:
        raise Rejected(RejectReason.TOPIC_MISMATCH, "état d'une autre balise")
    return status
