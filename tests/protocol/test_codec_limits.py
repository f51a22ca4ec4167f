"""The decoder's depth limit (issue 13, finding 1): exact, and blind to brackets inside strings."""

from __future__ import annotations

import json

from protocol.codec import MAX_JSON_DEPTH, Rejected, RejectReason, decode_status, nesting_exceeds


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_the_limit_is_exact() -> None:
    assert not nesting_exceeds(nested(MAX_JSON_DEPTH))
    assert nesting_exceeds(nested(MAX_JSON_DEPTH + 1))
    assert nesting_exceeds(b'{"a":' + nested(MAX_JSON_DEPTH) + b"}")


def test_brackets_in_strings_and_escaped_quotes_do_not_count() -> None:
    text = json.dumps({"firmware": '[[[[[[[[[[\\"{{{{{{{{{{', "x": [[1]]}).encode()
    assert not nesting_exceeds(text)


def test_nan_is_not_json() -> None:
    payload = b'{"v":1,"state":"online","device":"d","x":NaN}'
    try:
        decode_status(payload, "d")
    except Rejected as rejected:
        assert rejected.reason is RejectReason.NOT_JSON
    else:
        raise AssertionError("NaN accepted")
