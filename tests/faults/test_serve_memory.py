"""``vigie serve`` keeps what it loads at start out of the garbage collector's full passes.

A full collection walks every tracked object with the event loop stopped, and
alerts wait meanwhile. The web side (routes, dependency graphs, pydantic
schemas: ~50,000 objects) used to be built after the freeze, adding ~15 ms to
every full pass for the process's whole life (docs/performance.md, sixteenth
round). Read from the line the real process logs once started.
"""

from __future__ import annotations

import re

import pytest

from tests.faults.conftest import MakeCluster
from tests.faults.harness import wait_until

pytestmark = pytest.mark.timeout(120)
FROZEN = re.compile(
    r"mémoire : (\d+) objets du démarrage gelés"
    r" \(hors des passes complètes du ramasse-miettes\), (\d+) suivis"
)


def test_once_started_the_full_collections_walk_almost_nothing_of_what_it_loaded(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(devices=2)
    log = cluster.workdir / "dispatcher.log"
    assert wait_until(lambda: FROZEN.search(log.read_text(encoding="utf-8")) is not None, 30), log.read_text()
    match = FROZEN.search(log.read_text(encoding="utf-8"))
    assert match is not None
    frozen, walked = int(match[1]), int(match[2])
    assert frozen > 50_000  # the directory, the health records and the web side's objects
    assert walked < 2_000, f"{walked} objects from the start still walked by every full collection"
