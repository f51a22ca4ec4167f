"""The in-memory directory snapshot: caught up when the store's directory version moves, only then."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.directory.loader import load_directory
from dispatcher.directory.snapshot import DirectoryCache, DirectorySnapshot, load_snapshot
from dispatcher.domain import Device, DeviceKind, HomeVisit
from dispatcher.store.base import NewAlert
from dispatcher.store.documents import MAX_DELTA_ROWS
from dispatcher.store.sqlite import SqliteStore
from protocol.replay import SequenceWindow

HERAULT = Path(__file__).resolve().parents[2] / "dispatcher" / "data" / "herault.yaml"
KEY = b"k" * 32

# What the admin CLI does, in a process of its own: its commit reaches the
# dispatcher only through the database file.
REVOKE_ELSEWHERE = """
import asyncio, sys
from dispatcher.store.sqlite import SqliteStore

async def main() -> None:
    store = await SqliteStore.open(sys.argv[1])
    try:
        await store.revoke_device(sys.argv[2])
    finally:
        await store.close()

asyncio.run(main())
"""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "vigie.db")
    await load_directory(HERAULT, s, None)
    await s.add_device(Device(id="btn-1", kind=DeviceKind.BUTTON, site_id="cabinet-boutonnet"), KEY)
    try:
        yield s
    finally:
        await s.close()


async def _revoke_in_another_process(db: Path, device_id: str) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", REVOKE_ELSEWHERE, str(db), device_id)
    assert await proc.wait() == 0


def _alert(alert_id: str, seq: int) -> NewAlert:
    now = datetime.now(UTC)
    return NewAlert(alert_id, "btn-1", "alert", seq, now, now, "hold", None, b"{}")


async def test_revocation_by_another_process_is_refused_after_the_next_poll(store: SqliteStore) -> None:
    cache = DirectoryCache(store)
    await cache.refresh()
    assert cache.current.key_for("btn-1") == KEY
    before = cache.current

    await _revoke_in_another_process(store.path, "btn-1")

    assert await cache.refresh_if_changed()
    assert cache.current is not before
    assert cache.current.key_for("btn-1") is None  # its alerts are refused from now on
    assert cache.current.any_key_for("btn-1") == KEY  # downlinks about past alerts still signed


async def test_alerts_do_not_force_a_reload(store: SqliteStore) -> None:
    """Every alert updates its device's replay window and fix: that is not a directory change."""
    cache = DirectoryCache(store)
    await cache.refresh()
    snapshot = cache.current

    await store.insert_alerts([(_alert("a-1", 1), SequenceWindow().admit(1), None)])
    await store.save_replay_windows({"btn-1": SequenceWindow().admit(1).admit(2)})

    assert not await cache.refresh_if_changed()
    assert cache.current is snapshot


# -- catching up by the change log (issue 16) -----------------------------------------

EDITS = st.lists(
    st.tuples(
        st.sampled_from(["practitioner", "site", "add", "relabel", "revoke", "visit", "end", "convention"]),
        st.integers(min_value=0, max_value=4),
    ),
    min_size=1,
    max_size=25,
)


async def _edit(store: SqliteStore, what: str, n: int) -> None:
    """One directory edit as the API or the admin CLI makes it."""
    dr = await store.get_practitioner("dr-claire-fabre")
    site = await store.get_site("cabinet-boutonnet")
    now = datetime.now(UTC)
    match what:
        case "practitioner":
            await store.upsert_practitioner(dr.model_copy(update={"phones": [f"+3360000000{n}"]}))
        case "site":
            await store.upsert_site(site.model_copy(update={"name": f"Cabinet {n}"}))
        case "add":
            if f"btn-new-{n}" not in {d.id for d in await store.list_devices()}:
                await store.add_device(
                    Device(id=f"btn-new-{n}", kind=DeviceKind.BUTTON, site_id=site.id), KEY
                )
        case "relabel":
            await store.update_device((await store.get_device("btn-1")).model_copy(update={"label": f"p{n}"}))
        case "revoke":
            await store.revoke_device("btn-1")
        case "visit":
            await store.upsert_visit(
                HomeVisit(
                    id=f"v-{n}",
                    practitioner_id=dr.id,
                    address=site.address,
                    starts_at=now,
                    ends_at=now + timedelta(minutes=10 * (5 - n)),
                )
            )
        case "end":
            if f"v-{n}" in {v.id for v in await store.list_visits()}:
                await store.delete_visit(f"v-{n}")
        case "convention":
            convention = (await store.list_conventions())[0]
            await store.upsert_convention(convention.model_copy(update={"name": f"SSJ {n}"}))


