"""Golden: the exact French lines an administrator reads when a directory file is broken.

Each broken file goes through the real ``vigie load-directory`` (or, for the
geocoding outcomes, :func:`load_directory` with the BAN sandbox, whose error
the command prints as is); the lines name the YAML line, the path and the
problem in French, and never a PIN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel, Field, ValidationError
from typer.testing import CliRunner

from broker_config.runner import free_port
from dispatcher.cli import app
from dispatcher.directory.geocoding import AddressGeocoder
from dispatcher.directory.loader import DirectoryError, DirectoryFile, load_directory
from dispatcher.directory.texts import PATTERN_HINTS, validation_message
from dispatcher.settings import GeocoderSettings
from dispatcher.store.sqlite import SqliteStore
from sandbox.ban_server import BanSandbox

# Every kind of mistake pydantic catches in our models, one file (the lines count).
SCHEMA = """\
practitioners:
  - id: Dr-Fabre
    first_name: Claire
    rpps: "1000123456"
    phones: []
    cancel_pin: "12a4"
    fax: "+33465710199"
  - id: dr-benali
    first_name: Karim
    last_name: Benali
    rpps: 10002345678
    phones: ["06 39 98 01 51"]
    cancel_pin: "2468"
    duress_pin: "2468"
sites:
  - id: cabinet-a
    kind: hopital
    name: Cabinet A
    address:
      label: 1 rue A, 34000 Montpellier
      floor: 3
      point: {lat: 95, lon: 3.8}
conventions:
  - id: ssj-34
    name: SSJ
    departement: "34"
    drills: peut-être
    repeats: 9
    communes: "34172"
    units:
      - id: csp
        name: CSP
        kind: commissariat
        zone: police
        contacts:
          - id: chef
            name: Chef
            phone: "+33465710101"
            priority: urgent
            hours: [{start: "25h", end: "07:30"}]
    tiers:
      - targets: [{unit: competent}]
        ack_timeout_s: 2
    fallback_units: [csp]
visits:
  - id: v1
    practitioner_id: dr-benali
    address: {label: 2 rue B, 34000 Montpellier, point: {lat: 43.6, lon: 3.8}}
    starts_at: lundi soir
    ends_at: 2026-03-14T22:30:00+01:00
devices:
  - id: btn-1
"""
SCHEMA_PROBLEMS = [
    "ligne 2, practitioners[0].id : format refusé (attendu : minuscules, chiffres et tirets,"
    " p. ex. dr-claire-fabre) (reçu : 'Dr-Fabre')",
    "ligne 2, practitioners[0].last_name : champ obligatoire manquant",
    "ligne 4, practitioners[0].rpps : format refusé (attendu : numéro RPPS à 11 chiffres)"
    " (reçu : '1000123456')",
    "ligne 5, practitioners[0].phones : trop peu d'éléments (au moins 1, 0 donné(s))",
    "ligne 6, practitioners[0].cancel_pin : format refusé (attendu : code de 4 à 8 chiffres)",
    "ligne 7, practitioners[0].fax : champ inconnu",
    "ligne 11, practitioners[1].rpps : texte attendu : écrivez la valeur entre guillemets dans le fichier"
    " YAML"
    " (reçu : 10002345678)",
    "ligne 12, practitioners[1].phones[0] : format refusé (attendu : numéro international,"
    " p. ex. +33639980150)"
    " (reçu : '06 39 98 01 51')",
    "ligne 17, sites[0].kind : valeur inconnue (possibles : 'cabinet', 'mmg', 'centre_sante' ou 'other')"
    " (reçu : 'hopital')",
    "ligne 21, sites[0].address.floor : texte attendu : écrivez la valeur entre guillemets dans le"
    " fichier YAML"
    " (reçu : 3)",
    "ligne 22, sites[0].address.point.lat : doit être inférieur ou égal à 90 (reçu : 95)",
    "ligne 27, conventions[0].drills : booléen attendu (true ou false) (reçu : 'peut-être')",
    "ligne 28, conventions[0].repeats : doit être inférieur ou égal à 5 (reçu : 9)",
    "ligne 29, conventions[0].communes : liste attendue (des lignes « - … ») (reçu : '34172')",
    "ligne 39, conventions[0].units[0].contacts[0].priority : nombre entier attendu (reçu : 'urgent')",
    "ligne 40, conventions[0].units[0].contacts[0].hours[0].start : heure attendue, au format HH:MM,"
    " p. ex. 19:00 (reçu : '25h')",
    "ligne 43, conventions[0].tiers[0].ack_timeout_s : doit être supérieur ou égal à 5 (reçu : 2)",
    # An unquoted label with a comma inside a {…} mapping: YAML splits it into two keys.
    "ligne 48, visits[0].address.34000 Montpellier : champ inconnu",
    "ligne 49, visits[0].starts_at : date et heure attendues, au format 2026-03-14T21:30:00+01:00"
    " (reçu : 'lundi soir')",
    "ligne 52, devices : les boîtiers (devices) ne se déclarent pas dans l'annuaire : provisionnez-les"
    " (vigie provision), ils portent des clés",
]

# Valid field by field; wrong in how entries refer to each other.
REFERENCES = """\
practitioners:
  - {id: dr-a, first_name: A, last_name: A, rpps: "10001234567", phones: ["+33639980150"]}
  - {id: dr-a, first_name: B, last_name: B, rpps: "10001234568", phones: ["+33639980151"]}
