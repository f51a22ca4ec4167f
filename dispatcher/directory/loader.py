"""The directory file: practitioners, sites, SSJ conventions and home visits in YAML.

:func:`read_directory` parses and validates a file into domain objects (PINs
given in clear are hashed with argon2 and forgotten); :func:`load_directory`
also geocodes the addresses that have no point yet and upserts everything into
a :class:`~dispatcher.store.base.DirectoryStore`. The format is documented in
``docs/directory.md``. Devices are not in this file: they come from
provisioning, with their keys.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dispatcher.directory import texts as say
from dispatcher.directory.geocoding import AddressGeocoder, GeocodingError
from dispatcher.domain import Address, Convention, HomeVisit, Practitioner, Site
from dispatcher.store.base import DirectoryStore

COMPETENT = "competent"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
PIN_PATTERN = r"^[0-9]{4,8}$"
GEOCODING_CONCURRENCY = 4  # stays far below the BAN's 50 requests/s per IP

Loc = tuple[str | int, ...]


# ---------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a directory file, at ``path`` (e.g. ``sites[1].address.label``).

    ``message`` is in French (:mod:`dispatcher.directory.texts`); ``str()`` is the
    line the administrator reads, e.g. ``ligne 15, practitioners[0].rpps : …``.
    """

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return say.problem_line(self.line, self.path, self.message)


class DirectoryError(Exception):
    """A directory file is invalid (or could not be completed); names the file and every problem."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{say.problems_header(source, len(self.problems))}\n{lines}")


def format_path(loc: Iterable[str | int]) -> str:
    """``('conventions', 0, 'units', 2)`` → ``conventions[0].units[2]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------- PINs


def hash_pin(pin: str) -> str:
    """argon2id hash of a PIN (the clear PIN is never stored)."""
    return PasswordHasher().hash(pin)


def verify_pin(pin_hash: str, pin: str) -> bool:
    """True when ``pin`` matches ``pin_hash``; False on mismatch or a malformed hash."""
    try:
        return PasswordHasher().verify(pin_hash, pin)
    except (VerificationError, InvalidHashError):
        return False


# ---------------------------------------------------------------- file model


