"""What an administrator reads from the directory loader, in French: the one source of truth.

``vigie load-directory`` prints these lines and the admin console's directory
editor shows them (the 422 answer's ``problems[].text``); both come from
:class:`dispatcher.directory.loader.Problem`, whose wording lives here. Pure (no I/O,
``mypy --strict``): file and YAML errors, reference checks, the PIN rules, and
:func:`validation_message`, which says pydantic's English errors in French by
error ``type``, with the constraint from the error's ``ctx``.

Invariant: nothing here quotes a refused value except :func:`with_value`, which
the loader calls only for values that are neither PINs nor hashes.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable, Mapping
from typing import Any

# ---------------------------------------------------------------- the report


def problems_header(source: str, count: int) -> str:
    """First line of a failed load: ``herault.yaml : 2 problèmes :``."""
    return f"{source} : {count} problème{'s' if count > 1 else ''} :"


def problem_line(line: int | None, path: str, message: str) -> str:
    """One problem as the administrator reads it: ``ligne 15, practitioners[0].rpps : …``."""
    where = ", ".join(part for part in (f"ligne {line}" if line else "", path) if part)
    return f"{where or 'fichier'} : {message}"


def with_value(message: str, value: object) -> str:
    """``message`` followed by the value refused (never a PIN or a hash: the caller checks)."""
    return f"{message} (reçu : {value!r})"


# ---------------------------------------------------------------- the file


_OS_REASONS = {
    errno.ENOENT: "fichier introuvable",
    errno.EACCES: "accès refusé (droits du fichier)",
    errno.EPERM: "accès refusé (droits du fichier)",
    errno.EISDIR: "c'est un répertoire, pas un fichier",
    errno.ENOTDIR: "un élément du chemin n'est pas un répertoire",
    errno.ENAMETOOLONG: "chemin trop long",
    errno.ELOOP: "trop de liens symboliques",
}


def cannot_read(exc: OSError) -> str:
    """The file could not be opened or read."""
    reason = _OS_REASONS.get(exc.errno or 0) or f"erreur système {exc.errno} ({exc.strerror or exc})"
    return f"lecture impossible : {reason}"


def not_utf8() -> str:
    """The file is not UTF-8 (the problem's line is the first undecodable one)."""
    return (
        "lecture impossible : le fichier n'est pas en UTF-8 (enregistré en Latin-1 ou Windows-1252 ?) ;"
        " enregistrez-le en UTF-8"
    )


def control_character(code: int) -> str:
    """A character YAML refuses (a control character, often pasted from a word processor)."""
    return f"YAML invalide : caractère de contrôle interdit (#x{code:04x}) ; supprimez-le"


def impossible_date(value: str) -> str:
    """An unquoted YAML date that does not exist, e.g. ``2026-13-45``."""
    return f"YAML invalide : date impossible {value!r}"


_TOKENS = {
    "'<stream end>'": "la fin du fichier",
    "'<block end>'": "la fin du bloc",
    "'<block mapping start>'": "une table",
    "'<block sequence start>'": "une liste",
    "'?'": "une clé",
    "'-'": "un élément de liste",
}


def _token(found: str) -> str:
    return _TOKENS.get(found, found)


_YAML_PROBLEMS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        re.compile(r"mapping values are not allowed here"),
        lambda m: (
            "« : » inattendu ici (clé mal indentée, ou texte contenant « : » à mettre entre guillemets)"
        ),
    ),
    (
        re.compile(r"found character '\\t' that cannot start any token"),
        lambda m: "tabulation interdite : indentez avec des espaces",
    ),
    (
        re.compile(r"found character (.+) that cannot start any token"),
        lambda m: f"le caractère {m[1]} ne peut pas commencer une valeur : mettez-la entre guillemets",
    ),
    (re.compile(r"could not find expected ':'"), lambda m: "« : » attendu après la clé"),
    (
        re.compile(r"found unexpected end of stream"),
        lambda m: "fin du fichier inattendue (guillemet non refermé ?)",
    ),
    (
        re.compile(r"found unknown escape character (.+)"),
        lambda m: f"séquence d'échappement inconnue \\{m[1][1:-1]} entre guillemets doubles",
    ),
    (
        re.compile(r"expected ',' or '([\]}])', but got (.+)"),
        lambda m: f"« , » ou « {m[1]} » attendu, trouvé {_token(m[2])}",
    ),
    (
        re.compile(r"expected <block end>, but found (.+)"),
        lambda m: f"indentation incohérente : {_token(m[1])} ne peut pas commencer à ce niveau",
    ),
    (
        re.compile(r"did not find expected key"),
        lambda m: "clé attendue (indentation incohérente ?)",
    ),
    (
        re.compile(r"did not find expected '-' indicator"),
        lambda m: "« - » attendu (élément de liste mal indenté ?)",
    ),
    (re.compile(r"did not find expected node content"), lambda m: "valeur attendue"),
    (
        re.compile(r"found undefined alias (.+)"),
        lambda m: f"alias {m[1]} non défini (aucune ancre &{m[1][1:-1]})",
    ),
    (re.compile(r"found duplicate anchor (.+?);"), lambda m: f"ancre {m[1]} définie deux fois"),
    (
        re.compile(r"could not determine a constructor for the tag (.+)"),
        lambda m: f"étiquette YAML {m[1]} non prise en charge",
    ),
]


