"""HMAC-SHA256 signatures over canonical bytes.

Canonical bytes are the message's JSON object *without* its ``sig`` field,
serialised with sorted keys, no insignificant white space, ASCII only, and no
NaN/Infinity. Both ends re-serialise the decoded object, so the signature does
not depend on the key order or spacing of the bytes that crossed the wire.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

SIG_FIELD = "sig"


def canonical_bytes(fields: Mapping[str, Any]) -> bytes:
    """Canonical serialisation of every field except the signature."""
    unsigned = {k: v for k, v in fields.items() if k != SIG_FIELD}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def signature(fields: Mapping[str, Any], key: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of the canonical bytes."""
    return hmac.new(key, canonical_bytes(fields), hashlib.sha256).hexdigest()


def sign(fields: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """Return a copy of ``fields`` with its ``sig`` set."""
    signed = {k: v for k, v in fields.items() if k != SIG_FIELD}
    signed[SIG_FIELD] = signature(signed, key)
    return signed


def signed_bytes(fields: Mapping[str, Any], key: bytes) -> bytes:
    """Wire bytes of ``fields`` signed with ``key``, in the *signed layout*: the canonical bytes with
    ``"sig"`` appended as the last member.

    Any layout verifies (the receiver may re-serialise); this one lets it check
    the HMAC over the received bytes as they are (:mod:`protocol.fastbeat`).
    """
    canonical = canonical_bytes(fields)
    sig = hmac.new(key, canonical, hashlib.sha256).hexdigest()
    return canonical[:-1] + b',"' + SIG_FIELD.encode("ascii") + b'":"' + sig.encode("ascii") + b'"}'


def has_valid_signature(fields: Mapping[str, Any], key: bytes) -> bool:
    """Constant-time check of ``fields['sig']`` against ``key``."""
    claimed = fields.get(SIG_FIELD)
    if not isinstance(claimed, str):
        return False
    try:
        expected = signature(fields, key)
    except (TypeError, ValueError):  # values JSON cannot represent canonically
        return False
    return hmac.compare_digest(expected, claimed)
