"""Commune contours: parsing (all or nothing), the in-memory index, the store and `vigie load-communes`."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dispatcher.directory.communes import (
    CommuneIndex,
    CommuneLoadError,
    load_communes,
    normalise_name,
    parse_communes,
)
from dispatcher.store import open_store
from sandbox.ban_server import BanSandbox
from tests.support.system import COMMUNES

FIXTURE: dict[str, Any] = json.loads(COMMUNES.read_text())
MONTPELLIER_COMEDIE = (43.6086, 3.8800)
GRABELS = (43.6480, 3.7990)
MONTFERRIER = (43.6703, 3.8605)  # 34169: no unit of the sample directory lists it
SEA_OFF_SETE = (43.35, 3.75)


def collection(features: list[dict[str, Any]]) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def fixture_index() -> CommuneIndex:
    return CommuneIndex(parse_communes(COMMUNES.read_bytes(), "communes.geojson"))


# --- the index ------------------------------------------------------------------------------


def test_a_point_resolves_to_its_commune_offline() -> None:
    index = fixture_index()
    assert index.insee_at(*MONTPELLIER_COMEDIE) == "34172"
    assert index.insee_at(*GRABELS) == "34116"
    assert index.insee_at(*MONTFERRIER) == "34169"
    assert index.lookup(*GRABELS) is not None and index.lookup(*GRABELS).nom == "Grabels"  # type: ignore[union-attr]
    assert index.insee_at(*SEA_OFF_SETE) is None
    assert index.insee_at(48.8566, 2.3522) is None  # Paris: not loaded
    assert CommuneIndex().insee_at(*GRABELS) is None


def test_grid_answers_exactly_like_the_contours(tmp_path: Path) -> None:
    """Every cell kind (inside one commune, on a border, empty) agrees with shapely's own test."""
    import random

    import shapely

    records = parse_communes(COMMUNES.read_bytes(), "communes.geojson")
    index = CommuneIndex(records)
    shapes = [(r.code, shapely.from_wkb(r.wkb)) for r in sorted(records, key=lambda r: r.code)]
    rng = random.Random(10)
    for _ in range(3000):
        lat, lon = rng.uniform(43.3, 44.05), rng.uniform(3.5, 4.05)
        expected = next((c for c, g in shapes if shapely.intersects_xy(g, lon, lat)), None)
        assert index.insee_at(lat, lon) == expected, (lat, lon)


def test_a_postal_address_gives_its_commune_offline() -> None:
    index = fixture_index()
    assert index.insee_of_label("12 Rue des Cistes, 34790 Grabels") == "34116"
    assert index.insee_of_label("1 place, 34980 ST GELY DU FESC") == "34255"
    assert index.insee_of_label("4 rue du Lez, 34920 Le Crès, bât. B") == "34090"
    assert index.insee_of_label("Quelque part près de la mairie") is None
    assert index.insee_of_label("5 rue Racine, 30000 Nîmes") is None  # not loaded
    assert normalise_name("Saint-Jean-de-Védas") == normalise_name("ST JEAN DE VEDAS")


# --- bad input: refused with the file, the feature's index and the reason ---------------------


def bad(features: list[dict[str, Any]], departements: tuple[str, ...] = ("34", "30")) -> CommuneLoadError:
    with pytest.raises(CommuneLoadError) as caught:
        parse_communes(collection(features), "bad.geojson", departements)
    return caught.value


def test_malformed_or_partial_files_are_refused() -> None:
    for data, reason in [
        (b'{"type": "FeatureCollection", "features": [', "pas du JSON"),
        (b'{"type": "Feature"}', "pas une FeatureCollection GeoJSON"),
        (b'{"type": "FeatureCollection", "features": []}', "'features' manque ou est vide"),
    ]:
        with pytest.raises(CommuneLoadError, match=reason) as caught:
            parse_communes(data, "bad.geojson")
        assert str(caught.value).startswith("bad.geojson : ") and caught.value.index is None


def test_a_feature_without_a_code_is_refused_with_its_index() -> None:
    features = copy.deepcopy(FIXTURE["features"][:5])
    del features[3]["properties"]["code"]
    error = bad(features)
    assert (error.source, error.index) == ("bad.geojson", 3)
    assert "properties.code doit être un code INSEE de commune, pas None" in str(error)
    assert str(error).endswith("rien n'est chargé")


def test_a_commune_outside_the_loaded_departements_is_refused() -> None:
    features = copy.deepcopy(FIXTURE["features"][5:])
    sumene = next(f for f in FIXTURE["features"] if f["properties"]["code"] == "30325")
    features.insert(2, copy.deepcopy(sumene))
    error = bad(features, departements=("34",))
    assert error.index == 2
    assert "la commune 30325 est hors des départements chargés (34)" in error.reason