def _as_read_in_full(cache: DirectoryCache, full: DirectorySnapshot) -> bool:
    mine = cache.current
    return (
        mine.practitioners == full.practitioners
        and mine.sites == full.sites
        and mine.devices == full.devices
        and mine.keys == full.keys
        and mine.revoked_keys == full.revoked_keys
        and mine.visits == full.visits
        and mine.conventions == full.conventions
    )


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Hérault directory and a button, loaded once (its PINs' hashes are slow on purpose)."""

    async def seed(db: Path) -> None:
        store = await SqliteStore.open(db)
        try:
            await load_directory(HERAULT, store, None)
            await store.add_device(
                Device(id="btn-1", kind=DeviceKind.BUTTON, site_id="cabinet-boutonnet"), KEY
            )
        finally:
            await store.close()

    db = tmp_path_factory.mktemp("seeded") / "vigie.db"
    asyncio.run(seed(db))
    return db


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(EDITS, min_size=1, max_size=3))
def test_a_cache_patched_by_the_change_log_is_the_directory_read_in_full(
    seeded_db: Path, batches: list[list[tuple[str, int]]]
) -> None:
    async def run(db: Path) -> None:
        store = await SqliteStore.open(db)
        try:
            cache = DirectoryCache(store)
            await cache.refresh()
            for batch in batches:
                before = cache.current
                for what, n in batch:
                    await _edit(store, what, n)
                await cache.refresh_if_changed()
                assert _as_read_in_full(cache, await load_snapshot(store))
                unchanged = [d for d, dev in before.devices.items() if cache.current.devices.get(d) == dev]
                assert all(cache.current.devices[d] is before.devices[d] for d in unchanged)
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(seeded_db, Path(tmp) / "vigie.db")
        asyncio.run(run(Path(tmp) / "vigie.db"))


def _import_devices(store: SqliteStore, ids: list[str], *, revoked: str | None = None) -> None:
    """Add these devices in one transaction, as an import in another process does."""
    doc = Device(id="x", kind=DeviceKind.BUTTON, site_id="cabinet-boutonnet")
    with sqlite3.connect(store.path) as db:
        db.executemany(
            "INSERT INTO devices(id, doc, state, hmac_key, created_at)"
            " VALUES (?, ?, 'active', ?, '2026-01-01')",
            [(d, doc.model_copy(update={"id": d}).model_dump_json(), KEY) for d in ids],
        )
        if revoked is not None:
            db.execute("UPDATE devices SET state = 'revoked' WHERE id = ?", (revoked,))


async def test_a_bulk_import_is_read_in_full(store: SqliteStore) -> None:
    """Thousands of rows changed (an import by the admin CLI): one full read, not a delta."""
    cache = DirectoryCache(store)
    await cache.refresh()
    since = cache.version
    assert since is not None
    added = [f"imp-{i:05d}" for i in range(MAX_DELTA_ROWS + 1)]
    _import_devices(store, added)

    assert await store.directory_delta(since, await store.directory_version()) is None
    assert await cache.refresh_if_changed()
    assert set(added) <= set(cache.current.keys)


async def test_an_import_of_thousands_of_devices_is_caught_up_with_by_its_rows(store: SqliteStore) -> None:
    """An import under the full-read threshold: a delta of its rows, patched, equal to a full read."""
    cache = DirectoryCache(store)
    await cache.refresh()
    since, before = cache.version, cache.current
    assert since is not None
    added = [f"imp-{i:05d}" for i in range(3_000)]  # more than a worker thread's OFF_LOOP_ROWS
    _import_devices(store, added, revoked="imp-00007")

    delta = await store.directory_delta(since, await store.directory_version())
    assert delta is not None and delta.rows == 3_000
    assert await cache.refresh_if_changed()
    assert _as_read_in_full(cache, await load_snapshot(store))
    assert "imp-00007" in cache.current.revoked_keys and "imp-00007" not in cache.current.keys
    assert all(cache.current.devices[d] is before.devices[d] for d in before.devices)


async def test_the_cache_tells_which_devices_changed_between_two_of_its_snapshots(store: SqliteStore) -> None:
    """What the health monitor compares after an edit: the devices edited, not 100,000."""
    await store.add_device(Device(id="btn-2", kind=DeviceKind.BUTTON, site_id="cabinet-boutonnet"), KEY)
    cache = DirectoryCache(store)
    await cache.refresh()
    start = cache.current

    await store.update_device((await store.get_device("btn-1")).model_copy(update={"label": "accueil"}))
    await cache.refresh()
    one_edit = cache.current
    await store.upsert_practitioner(
        (await store.get_practitioner("dr-claire-fabre")).model_copy(update={"phones": ["+33600000009"]})
    )
    await cache.refresh()
    await store.revoke_device("btn-2")
    await cache.refresh()

    assert cache.devices_changed(start, one_edit) == {"btn-1"}
    assert cache.devices_changed(one_edit, cache.current) == {"btn-2"}  # the practitioner is no device
    assert cache.devices_changed(start, cache.current) == {"btn-1", "btn-2"}
    assert cache.devices_changed(cache.current, cache.current) == frozenset()