conventions:
  - id: ssj-34
    name: SSJ
    departement: "34"
    units:
      - id: csp
        name: CSP
        kind: commissariat
        zone: police
        communes: ["34172", "30189"]
        contacts: [{id: chef, name: Chef, phone: "+33465710101"}]
    tiers:
      - targets: [{unit: competent}, {unit: cic-13}]
    fallback_units: [csp, corg-13]
visits:
  - id: v1
    practitioner_id: dr-nobody
    address: {label: "2 rue B, 34000 Montpellier", point: {lat: 43.6, lon: 3.8}}
    starts_at: "2026-03-14T21:30:00"
    ends_at: "2026-03-14T22:30:00"
"""
REFERENCE_PROBLEMS = [
    "ligne 3, practitioners[1].id : identifiant de praticien 'dr-a' en double"
    " (première occurrence : practitioners[0])",
    "ligne 13, conventions[0].units[0].communes[1] : la commune 30189 est hors du département 34"
    " de la convention",
    "ligne 16, conventions[0].tiers[0].targets[1].unit : unité inconnue 'cic-13' (connues : competent, csp)",
    "ligne 17, conventions[0].fallback_units[1] : unité inconnue 'corg-13' (connues : csp)",
    "ligne 20, visits[0].practitioner_id : praticien inconnu 'dr-nobody'"
    " (absent de la section practitioners)",
    "ligne 22, visits[0].starts_at : décalage UTC obligatoire, p. ex. 2026-03-14T21:30:00+01:00",
    "ligne 23, visits[0].ends_at : décalage UTC obligatoire, p. ex. 2026-03-14T21:30:00+01:00",
]

PINS = """\
practitioners:
  - id: dr-a
    first_name: A
    last_name: A
    rpps: "10001234567"
    phones: ["+33639980150"]
    cancel_pin: "2468"
    duress_pin: "2468"
  - id: dr-b
    first_name: B
    last_name: B
    rpps: "10001234568"
    phones: ["+33639980151"]
    cancel_pin: "1357"
    cancel_pin_hash: "9753"