def invalid_yaml(context: str | None, problem: str | None) -> str:
    """A YAML syntax error from PyYAML (``context``/``problem`` of its error), in French.

    Unknown problems keep PyYAML's own words after ``YAML invalide``.
    """
    for text in (problem or "", context or ""):
        for pattern, say in _YAML_PROBLEMS:
            match = pattern.search(text)
            if match:
                return f"YAML invalide : {say(match)}"
    return f"YAML invalide : {problem or context or 'erreur de syntaxe'} (message de PyYAML)"


_KINDS = {
    type(None): "un document vide",
    list: "une liste",
    str: "un texte",
    int: "un nombre",
    float: "un nombre",
    bool: "un booléen",
}


def not_a_mapping(data: object) -> str:
    """The document is not a mapping of sections."""
    found = _KINDS.get(type(data), f"une valeur {type(data).__name__}")
    sections = "practitioners:, sites:, conventions:, visits:"
    return f"le document doit être une table de sections ({sections}) : c'est {found}"


DUPLICATED_KEY = "clé en double (YAML ne garderait que la dernière)"
UNKNOWN_FIELD = "champ inconnu"
DEVICES_NOT_HERE = (
    "les boîtiers (devices) ne se déclarent pas dans l'annuaire : provisionnez-les"
    " (vigie provision), ils portent des clés"
)
QUOTE_IT = "écrivez la valeur entre guillemets dans le fichier YAML"

# ---------------------------------------------------------------- PINs (validators)

ARGON2_ONLY = "doit être un hachage argon2 ; donnez le code en clair dans cancel_pin/duress_pin"
CANCEL_PIN_TWICE = "donnez cancel_pin ou cancel_pin_hash, pas les deux"
DURESS_PIN_TWICE = "donnez duress_pin ou duress_pin_hash, pas les deux"
DURESS_EQUALS_CANCEL = "duress_pin (code de contrainte) doit différer de cancel_pin (code d'annulation)"

# ---------------------------------------------------------------- visits (domain validators)

OFFSETS_MIXED = "starts_at et ends_at doivent tous deux porter un décalage UTC, ou aucun des deux"
ENDS_BEFORE_START = "ends_at doit être postérieur à starts_at"

# ---------------------------------------------------------------- references

_OF_KIND = {
    "practitioner": "de praticien",
    "site": "de site",
    "convention": "de convention",
    "visit": "de visite",
    "unit": "d'unité",
    "contact": "de contact",
}


def duplicate_id(kind: str, ident: str, first_at: str) -> str:
    """An id used twice (``kind``: practitioner, site, convention, visit, unit, contact)."""
    return f"identifiant {_OF_KIND.get(kind, kind)} {ident!r} en double (première occurrence : {first_at})"


def unknown_unit(unit: str, known: list[str]) -> str:
    """A tier target or fallback unit that is not a unit of its convention."""
    return f"unité inconnue {unit!r} (connues : {', '.join(known)})"


def commune_outside(code: str, departement: str) -> str:
    """A commune of a convention (or of its units) outside the convention's département."""
    return f"la commune {code} est hors du département {departement} de la convention"


def unknown_practitioner(practitioner_id: str) -> str:
    """A visit naming a practitioner the file does not declare."""
    return f"praticien inconnu {practitioner_id!r} (absent de la section practitioners)"


def id_taken(kind: str, ident: str, convention_id: str) -> str:
    """A unit or contact id another convention already uses (ids are unique across the directory)."""
    return f"identifiant {_OF_KIND.get(kind, kind)} {ident!r} déjà pris par la convention {convention_id!r}"


NEEDS_OFFSET = "décalage UTC obligatoire, p. ex. 2026-03-14T21:30:00+01:00"

# ---------------------------------------------------------------- one entry edited alone (console)


def one_entry_expected(found: int) -> str:
    """The console's editor holds exactly one entry."""
    return f"exactement une entrée attendue, {found} trouvée(s)"


def id_cannot_change(entry_id: str) -> str:
    """An edited entry keeps its id."""
    return f"l'identifiant ne peut pas changer ({entry_id!r})"


def only_section(section: str) -> str:
    """Another section than the one being edited."""
    return f"seule la section {section!r} est modifiable ici"


# ---------------------------------------------------------------- geocoding

NO_GEOCODER = "pas de coordonnées (point) et aucun géocodeur configuré"

# ---------------------------------------------------------------- pydantic errors