class _ClearPins(BaseModel):
    """Demo PINs in clear (``cancel_pin``/``duress_pin``), or argon2 hashes; hashed on load."""

    cancel_pin: str | None = Field(default=None, pattern=PIN_PATTERN, repr=False)
    duress_pin: str | None = Field(default=None, pattern=PIN_PATTERN, repr=False)

    @field_validator("cancel_pin_hash", "duress_pin_hash", check_fields=False)
    @classmethod
    def _argon2_hash(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("$argon2"):
            raise ValueError(say.ARGON2_ONLY)
        return v

    @model_validator(mode="after")
    def _pins_consistent(self) -> Self:
        hashes = self.model_dump(include={"cancel_pin_hash", "duress_pin_hash"})
        if self.cancel_pin is not None and hashes.get("cancel_pin_hash") is not None:
            raise ValueError(say.CANCEL_PIN_TWICE)
        if self.duress_pin is not None and hashes.get("duress_pin_hash") is not None:
            raise ValueError(say.DURESS_PIN_TWICE)
        if self.cancel_pin is not None and self.cancel_pin == self.duress_pin:
            # The dispatcher could not tell a real cancel from a coerced one.
            raise ValueError(say.DURESS_EQUALS_CANCEL)
        return self

    def _hashed(self) -> dict[str, Any]:
        """The fields of the domain object, clear PINs replaced by their argon2 hashes."""
        data = self.model_dump(exclude={"cancel_pin", "duress_pin"})
        if self.cancel_pin is not None:
            data["cancel_pin_hash"] = hash_pin(self.cancel_pin)
        if self.duress_pin is not None:
            data["duress_pin_hash"] = hash_pin(self.duress_pin)
        return data


class PractitionerEntry(Practitioner, _ClearPins):
    """A practitioner as written in the file: may carry demo PINs in clear, hashed on load."""

    def to_practitioner(self) -> Practitioner:
        """The domain object, with clear PINs replaced by their argon2 hashes."""
        return Practitioner.model_validate(self._hashed())


class SiteEntry(Site, _ClearPins):
    """A site as written in the file: the staff PINs that cancel its desk buttons' alerts."""

    def to_site(self) -> Site:
        """The domain object, with clear PINs replaced by their argon2 hashes."""
        return Site.model_validate(self._hashed())


class DirectoryFile(BaseModel):
    """The whole YAML document; fields are lists of domain objects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    practitioners: list[PractitionerEntry] = Field(default_factory=list)
    sites: list[SiteEntry] = Field(default_factory=list)
    conventions: list[Convention] = Field(default_factory=list)
    visits: list[HomeVisit] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Directory:
    """Validated directory content, ready for the store (PINs hashed)."""

    practitioners: list[Practitioner]
    sites: list[Site]
    conventions: list[Convention]
    visits: list[HomeVisit]
    # Source line of each address label (by address path): geocoding problems name it.
    label_lines: dict[str, int] = field(default_factory=dict)

    def addresses(self) -> Iterator[tuple[str, Address]]:
        """Every address with its path in the file."""
        for i, site in enumerate(self.sites):
            yield f"sites[{i}].address", site.address
        for i, visit in enumerate(self.visits):
            yield f"visits[{i}].address", visit.address

    def with_addresses(self, replaced: dict[str, Address]) -> Directory:
        """A copy where the addresses at the given paths are replaced."""
        sites = [
            s.model_copy(update={"address": replaced.get(f"sites[{i}].address", s.address)})
            for i, s in enumerate(self.sites)
        ]
        visits = [
            v.model_copy(update={"address": replaced.get(f"visits[{i}].address", v.address)})
            for i, v in enumerate(self.visits)
        ]
        return Directory(self.practitioners, sites, self.conventions, visits, self.label_lines)


# ---------------------------------------------------------------- parsing


def read_directory(path: Path) -> Directory:
    """Read and validate a directory file; raises :class:`DirectoryError`.

    Blocking (file I/O and argon2): call it in a thread from async code.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DirectoryError(str(path), [Problem("", say.cannot_read(exc))]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DirectoryError(str(path), [Problem("", say.not_utf8(), line)]) from None
    return parse_directory(text, source=str(path))


def parse_directory(text: str, source: str = "<directory>") -> Directory:
    """Parse and validate directory YAML ``text``; ``source`` names it in errors."""
    root = _compose(text, source)
    lines = _LineIndex(root)
    if lines.duplicates:
        raise DirectoryError(source, lines.duplicates)
    data = _construct(text, source)
    if not isinstance(data, dict):
        raise DirectoryError(source, [Problem("", say.not_a_mapping(data))])
    try:
        model = DirectoryFile.model_validate(data)
    except ValidationError as exc:
        raise DirectoryError(
            source, _by_line(_problem(e, lines) for e in exc.errors(include_url=False))
        ) from None
    problems = _by_line(p.at_line(lines) for p in _cross_check(model))
    if problems:
        raise DirectoryError(source, problems)
    return Directory(
        practitioners=[p.to_practitioner() for p in model.practitioners],
        sites=[s.to_site() for s in model.sites],
        conventions=list(model.conventions),
        visits=list(model.visits),
        label_lines={
            f"{section}[{i}].address": lines.line((section, i, "address", "label")) or 0
            for section, count in (("sites", len(model.sites)), ("visits", len(model.visits)))
            for i in range(count)
        },
    )


def _by_line(problems: Iterable[Problem]) -> list[Problem]:
    """In the order of the file, as the administrator reads it (pydantic reports in field order)."""
    return sorted(problems, key=lambda p: p.line or 0)


class _Loader(yaml.SafeLoader):
    """SafeLoader minus YAML 1.1 number forms that corrupt directory values silently.

    Sexagesimal numbers would turn ``end: 19:00`` into 1140 (read as seconds,
    00:19); octal would turn PIN ``0123`` into 83; a leading ``+`` would turn
    a phone number into an integer. Those scalars stay strings here.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^-?(?:0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0b[01_]+)$"), list("-0123456789")
)
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


class _ImpossibleDate(yaml.constructor.ConstructorError):
    """An unquoted date that does not exist; its ``problem`` is already French."""


def _timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    """An unquoted date such as ``2026-13-45`` is a YAML error at its line, not a crash."""
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError:
        raise _ImpossibleDate(None, None, say.impossible_date(str(node.value)), node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def _compose(text: str, source: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise DirectoryError(source, [_yaml_problem(exc, text)]) from None


def _construct(text: str, source: str) -> Any:
    """The document's values (composing succeeded; tags and dates can still fail here)."""
    try:
        return yaml.load(text, Loader=_Loader)  # safe: _Loader derives from SafeLoader
    except yaml.YAMLError as exc:
        raise DirectoryError(source, [_yaml_problem(exc, text)]) from None


def _yaml_problem(exc: yaml.YAMLError, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        return Problem("", say.control_character(exc.character), text.count("\n", 0, exc.position) + 1)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        if isinstance(exc, _ImpossibleDate):
            return Problem("", str(exc.problem), line)
        return Problem("", say.invalid_yaml(exc.context, exc.problem), line)
    return Problem("", say.invalid_yaml(None, str(exc)))


class _LineIndex:
    """Maps document paths to source lines, and finds duplicated mapping keys.

    PyYAML silently keeps the last of two identical keys; in a directory that
    would hide a typo such as a second ``phone:`` line, so it is an error.
    """

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[Loc, int] = {}
        self.duplicates: list[Problem] = []
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, loc: Loc) -> None:
        self.lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                if name in seen:
                    line = key.start_mark.line + 1
                    self.duplicates.append(Problem(format_path((*loc, name)), say.DUPLICATED_KEY, line))
                seen.add(name)
                self._walk(value, (*loc, name))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*loc, i))

    def line(self, loc: Loc) -> int | None:
        """Line of the deepest known prefix of ``loc``."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None


def line_of(text: str, loc: Loc) -> int | None:
    """The line of ``text`` (valid YAML) holding ``loc``, or of its deepest known parent."""
    return _LineIndex(yaml.compose(text, Loader=_Loader)).line(loc)


def _problem(err: Any, lines: _LineIndex) -> Problem:
    """A pydantic error as a Problem; never echoes PINs or hashes."""
    loc: Loc = tuple(err["loc"])
    path = format_path(loc)
    message = say.validation_message(err)
    if loc == ("devices",) and err["type"] == "extra_forbidden":
        message = say.DEVICES_NOT_HERE
    elif err["type"] == "string_type" and isinstance(err.get("input"), int | float):
        message += f" : {say.QUOTE_IT}"
    if _echoable(err, loc):
        message = say.with_value(message, err["input"])
    return Problem(path, message, lines.line(loc))


def _echoable(err: Any, loc: Loc) -> bool:
    """Show the offending value, unless it is a secret, long, or irrelevant."""
    if err["type"] == "extra_forbidden" or "input" not in err:
        return False
    if any("pin" in str(part) for part in loc):
        return False
    value = err["input"]
    return isinstance(value, str | int | float) and len(repr(value)) <= 60


# ---------------------------------------------------------------- cross-references


@dataclass(frozen=True, slots=True)
class _Ref:
    loc: Loc
    message: str

    def at_line(self, lines: _LineIndex) -> Problem:
        return Problem(format_path(self.loc), self.message, lines.line(self.loc))


def _cross_check(model: DirectoryFile) -> list[_Ref]:
    refs: list[_Ref] = []
    refs += _unique("practitioner", [(("practitioners", i), p.id) for i, p in enumerate(model.practitioners)])
    refs += _unique("site", [(("sites", i), s.id) for i, s in enumerate(model.sites)])
    refs += _unique("convention", [(("conventions", i), c.id) for i, c in enumerate(model.conventions)])
    refs += _unique("visit", [(("visits", i), v.id) for i, v in enumerate(model.visits)])
    # Unit and contact ids are unique across the file: alert timelines and
    # acknowledgements name them without their convention.
    units = [
        (("conventions", i, "units", j), u.id)
        for i, c in enumerate(model.conventions)
        for j, u in enumerate(c.units)
    ]
    contacts = [
        (("conventions", i, "units", j, "contacts", k), ct.id)
        for i, c in enumerate(model.conventions)
        for j, u in enumerate(c.units)
        for k, ct in enumerate(u.contacts)
    ]
    refs += _unique("unit", units)
    refs += _unique("contact", contacts)
    for i, convention in enumerate(model.conventions):
        refs += _check_convention(("conventions", i), convention)
    refs += _check_visits(model)
    return refs


def _unique(kind: str, items: Sequence[tuple[Loc, str]]) -> list[_Ref]:
    first: dict[str, Loc] = {}
    refs = []
    for loc, ident in items:
        if ident in first:
            refs.append(_Ref((*loc, "id"), say.duplicate_id(kind, ident, format_path(first[ident]))))
        else:
            first[ident] = loc
    return refs


def _check_convention(loc: Loc, convention: Convention) -> list[_Ref]:
    refs = []
    unit_ids = [u.id for u in convention.units]
    for t, tier in enumerate(convention.tiers):
        for g, target in enumerate(tier.targets):
            if target.unit != COMPETENT and target.unit not in unit_ids:
                refs.append(
                    _Ref(
                        (*loc, "tiers", t, "targets", g, "unit"),
                        say.unknown_unit(target.unit, [COMPETENT, *unit_ids]),
                    )
                )
    for f, unit_id in enumerate(convention.fallback_units):
        if unit_id not in unit_ids:
            refs.append(_Ref((*loc, "fallback_units", f), say.unknown_unit(unit_id, unit_ids)))
    dep = convention.departement
    communes = [((*loc, "communes", k), code) for k, code in enumerate(convention.communes)]
    for j, unit in enumerate(convention.units):
        communes += [((*loc, "units", j, "communes", k), code) for k, code in enumerate(unit.communes)]
    for cloc, code in communes:
        if not code.startswith(dep):
            refs.append(_Ref(cloc, say.commune_outside(code, dep)))
    return refs


def _check_visits(model: DirectoryFile) -> list[_Ref]:
    known = {p.id for p in model.practitioners}
    refs = []
    for i, visit in enumerate(model.visits):
        if visit.practitioner_id not in known:
            refs.append(
                _Ref(("visits", i, "practitioner_id"), say.unknown_practitioner(visit.practitioner_id))
            )
        for name in ("starts_at", "ends_at"):
            if getattr(visit, name).tzinfo is None:
                refs.append(_Ref(("visits", i, name), say.NEEDS_OFFSET))
    return refs


# ---------------------------------------------------------------- loading


@dataclass(slots=True)
class LoadReport:
    """What :func:`load_directory` wrote."""

    source: str
    practitioners: int = 0
    sites: int = 0
    conventions: int = 0
    visits: int = 0
    geocoded: list[str] = field(default_factory=list)  # paths of addresses geocoded now
    unlocated: list[str] = field(default_factory=list)  # paths of addresses left without a point

    def __str__(self) -> str:
        counts = (
            f"{self.practitioners} praticien(s), {self.sites} site(s), "
            f"{self.conventions} convention(s), {self.visits} visite(s)"
        )
        lines = [f"{self.source} : chargé {counts} ; {len(self.geocoded)} adresse(s) géocodée(s)"]
        lines += [f"  sans position : {path}" for path in self.unlocated]
        return "\n".join(lines)


async def load_directory(
    path: Path,
    store: DirectoryStore,
    geocoder: AddressGeocoder | None,
    *,
    require_points: bool = True,
) -> LoadReport:
    """Validate ``path``, geocode addresses without a point, then upsert everything.

    Nothing is written unless the whole file is valid and, when
    ``require_points``, every address has a point (from the file or the
    geocoder): a failure raises :class:`DirectoryError` listing every problem
    and leaves the store untouched. With ``require_points=False`` addresses
    that cannot be located are stored without a point and listed in
    :attr:`LoadReport.unlocated`.
    """
    directory = await asyncio.to_thread(read_directory, path)
    directory, report = await _locate(directory, geocoder, str(path), require_points)
    await _write(directory, store)
    report.practitioners = len(directory.practitioners)
    report.sites = len(directory.sites)
    report.conventions = len(directory.conventions)
    report.visits = len(directory.visits)
    return report


async def _locate(
    directory: Directory, geocoder: AddressGeocoder | None, source: str, require_points: bool
) -> tuple[Directory, LoadReport]:
    report = LoadReport(source=source)
    missing = [(p, a) for p, a in directory.addresses() if a.point is None]
    results = await _geocode_all(missing, geocoder)
    problems, replaced = [], {}
    for path, outcome in results.items():
        if isinstance(outcome, Address):
            replaced[path] = outcome
            report.geocoded.append(path)
        else:
            report.unlocated.append(path)
            problems.append(Problem(f"{path}.label", outcome, directory.label_lines.get(path)))
    if problems and require_points:
        raise DirectoryError(source, problems)
    return directory.with_addresses(replaced), report


async def _geocode_all(
    missing: list[tuple[str, Address]], geocoder: AddressGeocoder | None
) -> dict[str, Address | str]:
    """Address or failure reason per path; identical labels are geocoded once."""
    if geocoder is None:
        return {path: say.NO_GEOCODER for path, _ in missing}
    gate = asyncio.Semaphore(GEOCODING_CONCURRENCY)
    by_label: dict[str, asyncio.Task[Address | str]] = {}

    async def one(address: Address) -> Address | str:
        async with gate:
            try:
                return await geocoder.geocode(address)
            except GeocodingError as exc:
                return exc.reason

    for _, address in missing:
        if address.label not in by_label:
            by_label[address.label] = asyncio.create_task(one(address))
    await asyncio.gather(*by_label.values())
    return {path: _same_details(by_label[a.label].result(), a) for path, a in missing}


def _same_details(outcome: Address | str, original: Address) -> Address | str:
    """Reuse a shared geocoding result with this address's own floor/code/details."""
    if isinstance(outcome, str):
        return outcome
    return original.model_copy(update={"point": outcome.point, "insee": outcome.insee})


async def _write(directory: Directory, store: DirectoryStore) -> None:
    # Practitioners first: visits (and devices provisioned later) reference them.
    for practitioner in directory.practitioners:
        await store.upsert_practitioner(practitioner)
    for site in directory.sites:
        await store.upsert_site(site)
    for convention in directory.conventions:
        await store.upsert_convention(convention)
    for visit in directory.visits:
        await store.upsert_visit(visit)
