"""One directory entry (a practitioner, a site or a convention) written and read alone as YAML.

The admin screens edit an entry as the directory file's own text: a document
holding that one entry under its section (``conventions:`` …). It is checked
by :func:`dispatcher.directory.loader.parse_directory` — the loader's rules, its
messages and its line numbers, which are the lines of the text being edited —
and then against the rest of the directory (unit and contact ids are unique
across all conventions). Nothing here writes: the caller saves only what
:func:`parse_entry` returned, so an entry with a problem saves nothing.
PINs are never written out; clear PINs in the text are hashed by the loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml

from dispatcher.directory import texts as say
from dispatcher.directory.loader import Directory, DirectoryError, Loc, Problem, line_of, parse_directory
from dispatcher.domain import Convention, Practitioner, Site

Section = Literal["practitioners", "sites", "conventions"]
Entry = Practitioner | Site | Convention
_HIDDEN = {"cancel_pin_hash", "duress_pin_hash", "display_name"}


def entry_yaml(section: Section, entry: Entry) -> str:
    """The entry as a directory document of its own, without PIN hashes."""
    data = entry.model_dump(mode="json", exclude=_HIDDEN, exclude_none=True)
    return yaml.safe_dump({section: [data]}, allow_unicode=True, sort_keys=False, width=100)


@dataclass(frozen=True, slots=True)
class Others:
    """The rest of the directory an entry is checked against (the entry's own id excluded)."""

    conventions: tuple[Convention, ...] = ()


def parse_entry(section: Section, text: str, entry_id: str | None, others: Others) -> Entry:
    """The one entry of ``section`` in ``text``; raises :class:`DirectoryError` with line-precise problems.

    ``entry_id``: the entry being edited (its id may not change), None for a new one.
    Blocking (argon2 for clear PINs): call it in a thread from async code.
    """
    source = f"{section}/{entry_id or 'nouveau'}"
    directory = parse_directory(text, source=source)
    entries = _only_section(directory, section, source)
    if len(entries) != 1:
        raise DirectoryError(source, [Problem(section, say.one_entry_expected(len(entries)))])
    entry = entries[0]
    problems: list[Problem] = []
    if entry_id is not None and entry.id != entry_id:
        loc: Loc = (section, 0, "id")
        problems.append(Problem(f"{section}[0].id", say.id_cannot_change(entry_id), line_of(text, loc)))
    if isinstance(entry, Convention):
        problems += _clashes(text, entry, others.conventions)
    if problems:
        raise DirectoryError(source, problems)
    return entry


def _only_section(directory: Directory, section: Section, source: str) -> list[Any]:
    present = {name: getattr(directory, name) for name in ("practitioners", "sites", "conventions", "visits")}
    extra = [name for name, items in present.items() if items and name != section]
    if extra:
        raise DirectoryError(source, [Problem(name, say.only_section(section)) for name in extra])
    entries: list[Any] = present[section]
    return entries


def _clashes(text: str, convention: Convention, others: tuple[Convention, ...]) -> list[Problem]:
    """Unit and contact ids already used by another convention (the loader's file-wide rule)."""
    taken_units = {u.id: c.id for c in others if c.id != convention.id for u in c.units}
    taken_contacts = {
        ct.id: c.id for c in others if c.id != convention.id for u in c.units for ct in u.contacts
    }
    problems = []
    for j, unit in enumerate(convention.units):
        if unit.id in taken_units:
            loc: Loc = ("conventions", 0, "units", j, "id")
            problems.append(
                Problem(
                    f"conventions[0].units[{j}].id",
                    say.id_taken("unit", unit.id, taken_units[unit.id]),
                    line_of(text, loc),
                )
            )
        for k, contact in enumerate(unit.contacts):
            if contact.id in taken_contacts:
                loc = ("conventions", 0, "units", j, "contacts", k, "id")
                problems.append(
                    Problem(
                        f"conventions[0].units[{j}].contacts[{k}].id",
                        say.id_taken("contact", contact.id, taken_contacts[contact.id]),
                        line_of(text, loc),
                    )
                )
    return problems
