"""GSM 03.38 (GSM-7) awareness for SMS bodies.

A single character outside the GSM-7 alphabet turns the whole SMS into UCS-2,
which cuts a segment from 160 to 70 characters: an alert that fitted in three
segments suddenly needs seven, arrives in pieces and costs more. French text
is full of such characters (’ « » œ ê â ç …), so every body goes through
:func:`to_gsm7` first.
"""

from __future__ import annotations

import unicodedata

# GSM 03.38 default alphabet, in code-point order (0x00-0x7F). ESC (0x1B) is
# not a character of its own: it introduces the extension table below.
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
BASIC_CHARSET = frozenset(_BASIC) - {"\x1b"}
"""Characters encoded as one septet."""

EXTENSION_CHARSET = frozenset("\f^{}\\[~]|€")
"""Characters encoded as ESC + one septet (they count twice)."""
# Every check below is a set operation run in C: an SMS body is checked and
# counted several times while it is fitted (dispatcher/alerting/texts.py), for every
# SMS of every alert, on the event loop.
_GSM7_CHARSET = BASIC_CHARSET | EXTENSION_CHARSET

GSM7_SINGLE_SEGMENT = 160
GSM7_MULTI_SEGMENT = 153  # 7 septets go to the concatenation header
UCS2_SINGLE_SEGMENT = 70
UCS2_MULTI_SEGMENT = 67

# Plain equivalents of characters that would force UCS-2. Lowercase ç is NOT
# in GSM-7 (only Ç is), nor are the circumflexed and diaeresis vowels except
# ä ö ü, nor the uppercase accented vowels except É.
_REPLACEMENTS: dict[str, str] = {
    "’": "'",
    "‘": "'",
    "‚": "'",
    "‛": "'",
    "′": "'",
    "`": "'",
    "´": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "«": '"',
    "»": '"',
    "‹": '"',
    "›": '"',
    "″": '"',
    "–": "-",
    "—": "-",
    "‐": "-",
    "‑": "-",
    "‒": "-",
    "−": "-",
    "…": "...",
    "•": "-",
    "·": ".",
    "œ": "oe",
    "Œ": "OE",
    "ç": "c",
    "â": "a",
    "ê": "e",
    "ë": "e",
    "î": "i",
    "ï": "i",
    "ô": "o",
    "û": "u",
    "ÿ": "y",
    "À": "A",
    "Â": "A",
    "È": "E",
    "Ê": "E",
    "Ë": "E",
    "Î": "I",
    "Ï": "I",
    "Ô": "O",
    "Ù": "U",
    "Û": "U",
    "Ÿ": "Y",
    "°": "o",  # "n°" -> "no", "3°" -> "3o"
    "²": "2",
    "³": "3",
    "\u00a0": " ",  # no-break space (French puts it before : ; ! ?)
    "\u202f": " ",  # narrow no-break space
    "\u2009": " ",  # thin space
    "\u2007": " ",
    "\u2002": " ",
    "\u2003": " ",
    "\t": " ",
    "\u200b": "",  # zero-width space
    "\ufeff": "",
}


def _septets(char: str) -> int:
    return 2 if char in EXTENSION_CHARSET else 1


def is_gsm7(text: str) -> bool:
    """True when ``text`` can be sent in the GSM-7 alphabet (basic or extension)."""
    return _GSM7_CHARSET.issuperset(text)


def _count_segments(units: list[int], single: int, multi: int) -> int:
    """Split into segments without cutting an indivisible unit (escape pair, surrogate pair)."""
    if sum(units) <= single:
        return 1
    count, used = 1, 0
    for size in units:
        if used + size > multi:
            count += 1
            used = 0
        used += size
    return count


def segments(text: str) -> int:
    """Number of SMS segments ``text`` occupies once sent.

    GSM-7: 160 septets in a single SMS, 153 per part when concatenated, an
    extension character taking two septets (never split across parts).
    Otherwise UCS-2: 70 UTF-16 code units, 67 per part, a character outside
    the BMP taking two (never split). An empty body still occupies one SMS.
    """
    if is_gsm7(text):
        if EXTENSION_CHARSET.isdisjoint(text):  # one septet each: nothing indivisible
            return _uniform_segments(len(text), GSM7_SINGLE_SEGMENT, GSM7_MULTI_SEGMENT)
        return _count_segments([_septets(c) for c in text], GSM7_SINGLE_SEGMENT, GSM7_MULTI_SEGMENT)
    if not text or max(text) <= "\uffff":  # no surrogate pair
        return _uniform_segments(len(text), UCS2_SINGLE_SEGMENT, UCS2_MULTI_SEGMENT)
    units = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return _count_segments(units, UCS2_SINGLE_SEGMENT, UCS2_MULTI_SEGMENT)


def _uniform_segments(count: int, single: int, multi: int) -> int:
    """:func:`_count_segments` of ``count`` units of size 1."""
    return 1 if count <= single else -(-count // multi)


def _fallback(char: str) -> str:
    """Strip diacritics (á -> a); '?' when nothing readable is left."""
    stripped = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if stripped and is_gsm7(stripped):
        return stripped
    return "?"


def to_gsm7(text: str) -> str:
    """Rewrite ``text`` so that it fits the GSM-7 alphabet.

    Characters already in GSM-7 are kept (é è ù ì ò à É Ç Ä Ö Ñ Ü stay
    accented); known typographic characters get their plain equivalent;
    others lose their diacritics, and what still cannot be encoded becomes
    ``?`` rather than silently switching the whole message to UCS-2.
    """
    if _GSM7_CHARSET.issuperset(text):
        return text
    out: list[str] = []
    for char in text:
        if char in BASIC_CHARSET or char in EXTENSION_CHARSET:
            out.append(char)
        elif char in _REPLACEMENTS:
            out.append(_REPLACEMENTS[char])
        else:
            out.append(_fallback(char))
    return "".join(out)
