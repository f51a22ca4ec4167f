"""Names as people type them: a practitioner or a site found by words of its name, any case, any accent.

Each record's searchable text is folded once per directory snapshot
(:attr:`dispatcher.directory.snapshot.DirectorySnapshot.practitioners_listed`), not once per
request: a national directory holds 100,000 practitioners.
"""

from __future__ import annotations

import unicodedata

from dispatcher.domain import Device, Practitioner, Site


def fold(text: str) -> str:
    """Lower case without accents, spaces collapsed: "Hélène  FABRE" and "helene fabre" are equal."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def words(query: str) -> tuple[str, ...]:
    """The folded words of what was typed."""
    return tuple(fold(query).split())


def holds(text: str, wanted: tuple[str, ...]) -> bool:
    """Whether the folded ``text`` holds every one of the ``wanted`` words (each as a part of a word)."""
    return all(w in text for w in wanted)


def practitioner_text(p: Practitioner) -> str:
    """What finds her: her names, her id, her RPPS number."""
    return fold(f"{p.first_name} {p.last_name} {p.id} {p.rpps}")


def site_text(s: Site) -> str:
    """What finds a site: its name, its id, its address."""
    return fold(f"{s.name} {s.id} {s.address.label}")


def device_text(d: Device, practitioner: Practitioner | None, site: Site | None) -> str:
    """What finds a device: its id, its label, whose it is and where."""
    whose = f"{practitioner.first_name} {practitioner.last_name}" if practitioner else ""
    return fold(f"{d.id} {d.label} {whose} {site.name if site else ''}")
