"""The directory file: format, validation errors, PINs, and loading into a real store."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher.directory.geocoding import AddressGeocoder
from dispatcher.directory.loader import (
    Directory,
    DirectoryError,
    load_directory,
    parse_directory,
    read_directory,
    verify_pin,
)
from dispatcher.domain import Address
from dispatcher.settings import GeocoderSettings
from dispatcher.store.sqlite import SqliteStore
from sandbox.ban_server import BanSandbox, haversine_m

# ARCEP numbers reserved for fiction: +33 6 39 98 xx xx and +33 4 65 71 xx xx.
FICTION = re.compile(r"^\+33(?:639980\d{3}|46571\d{4})$")


def sample_text() -> str:
    return resources.files("dispatcher").joinpath("data/herault.yaml").read_text(encoding="utf-8")


def sample_path() -> Path:
    return Path(str(resources.files("dispatcher").joinpath("data/herault.yaml")))


@functools.cache
def sample_directory() -> Directory:
    """Parsed once per session: argon2 makes every parse cost about a second."""
    return read_directory(sample_path())


def sample_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(sample_text())
    return doc


def problems_of(doc: dict[str, Any] | str) -> DirectoryError:
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    with pytest.raises(DirectoryError) as caught:
        parse_directory(text, source="test.yaml")
    return caught.value


def strip_points(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for entry in [*doc["sites"], *doc.get("visits", [])]:
        entry["address"].pop("point", None)
        entry["address"].pop("insee", None)
    return doc


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "vigie.db")
    try:
        yield s
    finally:
        await s.close()


# ------------------------------------------------------------------ the sample


def test_sample_loads_and_validates() -> None:
    directory = read_directory(sample_path())
    assert len(directory.practitioners) == 3
    assert {s.kind for s in directory.sites} == {"cabinet", "mmg"}
    [convention] = directory.conventions
    assert convention.departement == "34"
    assert {u.kind for u in convention.units} == {"commissariat", "brigade", "police_municipale", "samu"}
    assert {u.zone for u in convention.units} == {"police", "gendarmerie", "any"}
    assert [t.ack_timeout_s for t in convention.tiers] == [120, 120, 120]
    assert convention.tiers[0].targets[0].unit == "competent"
    assert convention.tiers[0].targets[0].max_priority == 1
    assert convention.tiers[-1].targets[0].unit == "samu-34"
    assert convention.repeats == 1
    for _, address in directory.addresses():
        assert address.point is not None and address.insee is not None


def test_sample_units_cover_the_expected_communes() -> None:
    [convention] = sample_directory().conventions
    units = {u.id: u for u in convention.units}
    assert {"34172", "34129", "34057", "34198"} <= set(units["csp-montpellier"].communes)
    assert "34301" in units["csp-sete"].communes
    gendarmerie = {c for u in convention.units if u.zone == "gendarmerie" for c in u.communes}
    assert {"34255", "34116", "34202", "34111"} <= gendarmerie
    police = {c for u in convention.units if u.kind == "commissariat" for c in u.communes}
    assert not police & gendarmerie, "a commune is either in the police or the gendarmerie zone"


def test_every_number_in_the_sample_is_a_fiction_number() -> None:
    text = sample_text()
    # Any international number anywhere in the file, comments included.
    found = re.findall(r"\+\d{7,}", text)
    assert len(found) > 15
    for number in found:
        assert FICTION.match(number), number
    directory = sample_directory()
    phones = [p for pr in directory.practitioners for p in pr.phones]
    phones += [ct.phone for c in directory.conventions for u in c.units for ct in u.contacts]
    assert phones and all(FICTION.match(p) for p in phones)


def test_sample_addresses_agree_with_the_ban_fixture() -> None:
    """The points written in the sample are where the (sandbox) BAN puts them."""
    from sandbox.ban_server import load_fixture, normalise

    entries = {frozenset(normalise(e.label)): e for e in load_fixture()}
    for path, address in sample_directory().addresses():
        entry = entries[frozenset(normalise(address.label))]
        assert address.point is not None, path
        assert entry.citycode == address.insee, path
        assert haversine_m(entry.lat, entry.lon, address.point.lat, address.point.lon) < 5, path


# ------------------------------------------------------------------ PINs


def test_pins_are_hashed_and_verify() -> None:
    directory = sample_directory()
    fabre = next(p for p in directory.practitioners if p.id == "dr-claire-fabre")
    assert fabre.cancel_pin_hash is not None and fabre.cancel_pin_hash.startswith("$argon2id$")
    assert fabre.duress_pin_hash is not None
    assert verify_pin(fabre.cancel_pin_hash, "2468")
    assert verify_pin(fabre.duress_pin_hash, "1357")
    assert not verify_pin(fabre.cancel_pin_hash, "1357")
    assert not verify_pin("not-a-hash", "2468")
    dumped = fabre.model_dump_json()
    assert "2468" not in dumped and "1357" not in dumped
    assert not hasattr(fabre, "cancel_pin")


def test_practitioner_without_pins_has_no_hash() -> None:
    martel = next(p for p in sample_directory().practitioners if p.id == "lucie-martel")
    assert martel.cancel_pin_hash is None and martel.duress_pin_hash is None


def test_bad_pin_is_reported_without_echoing_it() -> None:
    doc = sample_doc()
    doc["practitioners"][0]["cancel_pin"] = "12a45"
    error = problems_of(doc)
    assert [p.path for p in error.problems] == ["practitioners[0].cancel_pin"]
    assert "12a45" not in str(error)


def test_duress_pin_must_differ_from_cancel_pin() -> None:
    doc = sample_doc()
    doc["practitioners"][0]["duress_pin"] = doc["practitioners"][0]["cancel_pin"]
    error = problems_of(doc)
    assert error.problems[0].path == "practitioners[0]"
    assert "duress_pin (code de contrainte) doit différer" in str(error)
    assert "2468" not in str(error)


def test_a_clear_pin_in_the_hash_field_is_refused() -> None:
    doc = sample_doc()
    doc["practitioners"][2]["cancel_pin_hash"] = "4321"
    error = problems_of(doc)
    assert error.problems[0].path == "practitioners[2].cancel_pin_hash"
    assert "4321" not in str(error)


# ------------------------------------------------------------------ malformed files


def test_unknown_field_names_its_path() -> None:
    doc = sample_doc()
    doc["conventions"][0]["units"][0]["contacts"][0]["fax"] = "+33465710199"
    error = problems_of(doc)
    assert [(p.path, p.message) for p in error.problems] == [
        ("conventions[0].units[0].contacts[0].fax", "champ inconnu")
    ]
    assert str(error).startswith("test.yaml : 1 problème :")


def test_bad_phone_names_its_path_and_value() -> None:
    doc = sample_doc()
    doc["conventions"][0]["units"][2]["contacts"][1]["phone"] = "06 39 98 01 04"
    error = problems_of(doc)
    [problem] = error.problems
    assert problem.path == "conventions[0].units[2].contacts[1].phone"
    assert "06 39 98 01 04" in problem.message
    assert problem.line is not None


def test_error_lines_point_into_the_source() -> None:
    text = sample_text().replace('phone: "+33639980105"', 'phone: "0639980105"')
    [problem] = problems_of(text).problems
    assert problem.path == "conventions[0].units[3].contacts[1].phone"
    assert problem.line is not None
    assert "0639980105" in text.splitlines()[problem.line - 1]


def test_unknown_tier_target() -> None:
    doc = sample_doc()
    doc["conventions"][0]["tiers"][1]["targets"][1]["unit"] = "cic-13"
    [problem] = problems_of(doc).problems
    assert problem.path == "conventions[0].tiers[1].targets[1].unit"
    assert "unité inconnue 'cic-13'" in problem.message
    assert "competent" in problem.message and "samu-34" in problem.message


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["sites"].append(copy.deepcopy(d["sites"][0])), "sites[2].id"),
        (lambda d: d["practitioners"].append(copy.deepcopy(d["practitioners"][2])), "practitioners[3].id"),
        (
            lambda d: d["conventions"][0]["units"].append(copy.deepcopy(d["conventions"][0]["units"][1])),
            "conventions[0].units[9].id",
        ),
    ],
)
def test_duplicate_ids(mutate: Any, path: str) -> None:
    doc = sample_doc()
    mutate(doc)
    error = problems_of(doc)
    assert path in [p.path for p in error.problems]
    assert "en double" in str(error) and "première occurrence" in str(error)


def test_duplicate_contact_id_across_units() -> None:
    doc = sample_doc()
    doc["conventions"][0]["units"][1]["contacts"][0]["id"] = "csp-mtp-chef-de-poste"
    [problem] = problems_of(doc).problems
    assert problem.path == "conventions[0].units[1].contacts[0].id"
    assert "conventions[0].units[0].contacts[0]" in problem.message


def test_visit_must_name_a_known_practitioner() -> None:
    doc = sample_doc()
    doc["visits"][0]["practitioner_id"] = "dr-nobody"
    [problem] = problems_of(doc).problems
    assert (problem.path, problem.message) == (
        "visits[0].practitioner_id",
        "praticien inconnu 'dr-nobody' (absent de la section practitioners)",
    )


def test_visit_times_need_an_offset() -> None:
    doc = sample_doc()
    doc["visits"][0]["starts_at"] = "2026-03-14T21:30:00"
    doc["visits"][0]["ends_at"] = "2026-03-14T22:30:00"
    paths = [p.path for p in problems_of(doc).problems]
    assert paths == ["visits[0].starts_at", "visits[0].ends_at"]
    doc["visits"][0]["ends_at"] = "2026-03-14T22:30:00+01:00"
    [problem] = problems_of(doc).problems
    assert problem.path == "visits[0].ends_at"
    assert "décalage UTC" in problem.message


def test_commune_outside_the_departement() -> None:
    doc = sample_doc()
    doc["conventions"][0]["units"][0]["communes"].append("30189")
    [problem] = problems_of(doc).problems
    assert problem.path == "conventions[0].units[0].communes[4]"
    assert "hors du département 34" in problem.message


def test_a_convention_without_fallback_units_is_refused_with_the_field_named() -> None:
    doc = sample_doc()
    del doc["conventions"][0]["fallback_units"]
    [problem] = problems_of(doc).problems
    assert problem.path == "conventions[0].fallback_units"
    assert problem.message == "champ obligatoire manquant"
    doc["conventions"][0]["fallback_units"] = []
    [problem] = problems_of(doc).problems
    assert problem.path == "conventions[0].fallback_units"


def test_fallback_units_must_be_units_of_the_convention() -> None:
    doc = sample_doc()
    doc["conventions"][0]["fallback_units"] = ["cic-34", "corg-13"]
    [problem] = problems_of(doc).problems
    assert problem.path == "conventions[0].fallback_units[1]"
    assert "unité inconnue 'corg-13'" in problem.message


def test_devices_are_not_in_the_directory() -> None:
    doc = sample_doc()
    doc["devices"] = [{"id": "btn-1", "kind": "button"}]
    [problem] = problems_of(doc).problems
    assert problem.path == "devices"
    assert "provisionnez-les" in problem.message


def test_several_problems_are_all_reported() -> None:
    doc = sample_doc()
    doc["practitioners"][0]["rpps"] = "1234"
    doc["sites"][1]["kind"] = "hospital"
    paths = {p.path for p in problems_of(doc).problems}
    assert paths == {"practitioners[0].rpps", "sites[1].kind"}


def test_duplicated_yaml_key_is_an_error() -> None:
    text = sample_text().replace(
        '    rpps: "10001234567"\n', '    rpps: "10001234567"\n    rpps: "10009999999"\n', 1
    )
    [problem] = problems_of(text).problems
    assert problem.path == "practitioners[0].rpps"
    assert problem.message.startswith("clé en double")


def test_yaml_syntax_error_gives_the_line() -> None:
    [problem] = problems_of("practitioners:\n  - id: [oops\n").problems
    assert problem.line is not None
    assert problem.message.startswith("YAML invalide")


def test_empty_or_non_mapping_document() -> None:
    assert "c'est un document vide" in str(problems_of(""))
    assert "c'est une liste" in str(problems_of("- 1\n- 2\n"))


def test_read_directory_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("sites: [{id: x}]\n", encoding="utf-8")
    with pytest.raises(DirectoryError) as caught:
        read_directory(path)
    assert str(caught.value).startswith(f"{path} : ")
    assert caught.value.source == str(path)
    with pytest.raises(DirectoryError, match="lecture impossible : fichier introuvable"):
        read_directory(tmp_path / "missing.yaml")


def test_yaml_pitfalls_are_read_as_written() -> None:
    """Unquoted 19:00, +33... and 0123 stay text instead of YAML 1.1 numbers."""
    text = (
        "practitioners:\n"
        "  - {id: dr-a, first_name: A, last_name: B, rpps: '10001234567',\n"
        "     phones: [+33639980160], cancel_pin: 0123, duress_pin: 0456}\n"
        "conventions:\n"
        "  - id: c\n    name: C\n    departement: '34'\n"
        "    units:\n"
        "      - id: u\n        name: U\n        kind: samu\n        zone: any\n"
        "        contacts:\n"
        "          - {id: k, name: K, phone: +33465710160, hours: [{start: 19:00, end: 07:30}]}\n"
        "    tiers: [{targets: [{unit: u}]}]\n"
        "    fallback_units: [u]\n"
    )
    directory = parse_directory(text)
    contact = directory.conventions[0].units[0].contacts[0]
    assert contact.phone == "+33465710160"
    assert (contact.hours[0].start.hour, contact.hours[0].end.minute) == (19, 30)
    assert directory.practitioners[0].phones == ["+33639980160"]
    hashed = directory.practitioners[0].cancel_pin_hash
    assert hashed is not None and verify_pin(hashed, "0123")


def test_unquoted_number_where_text_is_expected_gets_a_hint() -> None:
    doc = sample_doc()
    doc["sites"][0]["address"]["floor"] = 3
    [problem] = problems_of(doc).problems
    assert problem.path == "sites[0].address.floor"
    assert "entre guillemets" in problem.message


# ------------------------------------------------------------------ loading into the store


async def test_load_sample_into_the_store_without_geocoding(
    store: SqliteStore, geocoder: AddressGeocoder, ban: BanSandbox
) -> None:
    report = await load_directory(sample_path(), store, geocoder)
    assert (report.practitioners, report.sites, report.conventions, report.visits) == (3, 2, 1, 1)
    assert report.geocoded == [] and report.unlocated == []
    assert ban.request_count == 0, "addresses with a point must not be geocoded again"
    expected = sample_directory()
    assert [s.id for s in await store.list_sites()] == sorted(s.id for s in expected.sites)
    assert list(await store.list_conventions()) == expected.conventions
    assert list(await store.list_visits()) == expected.visits
    stored = await store.get_practitioner("dr-karim-benali")
    assert stored.cancel_pin_hash is not None and verify_pin(stored.cancel_pin_hash, "8024")
    assert "8024" not in stored.model_dump_json()


async def test_loading_twice_is_an_upsert(store: SqliteStore) -> None:
    await load_directory(sample_path(), store, None)
    await load_directory(sample_path(), store, None)
    assert len(await store.list_practitioners()) == 3
    assert len(await store.list_conventions()) == 1


async def test_load_geocodes_addresses_without_a_point(
    tmp_path: Path, store: SqliteStore, geocoder: AddressGeocoder, ban: BanSandbox
) -> None:
    path = tmp_path / "dir.yaml"
    path.write_text(yaml.safe_dump(strip_points(sample_doc()), allow_unicode=True), encoding="utf-8")
    report = await load_directory(path, store, geocoder)
    assert sorted(report.geocoded) == ["sites[0].address", "sites[1].address", "visits[0].address"]
    assert ban.request_count == 3
    reference = {s.id: s.address for s in sample_directory().sites}
    for site in await store.list_sites():
        ref = reference[site.id]
        assert site.address.insee == ref.insee
        assert site.address.point == ref.point
        assert site.address.details == ref.details
    [visit] = await store.list_visits()
    assert visit.address.access_code == "4712B" and visit.address.insee == "34172"


async def test_identical_labels_are_geocoded_once(
    tmp_path: Path, store: SqliteStore, geocoder: AddressGeocoder, ban: BanSandbox
) -> None:
    doc = strip_points(sample_doc())
    doc["visits"][0]["address"]["label"] = doc["sites"][0]["address"]["label"]
    path = tmp_path / "dir.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    await load_directory(path, store, geocoder)
    assert ban.request_count == 2
    [visit] = await store.list_visits()
    assert visit.address.floor == "3e étage gauche"  # its own details, the shared point
    assert visit.address.insee == "34172"


async def test_geocoding_failure_leaves_the_store_untouched(
    tmp_path: Path, store: SqliteStore, geocoder: AddressGeocoder
) -> None:
    doc = strip_points(sample_doc())
    doc["sites"][1]["address"]["label"] = "1 chemin qui n'existe pas, 34980 Nulle-part"
    path = tmp_path / "dir.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(DirectoryError) as caught:
        await load_directory(path, store, geocoder)
    [problem] = caught.value.problems
    assert problem.path == "sites[1].address.label"
    assert caught.value.source == str(path)
    assert await store.list_practitioners() == []
    assert await store.list_sites() == []
    assert await store.list_conventions() == []


async def test_invalid_file_leaves_the_store_untouched(tmp_path: Path, store: SqliteStore) -> None:
    doc = sample_doc()
    doc["conventions"][0]["tiers"][0]["targets"][0]["unit"] = "nobody"
    path = tmp_path / "dir.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(DirectoryError):
        await load_directory(path, store, None)
    assert await store.list_practitioners() == []


async def test_without_geocoder_missing_points_fail_unless_allowed(
    tmp_path: Path, store: SqliteStore
) -> None:
    path = tmp_path / "dir.yaml"
    path.write_text(yaml.safe_dump(strip_points(sample_doc()), allow_unicode=True), encoding="utf-8")
    with pytest.raises(DirectoryError, match="aucun géocodeur configuré"):
        await load_directory(path, store, None)
    assert await store.list_sites() == []

    report = await load_directory(path, store, None, require_points=False)
    assert sorted(report.unlocated) == ["sites[0].address", "sites[1].address", "visits[0].address"]
    assert all(s.address.point is None for s in await store.list_sites())


async def test_service_down_fails_the_load_with_a_clear_message(tmp_path: Path, store: SqliteStore) -> None:
    from broker_config.runner import free_port

    settings = GeocoderSettings(domain=f"127.0.0.1:{free_port()}", scheme="http", timeout_s=2)
    path = tmp_path / "dir.yaml"
    path.write_text(yaml.safe_dump(strip_points(sample_doc()), allow_unicode=True), encoding="utf-8")
    async with AddressGeocoder(settings, attempts=1) as geocoder:
        with pytest.raises(DirectoryError, match="a échoué : service injoignable") as caught:
            await load_directory(path, store, geocoder)
    assert len(caught.value.problems) == 3
    assert await store.list_sites() == []


def test_addresses_are_reported_by_path() -> None:
    directory = sample_directory()
    paths = [p for p, _ in directory.addresses()]
    assert paths == ["sites[0].address", "sites[1].address", "visits[0].address"]
    assert all(isinstance(a, Address) for _, a in directory.addresses())
