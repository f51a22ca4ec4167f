"""Acknowledgement reply codes: which alert a responder's SMS "1" is about (pure).

Every alert SMS ends with "Repondez 1 K42 pour prendre en charge": ``K42`` is
the alert's reply code, a letter and two digits derived from the alert id
(no I or O, which read as 1 and 0). A reply names the alert it acknowledges,
so two open alerts notifying the same phone can no longer be confused (issue
13, finding 4). Codes are not unique over all time — 2,400 of them — only
very likely distinct among the few alerts open for one phone at once; when two
of those do share a code, the reply is refused as ambiguous, never guessed
(:mod:`dispatcher.alerting.smsreplies`).

Accepted forms, case and spaces free: ``1 K42``, ``1K42``, ``1 k 42``,
``1-K42``; a bare ``1`` (or ``1`` followed by words, "1 ok", "1.") carries no
code.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

CODE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # 24 letters: no I, no O
CODE_SPACE = len(CODE_LETTERS) * 100
ACK_DIGIT = "1"

# "1" then a letter and digits: a code, even a mistyped one (K420 never matches, so it acknowledges
# nothing — a typo must not fall back to the bare-"1" rule).
_CODED = re.compile(r"^1\s*[-:.]?\s*([A-Z])\s*(\d(?:\s*\d)*)")
_BARE = re.compile(r"^1(?![0-9A-Z])")


def reply_code(alert_id: str) -> str:
    """The alert's reply code, e.g. ``K42`` (stable: a function of the id only)."""
    n = int.from_bytes(hashlib.sha256(alert_id.encode()).digest()[:4], "big") % CODE_SPACE
    return f"{CODE_LETTERS[n // 100]}{n % 100:02d}"


@dataclass(frozen=True, slots=True)
class Reply:
    """What a responder's SMS says: an acknowledgement or not, and the alert code it names."""

    acknowledges: bool
    code: str | None = None


def parse_reply(body: str) -> Reply:
    """Read an SMS reply: ``1 K42`` → acknowledge K42; ``1`` → acknowledge, no code; else nothing."""
    text = " ".join(body.upper().split())
    if (coded := _CODED.match(text)) is not None:
        letter, digits = coded.groups()
        return Reply(True, letter + digits.replace(" ", ""))
    return Reply(_BARE.match(text) is not None)