"""
PIN_PROBLEMS = [
    "ligne 2, practitioners[0] : duress_pin (code de contrainte) doit différer de cancel_pin"
    " (code d'annulation)",
    "ligne 15, practitioners[1].cancel_pin_hash : doit être un hachage argon2 ;"
    " donnez le code en clair dans cancel_pin/duress_pin",
]

# Files that are not a directory document at all: one problem each.
FILE_CASES = [
    (
        "practitioners:\n\t- id: dr-a\n",
        "ligne 2 : YAML invalide : tabulation interdite : indentez avec des espaces",
    ),
    (
        'practitioners:\n  - id: dr-a\n    rpps: "10001234567"\n    rpps: "10009999999"\n',
        "ligne 4, practitioners[0].rpps : clé en double (YAML ne garderait que la dernière)",
    ),
    (
        "- dr-a\n- dr-b\n",
        "fichier : le document doit être une table de sections"
        " (practitioners:, sites:, conventions:, visits:) : c'est une liste",
    ),
    (
        "",
        "fichier : le document doit être une table de sections"
        " (practitioners:, sites:, conventions:, visits:) : c'est un document vide",
    ),
    (
        "visits:\n  - id: v1\n    starts_at: 2026-13-45\n",
        "ligne 3 : YAML invalide : date impossible '2026-13-45'",
    ),
    (
        "practitioners: !!python/object:os.system x\n",
        "ligne 1 : YAML invalide : étiquette YAML 'tag:yaml.org,2002:python/object:os.system'"
        " non prise en charge",
    ),
    (
        "practitioners:\n  - id: dr-a\n    name: Dr A: généraliste\n",
        "ligne 3 : YAML invalide : « : » inattendu ici"
        " (clé mal indentée, ou texte contenant « : » à mettre entre guillemets)",
    ),
    (
        'practitioners:\n  - phones: ["+33639980150"\n',
        "ligne 3 : YAML invalide : « , » ou « ] » attendu, trouvé la fin du fichier",
    ),
    (
        "practitioners:\n  - id: dr-a\n    b: 1\n   c: 2\n",
        "ligne 4 : YAML invalide : indentation incohérente : une table ne peut pas commencer à ce niveau",
    ),
    ("sites: [*cabinet]\n", "ligne 1 : YAML invalide : alias 'cabinet' non défini (aucune ancre &cabinet)"),
    (
        "practitioners: []\n\x07",
        "ligne 2 : YAML invalide : caractère de contrôle interdit (#x0007) ; supprimez-le",
    ),
]


def load_command(tmp_path: Path, content: str | bytes | None) -> tuple[int, str, str]:
    """``vigie load-directory`` on a file holding ``content`` (None: no file); (exit code, file, stderr)."""
    path = tmp_path / "annuaire.yaml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif content is not None:
        path.write_bytes(content)
    db = tmp_path / "vigie.db"
    env = {"VIGIE_DATABASE_URL": f"sqlite:///{db}"}
    result = CliRunner().invoke(app, ["load-directory", str(path), "--no-geocode", "--create"], env=env)
    assert result.stdout == ""  # no report: nothing was loaded
    return result.exit_code, str(path), result.stderr.removeprefix(f"création de la base SQLite {db}\n")


def report(path: str, problems: list[str]) -> str:
    count = len(problems)
    lines = "".join(f"  - {p}\n" for p in problems)
    return f"{path} : {count} problème{'s' if count > 1 else ''} :\n{lines}"


@pytest.mark.parametrize(
    ("text", "problems"),
    [(SCHEMA, SCHEMA_PROBLEMS), (REFERENCES, REFERENCE_PROBLEMS), (PINS, PIN_PROBLEMS)],
    ids=["schema", "references", "pins"],
)
def test_a_broken_directory_is_reported_line_by_line_in_french(
    tmp_path: Path, text: str, problems: list[str]
) -> None:
    code, path, stderr = load_command(tmp_path, text)
    assert code == 1
    assert stderr == report(path, problems)
    for pin in ("12a4", "2468", "1357", "9753"):
        assert pin not in stderr, "a PIN or a hash is never echoed"


@pytest.mark.parametrize(("text", "problem"), FILE_CASES)
def test_a_file_that_is_no_directory_document_says_why(tmp_path: Path, text: str, problem: str) -> None:
    code, path, stderr = load_command(tmp_path, text)
    assert (code, stderr) == (1, report(path, [problem]))


def test_unreadable_files(tmp_path: Path) -> None:
    code, path, stderr = load_command(tmp_path, None)
    assert (code, stderr) == (1, report(path, ["fichier : lecture impossible : fichier introuvable"]))
    latin1 = "practitioners:\n  - id: dr-a\n    last_name: Bérenger\n".encode("latin-1")
    code, path, stderr = load_command(tmp_path, latin1)
    expected = (
        "ligne 3 : lecture impossible : le fichier n'est pas en UTF-8"
        " (enregistré en Latin-1 ou Windows-1252 ?) ;"
        " enregistrez-le en UTF-8"
    )
    assert (code, stderr) == (1, report(path, [expected]))


GEOCODED = """\
sites:
  - id: cabinet-a
    kind: cabinet
    name: Cabinet A
    address:
      label: 45 Rue du Faubourg Boutonnet, 34090 Montpellier
  - id: cabinet-b
    kind: cabinet
    name: Cabinet B
    address:
      label: 1 chemin qui n'existe pas, 34980 Nulle-part
  - id: cabinet-c
    kind: cabinet
    name: Cabinet C
    address: {label: Lattes}
  - id: cabinet-d
    kind: cabinet
    name: Cabinet D
    address: {label: "14 rue de la Loge Montpellier"}
  - id: cabinet-e
    kind: cabinet
    name: Cabinet E
    address: {label: "B3"}
