"""Fixtures of the fault suite: whole clusters of real processes (``bench.cluster``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.cluster import HERAULT, Cluster, DeviceSpec

MakeCluster = Callable[..., Cluster]


def provider_log(cluster: Cluster) -> Path:
    """The sandbox's JSONL record of every API request (it survives sandbox restarts)."""
    return cluster.workdir / "provider-requests.jsonl"


@pytest.fixture
def fast_directory(tmp_path: Path) -> Path:
    """The Hérault directory with the shortest acknowledgement timeout the format allows."""
    path = tmp_path / "herault-fast.yaml"
    path.write_text(HERAULT.read_text().replace("ack_timeout_s: 120", "ack_timeout_s: 5"))
    return path


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    """Start broker + sandbox + ``vigie serve`` (each its own process); stopped at teardown."""
    started: list[Cluster] = []

    def make(
        *,
        devices: int = 10,
        directory: Path = HERAULT,
        known_keys: dict[str, bytes] | None = None,
        db_path: Path | None = None,
    ) -> Cluster:
        workdir = tmp_path / f"cluster-{len(started)}"
        cluster = Cluster(
            workdir,
            [DeviceSpec("dev", devices)],
            sandbox_args=["--log", str(workdir / "provider-requests.jsonl")],
            directory=directory,
            known_keys=known_keys or {},
            db_path=db_path,
        )
        started.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in started:
        cluster.stop()
