"""GSM 03.38 alphabet, segment counting and UCS-2 avoidance."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.alerting.gsm7 import BASIC_CHARSET, EXTENSION_CHARSET, is_gsm7, segments, to_gsm7


def test_alphabet_sizes_match_gsm_03_38() -> None:
    # 128 code points minus ESC; 10 extension characters (FF ^ { } \ [ ~ ] | €).
    assert len(BASIC_CHARSET) == 127
    assert len(EXTENSION_CHARSET) == 10


@pytest.mark.parametrize("char", list("éèùìòàÉÇÄÖÑÜäöñüßÆæØøÅå@£$¥§¿¡ΔΦΓΛΩΠΨΣΘΞ"))
def test_accented_letters_in_the_basic_table(char: str) -> None:
    assert is_gsm7(char)
    assert to_gsm7(char) == char


@pytest.mark.parametrize("char", list("çêâîôûëïœÈÀÊÔÎ’«»–…"))
def test_french_characters_that_force_ucs2(char: str) -> None:
    assert not is_gsm7(char)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("l’étage", "l'étage"),
        ("«\u00a0code\u00a0»", '" code "'),
        ("“porte”", '"porte"'),
        ("12–14 — bis", "12-14 - bis"),
        ("attendez…", "attendez..."),
        ("sœur Œuvre", "soeur OEuvre"),
        ("garçon FRANÇAIS", "garcon FRANÇAIS"),
        ("fenêtre âge île côte dûment", "fenetre age ile cote dument"),
        ("Noël naïf", "Noel naif"),
        ("Ève À Ô", "Eve A O"),
        ("n°\u202f12", "no 12"),
        ("café à Nîmes", "café à Nimes"),
        ("São Paulo", "Sao Paulo"),
        ("emoji 🚨", "emoji ?"),
    ],
)
def test_to_gsm7_golden(text: str, expected: str) -> None:
    out = to_gsm7(text)
    assert out == expected
    assert is_gsm7(out)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("a" * 459, 3),
        ("a" * 460, 4),
        ("€" * 80, 1),  # 160 septets
        ("€" * 81, 2),
        # 152 plain + one escape pair cannot straddle the 153-septet boundary
        ("a" * 152 + "€" + "a" * 10, 2),
        ("a" * 152 + "€" + "a" * 152, 3),
        ("ê" * 70, 1),
        ("ê" * 71, 2),
        ("ê" * 134, 2),
        ("ê" * 135, 3),
        ("é" * 160, 1),  # é is GSM-7
        ("🚨" * 35, 1),  # 70 UTF-16 units
        ("🚨" * 36, 2),
    ],
)
def test_segments_golden(text: str, count: int) -> None:
    assert segments(text) == count


def test_one_apostrophe_makes_the_difference() -> None:
    text = "Dr Marie Dupont, l’adresse: " + "x" * 120
    assert segments(text) == 3  # UCS-2, 148 chars
    assert segments(to_gsm7(text)) == 1


# Texts mixing the cases the counting shortcuts tell apart: plain GSM-7, escape
# pairs, UCS-2 and characters outside the BMP, at lengths around the boundaries.
_MIXED = st.text(alphabet=st.sampled_from("aé€^ê’🚨 \n"), max_size=500)


def _reference_segments(text: str) -> int:
    """Segments counted unit by unit, as GSM 03.38 / UTF-16 define them."""
    if all(c in BASIC_CHARSET or c in EXTENSION_CHARSET for c in text):
        units, single, multi = [2 if c in EXTENSION_CHARSET else 1 for c in text], 160, 153
    else:
        units, single, multi = [2 if ord(c) > 0xFFFF else 1 for c in text], 70, 67
    if sum(units) <= single:
        return 1
    count, used = 1, 0
    for size in units:
        if used + size > multi:
            count, used = count + 1, 0
        used += size
    return count


@given(_MIXED)
def test_segments_agree_with_unit_by_unit_counting(text: str) -> None:
    assert segments(text) == _reference_segments(text)


@given(_MIXED)
def test_to_gsm7_leaves_gsm7_text_as_it_is_and_always_yields_gsm7(text: str) -> None:
    rewritten = to_gsm7(text)
    assert is_gsm7(rewritten)
    assert (rewritten == text) == all(c in BASIC_CHARSET or c in EXTENSION_CHARSET for c in text)