async def test_after_a_full_read_the_cache_cannot_say_which_devices_changed(store: SqliteStore) -> None:
    cache = DirectoryCache(store)
    await cache.refresh()
    before = cache.current
    await store.prune_directory_changes(0)  # the log no longer reaches back to the cache's version
    await store.revoke_device("btn-1")
    await cache.refresh()
    assert cache.current.key_for("btn-1") is None
    assert cache.devices_changed(before, cache.current) is not None  # the change after the prune is logged
    await store.prune_directory_changes(0)
    await store.update_device((await store.get_device("btn-1")).model_copy(update={"label": "x"}))
    await store.prune_directory_changes(0)
    previous = cache.current
    await cache.refresh()  # behind the pruned log: read in full
    assert cache.current.devices["btn-1"].label == "x"
    assert cache.devices_changed(previous, cache.current) is None


async def test_the_sites_index_is_ready_before_an_alert_needs_it_and_kept_while_the_sites_are(
    store: SqliteStore,
) -> None:
    """The first alert with a fix after an edit must not build the index of every site."""
    cache = DirectoryCache(store)
    await cache.refresh()
    built = cache.current.__dict__.get("site_index")
    assert built is not None  # built by the refresh, not on first use

    dr = await store.get_practitioner("dr-claire-fabre")
    await store.upsert_practitioner(dr.model_copy(update={"phones": ["+33600000008"]}))
    await cache.refresh()
    assert cache.current.__dict__.get("site_index") is built  # same sites: same index

    site = await store.get_site("cabinet-boutonnet")
    moved = site.address.model_copy(update={"point": site.address.point.model_copy(update={"lat": 44.5})})
    await store.upsert_site(site.model_copy(update={"address": moved}))
    await cache.refresh()
    rebuilt = cache.current.__dict__.get("site_index")
    assert rebuilt is not None and rebuilt is not built
    assert "cabinet-boutonnet" in {s.id for s in rebuilt.near(44.5, site.address.point.lon)}


async def test_the_web_sides_memos_are_kept_while_their_devices_sites_and_conventions_are(
    store: SqliteStore,
) -> None:
    """A home visit starting or ending, a practitioner edited, makes a new snapshot every few
    seconds in a national deployment: an operator's territory (100,000 devices tested) must not
    be worked out again for it. A device edited must be, and only what it is part of."""
    cache = DirectoryCache(store)
    await cache.refresh()
    first = cache.current
    by_id, territories, conventions = first.devices_by_id, first.territory_devices, first.site_conventions
    territories[frozenset({"ssj-34"})] = first.devices_by_id  # as an operator's read fills it

    dr = await store.get_practitioner("dr-claire-fabre")
    await store.upsert_practitioner(dr.model_copy(update={"phones": ["+33600000008"]}))
    await cache.refresh()
    kept = cache.current
    assert kept is not first
    assert kept.devices_by_id is by_id and kept.territory_devices is territories
    assert kept.site_conventions is conventions

    device = await store.get_device("btn-1")
    await store.update_device(device.model_copy(update={"label": "bouton relabellisé"}))
    await cache.refresh()
    edited = cache.current
    assert edited.site_conventions is conventions  # the sites and conventions did not change
    assert edited.territory_devices is not territories and edited.territory_devices == {}
    assert [d.label for d in edited.devices_by_id if d.id == "btn-1"] == ["bouton relabellisé"]


async def test_the_searchable_lists_are_made_again_only_when_their_records_change(store: SqliteStore) -> None:
    """The practitioners' and sites' folded names (100,000 nationally) are kept by a snapshot
    made for a device edited, and made again when a practitioner or a site is."""
    cache = DirectoryCache(store)
    await cache.refresh()
    first = cache.current
    practitioners, sites, devices = first.practitioners_listed, first.sites_listed, first.devices_listed
    assert [p.id for p in practitioners.records] == sorted(first.practitioners)
    texts = dict(zip([p.id for p in practitioners.records], practitioners.texts, strict=True))
    assert texts["dr-claire-fabre"] == "claire fabre dr-claire-fabre 10001234567"

    device = await store.get_device("btn-1")
    await store.update_device(device.model_copy(update={"label": "bouton relabellisé"}))
    await cache.refresh()
    assert cache.current.practitioners_listed is practitioners and cache.current.sites_listed is sites
    assert cache.current.devices_listed is not devices
    assert "bouton relabellise" in cache.current.devices_listed.texts[
        [d.id for d in cache.current.devices_listed.records].index("btn-1")
    ]

    dr = await store.get_practitioner("dr-claire-fabre")
    await store.upsert_practitioner(dr.model_copy(update={"last_name": "Fabre-Élie"}))
    await cache.refresh()
    renamed = cache.current
    assert renamed.practitioners_listed is not practitioners and renamed.sites_listed is sites
    assert "devices_listed" not in vars(renamed), "a device's text names its practitioner: made again"
    listed = renamed.practitioners_listed
    texts = dict(zip([p.id for p in listed.records], listed.texts, strict=True))
    assert texts["dr-claire-fabre"] == "claire fabre-elie dr-claire-fabre 10001234567"