"""
TOO_SHORT = (
    "ligne 23, sites[4].address.label : adresse trop courte pour être cherchée (3 caractères au moins)"
)


async def geocoding_report(tmp_path: Path, geocoder: AddressGeocoder | None) -> str:
    path = tmp_path / "annuaire.yaml"
    path.write_text(GEOCODED, encoding="utf-8")
    store = await SqliteStore.open(tmp_path / "vigie.db")
    try:
        with pytest.raises(DirectoryError) as caught:
            await load_directory(path, store, geocoder)
        assert await store.list_sites() == []
    finally:
        await store.close()
    return str(caught.value) + "\n"


async def test_addresses_the_geocoder_cannot_place_are_reported_in_french(
    tmp_path: Path, geocoder: AddressGeocoder
) -> None:
    assert await geocoding_report(tmp_path, geocoder) == report(
        str(tmp_path / "annuaire.yaml"),
        [
            "ligne 11, sites[1].address.label : aucune correspondance dans la Base Adresse Nationale",
            "ligne 15, sites[2].address.label : correspondance seulement au niveau de la commune ('Lattes') :"
            " trop vague pour une patrouille",
            "ligne 19, sites[3].address.label : meilleure correspondance 'Rue de la Loge 34000 Montpellier'"
            " trop incertaine (score 0.30)",
            TOO_SHORT,
        ],
    )


async def test_without_a_geocoder_every_address_without_a_point_is_named(tmp_path: Path) -> None:
    no_geocoder = "pas de coordonnées (point) et aucun géocodeur configuré"
    lines = [6, 11, 15, 19, 23]
    assert await geocoding_report(tmp_path, None) == report(
        str(tmp_path / "annuaire.yaml"),
        [f"ligne {line}, sites[{i}].address.label : {no_geocoder}" for i, line in enumerate(lines)],
    )


async def test_a_failing_geocoding_service_is_reported_in_french(tmp_path: Path, ban: BanSandbox) -> None:
    ban.fail_next(100, status=503)
    settings = GeocoderSettings(domain=ban.base_domain, scheme="http", timeout_s=5)
    async with AddressGeocoder(settings, attempts=1) as geocoder:
        text = await geocoding_report(tmp_path, geocoder)
    failed = f"le géocodeur http://{ban.base_domain}/search a échoué : service en panne (HTTP 503)"
    assert text == report(
        str(tmp_path / "annuaire.yaml"),
        [f"ligne {line}, sites[{i}].address.label : {failed}" for i, line in enumerate([6, 11, 15, 19])]
        + [TOO_SHORT],
    )


async def test_an_unreachable_geocoding_service_is_reported_in_french(tmp_path: Path) -> None:
    port = free_port()
    settings = GeocoderSettings(domain=f"127.0.0.1:{port}", scheme="http", timeout_s=2)
    async with AddressGeocoder(settings, attempts=1) as geocoder:
        lines = (await geocoding_report(tmp_path, geocoder)).splitlines()
    assert lines[1].startswith(
        f"  - ligne 6, sites[0].address.label : le géocodeur http://127.0.0.1:{port}/search a échoué :"
        " service injoignable ("
    )


# ------------------------------------------------------------------ the pydantic table


def test_every_format_hint_is_a_format_of_the_directory_file() -> None:
    """A hint whose pattern no longer exists would silently give way to the bare regex."""
    schema = str(DirectoryFile.model_json_schema())
    for pattern in PATTERN_HINTS:
        assert repr(pattern)[1:-1] in schema, pattern


def test_an_error_type_without_french_words_still_names_its_rule_and_constraint() -> None:
    class Odd(BaseModel):
        step: Annotated[int, Field(multiple_of=5)]
        ratio: Annotated[float, Field(allow_inf_nan=False)]

    with pytest.raises(ValidationError) as caught:
        Odd.model_validate({"step": 7, "ratio": float("inf")})
    assert [validation_message(e) for e in caught.value.errors()] == [
        "valeur refusée (règle « multiple_of » : multiple_of = 5)",
        "nombre fini attendu",
    ]
