"""The heartbeat fast path: wire bytes → verified heartbeat, without re-serialising or pydantic.

Heartbeats are almost all of the uplink traffic (one per device every 30 s:
3,333/s for 100,000 devices), and :func:`protocol.codec.decode_uplink` spends
most of its time on work a heartbeat does not need: ``json.loads`` into a dict,
re-serialising it canonically to check the signature, then a pydantic model.

A device writes its signed messages in the *signed layout*
(:func:`protocol.signing.signed_bytes`): the canonical bytes, with the
``"sig"`` member appended last. So the signed bytes are the received bytes
minus that fixed-size tail, and the signature is checked over them as they
arrived; only then are they decoded, by msgspec, straight into a struct with
the same constraints as :class:`protocol.messages.Heartbeat`.

Invariants:

* only bytes whose HMAC verifies are ever parsed here, and the HMAC covers
  every member but ``sig``: a key holder signed exactly the object decoded;
* this path accepts nothing that :func:`~protocol.codec.decode_uplink` would
  refuse: every check is at least as strict (ids end at ``\\Z``, integers are
  64-bit), and a heartbeat with a location is left to the full decoder. Two
  checks are made by equality instead of a pattern (a regular expression per
  field per heartbeat was a tenth of the decoding): ``device`` must equal the
  caller's device id, a registered one (the directory validated it with the
  same pattern), and ``sig`` must equal the signature just verified, our own
  lower-case hex digest;
* it never says why: ``None`` means "not for the fast path", and the caller
  hands the message to the full decoder, which refuses it with its counted
  reason (or accepts a valid message in another layout, e.g. an older device's).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Literal

import msgspec

from protocol.messages import MAX_PAYLOAD_BYTES

__all__ = ["WireHeartbeat", "decode_heartbeat", "signed_part"]

# Python's ``$`` also matches before a final newline; pydantic's (Rust) does not. ``\Z`` does not either.
_ID = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\Z"
_Id = Annotated[str, msgspec.Meta(pattern=_ID)]
_EpochMs = Annotated[int, msgspec.Meta(ge=0, lt=2**53)]

#: What follows the signed bytes on the wire: ``,"sig":"<64 hex>"}``.
_SIG_HEAD = b',"sig":"'
_SIG_TAIL_LEN = len(_SIG_HEAD) + 64 + 2


class WireHeartbeat(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A heartbeat as :class:`protocol.messages.Heartbeat` describes it, without a location."""

    v: Literal[1]
    type: Literal["heartbeat"]
    id: _Id
    device: str  # equal to a registered device's id (decode_heartbeat), so of the _ID pattern
    seq: _EpochMs
    ts: _EpochMs
    firmware: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    uptime_s: Annotated[int, msgspec.Meta(ge=0)]
    sig: str  # equal to the signature verified (decode_heartbeat): 64 lower-case hex digits
    battery_pct: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    signal_dbm: Annotated[int, msgspec.Meta(ge=-150, le=0)] | None = None


_DECODER = msgspec.json.Decoder(WireHeartbeat)


def signed_part(payload: bytes) -> tuple[bytes, bytes] | None:
    """``(signed bytes, claimed hex signature)`` of a payload in the signed layout, else None."""
    if len(payload) <= _SIG_TAIL_LEN or payload[-_SIG_TAIL_LEN:-66] != _SIG_HEAD or payload[-2:] != b'"}':
        return None
    # Not checked for hex here: it must equal our own lower-case hex digest anyway.
    return payload[:-_SIG_TAIL_LEN] + b"}", payload[-66:-2]


def decode_heartbeat(payload: bytes, device_id: str, key: bytes) -> WireHeartbeat | None:
    """The heartbeat of ``device_id`` (a registered device, whose HMAC key is ``key``) in ``payload``,
    verified; None when the full decoder must decide (another layout, a location, or anything it
    would refuse)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    parts = signed_part(payload)
    if parts is None:
        return None
    signed, claimed = parts
    if not hmac.compare_digest(hmac.digest(key, signed, "sha256").hex().encode("ascii"), claimed):
        return None
    try:
        heartbeat = _DECODER.decode(payload)
    except msgspec.MsgspecError:  # DecodeError and ValidationError alike
        return None
    if heartbeat.device != device_id or heartbeat.sig.encode("ascii", "replace") != claimed:
        return None  # (msgspec decodes the last of repeated members: the tail, verified just above)
    return heartbeat
