"""The BAN sandbox answers like the BAN API, over real HTTP."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from broker_config.runner import free_port
from sandbox.ban_server import BanSandbox, lambert93, load_fixture, normalise

REPO = Path(__file__).resolve().parents[2]

# Properties the BAN returns for a "housenumber" result.
BAN_HOUSENUMBER_KEYS = {
    "label",
    "score",
    "housenumber",
    "id",
    "name",
    "postcode",
    "citycode",
    "x",
    "y",
    "city",
    "context",
    "type",
    "importance",
    "street",
}


@pytest.fixture
async def ban() -> AsyncIterator[BanSandbox]:
    sandbox = BanSandbox()
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


async def _get(ban: BanSandbox, path: str, **params: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{ban.base_domain}{path}", params=params) as resp,
    ):
        return resp.status, await resp.json()


async def test_search_answers_a_ban_feature_collection(ban: BanSandbox) -> None:
    status, body = await _get(ban, "/search", q="12 rue de la Loge 34000 Montpellier", limit="1")
    assert status == 200
    assert body["type"] == "FeatureCollection"
    assert body["query"] == "12 rue de la Loge 34000 Montpellier"
    [feature] = body["features"]
    assert feature["type"] == "Feature"
    assert feature["geometry"]["type"] == "Point"
    lon, lat = feature["geometry"]["coordinates"]
    assert (round(lat, 3), round(lon, 3)) == (43.611, 3.877)
    props = feature["properties"]
    assert set(props) == BAN_HOUSENUMBER_KEYS
    assert props["label"] == "12 Rue de la Loge 34000 Montpellier"
    assert props["citycode"] == "34172"
    assert props["type"] == "housenumber"
    assert props["score"] == pytest.approx(1.0)
    assert props["context"] == "34, Hérault, Occitanie"
    # x/y are Lambert-93 metres, like the BAN's
    assert 760_000 < props["x"] < 780_000 and 6_270_000 < props["y"] < 6_290_000


async def test_search_tolerates_accents_abbreviations_and_case(ban: BanSandbox) -> None:
    _, body = await _get(ban, "/search", q="3 PL DE LA COMEDIE MONTPELLIER")
    assert body["features"][0]["properties"]["label"] == "3 Place de la Comédie 34000 Montpellier"
    _, body = await _get(ban, "/search", q="22 quai de bosc sete")
    assert body["features"][0]["properties"]["citycode"] == "34301"


async def test_search_respects_limit_and_ranks_by_score(ban: BanSandbox) -> None:
    _, body = await _get(ban, "/search", q="avenue montpellier", limit="3")
    scores = [f["properties"]["score"] for f in body["features"]]
    assert 1 <= len(scores) <= 3
    assert scores == sorted(scores, reverse=True)


async def test_search_finds_nothing_for_an_unknown_address(ban: BanSandbox) -> None:
    _, body = await _get(ban, "/search", q="99 boulevard Haussmann 75009 Paris")
    assert body["features"] == []


async def test_search_rejects_a_too_short_query(ban: BanSandbox) -> None:
    status, body = await _get(ban, "/search", q="ab")
    assert status == 400
    assert body["code"] == 400


async def test_reverse_gives_the_nearest_address_with_its_distance(ban: BanSandbox) -> None:
    _, body = await _get(ban, "/reverse", lat="43.6086", lon="3.8797")
    [feature] = body["features"]
    assert feature["properties"]["label"] == "3 Place de la Comédie 34000 Montpellier"
    assert feature["properties"]["distance"] < 20


async def test_requests_are_counted_and_faults_injected(ban: BanSandbox) -> None:
    assert ban.request_count == 0
    ban.fail_next(1, status=503)
    status, _ = await _get(ban, "/search", q="15 rue Foch Montpellier")
    assert status == 503
    status, _ = await _get(ban, "/search", q="15 rue Foch Montpellier")
    assert status == 200
    assert ban.request_count == 2
    assert ban.requests[-1].params["q"] == "15 rue Foch Montpellier"


def test_fixture_is_a_plausible_set_of_herault_addresses() -> None:
    entries = load_fixture()
    assert len(entries) >= 20
    assert len({e.id for e in entries}) == len(entries)
    for e in entries:
        assert e.citycode.startswith("34") and e.postcode.startswith("34"), e
        assert 43.2 < e.lat < 44.0 and 2.5 < e.lon < 4.3, e  # the Hérault's bounding box
    assert {"housenumber", "street", "municipality"} <= {e.type for e in entries}


def test_normalise() -> None:
    assert normalise("Av. de l'Europe, Castelnau-le-Lez") == ["avenue", "europe", "castelnau", "lez"]
    assert normalise("Pérols") == ["perols"]


def test_lambert93_of_a_known_point() -> None:
    # Paris, Notre-Dame: about (652 000, 6 862 000) in Lambert-93.
    x, y = lambert93(48.853, 2.3499)
    assert abs(x - 652_300) < 500 and abs(y - 6_861_600) < 500


async def test_standalone_main_serves_on_the_given_port() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.ban_server",
        "--port",
        str(port),
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        # The server prints its banner once it listens.
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
        assert f"127.0.0.1:{port}" in line.decode()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/search", params={"q": "7 rue du Lavoir Grabels"}) as resp,
        ):
            body = await resp.json()
        assert body["features"][0]["properties"]["citycode"] == "34116"
    finally:
        proc.terminate()
        await proc.wait()