@pytest.mark.parametrize(
    ("geometry", "reason"),
    [
        ({"type": "Point", "coordinates": [3.8, 43.6]}, "doit être un Polygon ou un MultiPolygon"),
        ({"type": "Polygon", "coordinates": [[[3.8, 43.6], [3.9, 43.7], [3.9, 43.6], [3.8, 43.7],
                                              [3.8, 43.6]]]}, "contour invalide"),
        ({"type": "Polygon", "coordinates": [[[700000, 6280000], [700100, 6280000], [700100, 6280100],
                                              [700000, 6280000]]]}, "pas des longitude/latitude WGS84"),
    ],
)  # fmt: skip
def test_bad_geometries_are_refused(geometry: dict[str, Any], reason: str) -> None:
    features = copy.deepcopy(FIXTURE["features"][:3])
    features[2]["geometry"] = geometry
    error = bad(features)
    assert error.index == 2 and reason in error.reason


def test_a_commune_twice_is_refused() -> None:
    features = copy.deepcopy(FIXTURE["features"][:3])
    features.append(copy.deepcopy(features[0]))
    assert bad(features).index == 3


# --- the store: one transaction, per département ----------------------------------------------


async def test_loading_replaces_a_departement_in_one_transaction(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'vigie.db'}")
    try:
        v0 = await store.communes_version()
        total = await load_communes(store, [("f", COMMUNES.read_bytes())], ("34", "30"))
        assert total == len(FIXTURE["features"]) == len(await store.list_communes())
        assert await store.communes_version() == v0 + 1

        broken = copy.deepcopy(FIXTURE["features"])
        broken[-1]["properties"]["nom"] = ""
        with pytest.raises(CommuneLoadError):
            await load_communes(store, [("broken", collection(broken))], ("34", "30"))
        assert len(await store.list_communes()) == total  # nothing half-loaded
        assert await store.communes_version() == v0 + 1

        only_gard = [f for f in FIXTURE["features"] if f["properties"]["code"].startswith("30")]
        assert await load_communes(store, [("gard", collection(only_gard))], ("30",)) == total
        index = CommuneIndex(await store.list_communes())
        assert index.insee_at(*GRABELS) == "34116"
    finally:
        await store.close()


# --- vigie load-communes ------------------------------------------------------------------------


def vigie(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from dispatcher.cli import main; main()", *args]
    return subprocess.run(command, env=os.environ | env, capture_output=True, text=True, timeout=60)


async def test_cli_loads_a_file_and_refuses_a_bad_one_with_the_reason(tmp_path: Path) -> None:
    env = {"VIGIE_DATABASE_URL": f"sqlite:///{tmp_path / 'vigie.db'}"}
    both = ("--departement", "34", "--departement", "30")
    ok = await asyncio.to_thread(vigie, "load-communes", str(COMMUNES), *both, "--create", env=env)
    assert ok.returncode == 0, ok.stderr
    assert f"communes : {len(FIXTURE['features'])} enregistrées (départements 30, 34)" in ok.stdout

    bad_file = tmp_path / "bad.geojson"
    features = copy.deepcopy(FIXTURE["features"])
    features[7]["properties"] = {"nom": "Sans code"}
    bad_file.write_bytes(collection(features))
    refused = await asyncio.to_thread(vigie, "load-communes", str(bad_file), *both, env=env)
    assert refused.returncode == 1
    assert f"{bad_file} : entité 7 : properties.code doit être un code INSEE de commune" in refused.stderr


async def test_cli_fetches_a_departement_from_the_geo_api(tmp_path: Path) -> None:
    async with BanSandbox() as geo:
        env = {
            "VIGIE_DATABASE_URL": f"sqlite:///{tmp_path / 'vigie.db'}",
            "VIGIE_GEO_API__BASE_URL": f"http://{geo.base_domain}",
        }
        done = await asyncio.to_thread(vigie, "load-communes", "--fetch", "30", "--create", env=env)
        assert done.returncode == 0, done.stderr
        assert "communes : 2 enregistrées (départements 30)" in done.stdout
        [request] = geo.requests
        assert request.path == "/communes"
        assert request.params == {"codeDepartement": "30", "format": "geojson", "geometry": "contour"}

        geo.fail_next(3, status=503)
        failed = await asyncio.to_thread(vigie, "load-communes", "--fetch", "34", env=env)
        assert failed.returncode == 1 and "l'API géo a répondu HTTP 503" in failed.stderr