# The formats of dispatcher.domain (and the PINs) in words; a test checks each is a pattern of the file.
PATTERN_HINTS = {
    r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$": "minuscules, chiffres et tirets, p. ex. dr-claire-fabre",
    r"^\+[1-9][0-9]{6,14}$": "numéro international, p. ex. +33639980150",
    r"^(?:[0-9]{2}|2A|2B)[0-9]{3}$": "code INSEE de commune, p. ex. '34172'",
    r"^(?:[0-9]{2,3}|2A|2B)$": "numéro de département, p. ex. '34'",
    r"^[0-9]{11}$": "numéro RPPS à 11 chiffres",
    r"^[0-9]{4,8}$": "code de 4 à 8 chiffres",
}
DATETIME_FORMAT = "date et heure attendues, au format 2026-03-14T21:30:00+01:00"
TIME_FORMAT = "heure attendue, au format HH:MM, p. ex. 19:00"
MAPPING = "table attendue (des lignes « clé: valeur »)"


def _expected(ctx: Mapping[str, Any]) -> str:
    return str(ctx.get("expected")).replace(" or ", " ou ")


def _number(bound: object) -> str:
    """``90`` rather than ``90.0`` for a float field's whole bound."""
    return str(int(bound)) if isinstance(bound, float) and bound.is_integer() else str(bound)


def _pattern(ctx: Mapping[str, Any]) -> str:
    pattern = str(ctx.get("pattern"))
    return PATTERN_HINTS.get(pattern, pattern)


Words = Callable[[Mapping[str, Any]], str]
VALIDATION: dict[str, Words] = {
    "missing": lambda c: "champ obligatoire manquant",
    "extra_forbidden": lambda c: UNKNOWN_FIELD,
    "string_type": lambda c: "texte attendu",
    "string_pattern_mismatch": lambda c: f"format refusé (attendu : {_pattern(c)})",
    "string_too_short": lambda c: f"trop court (au moins {c.get('min_length')} caractères)",
    "string_too_long": lambda c: f"trop long (au plus {c.get('max_length')} caractères)",
    "too_short": lambda c: (
        f"trop peu d'éléments (au moins {c.get('min_length')}, {c.get('actual_length')} donné(s))"
    ),
    "too_long": lambda c: (
        f"trop d'éléments (au plus {c.get('max_length')}, {c.get('actual_length')} donné(s))"
    ),
    "list_type": lambda c: "liste attendue (des lignes « - … »)",
    "tuple_type": lambda c: "liste attendue, p. ex. [3.87, 43.61]",
    "dict_type": lambda c: MAPPING,
    "model_type": lambda c: MAPPING,
    "model_attributes_type": lambda c: MAPPING,
    "int_type": lambda c: "nombre entier attendu",
    "int_parsing": lambda c: "nombre entier attendu",
    "int_from_float": lambda c: "nombre entier attendu (sans décimales)",
    "float_type": lambda c: "nombre attendu",
    "float_parsing": lambda c: "nombre attendu",
    "finite_number": lambda c: "nombre fini attendu",
    "bool_type": lambda c: "booléen attendu (true ou false)",
    "bool_parsing": lambda c: "booléen attendu (true ou false)",
    "greater_than_equal": lambda c: f"doit être supérieur ou égal à {_number(c.get('ge'))}",
    "greater_than": lambda c: f"doit être strictement supérieur à {_number(c.get('gt'))}",
    "less_than_equal": lambda c: f"doit être inférieur ou égal à {_number(c.get('le'))}",
    "less_than": lambda c: f"doit être strictement inférieur à {_number(c.get('lt'))}",
    "enum": lambda c: f"valeur inconnue (possibles : {_expected(c)})",
    "literal_error": lambda c: f"valeur inconnue (possibles : {_expected(c)})",
    "datetime_type": lambda c: DATETIME_FORMAT,
    "datetime_parsing": lambda c: DATETIME_FORMAT,
    "datetime_from_date_parsing": lambda c: DATETIME_FORMAT,
    "time_type": lambda c: TIME_FORMAT,
    "time_parsing": lambda c: TIME_FORMAT,
    "date_type": lambda c: "date attendue, au format 2026-03-14",
    "date_parsing": lambda c: "date attendue, au format 2026-03-14",
    # Our validators (PINs, visit times) speak French already: their text is the message.
    "value_error": lambda c: str(c.get("error", "")),
    "assertion_error": lambda c: str(c.get("error", "")),
}


def validation_message(error: Mapping[str, Any]) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) in French; never quotes its input.

    Types outside :data:`VALIDATION` still say which rule refused the value and its constraint.
    """
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    words = VALIDATION.get(str(error["type"]))
    if words is not None:
        return words(ctx)
    constraints = ", ".join(f"{key} = {value}" for key, value in ctx.items() if key != "error")
    detail = constraints or str(ctx.get("error") or "")
    return f"valeur refusée (règle « {error['type']} »{' : ' + detail if detail else ''})"
