"""Store conformance of the directory's change log (issue 16): what an instance reads to catch up.

Same fixtures as test_conformance.py: every test runs on SQLite and PostgreSQL.
An instance that polled version ``since`` and now sees ``upto`` asks for the
rows changed in between instead of reading 100,000 devices again.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from dispatcher.directory.snapshot import DirectoryCache, load_snapshot
from dispatcher.domain import DeviceState, HomeVisit
from tests.store.conftest import StoreOpener
from tests.store.coverage import covers
from tests.store.test_conformance import CONVENTION, NOW, PRACTITIONER, SITE, device, seed


@covers("directory_delta", "directory_version")
async def test_a_delta_lists_the_changed_rows_as_they_are_now(store: Any) -> None:
    await seed(store, "btn-1", "btn-2", "btn-3")
    since = await store.directory_version()
    await store.update_device(device("btn-1", label="accueil"))
    await store.revoke_device("btn-2")
    await store.upsert_practitioner(PRACTITIONER.model_copy(update={"phones": ["+33600000001"]}))
    visit = HomeVisit(
        id="v-1",
        practitioner_id=PRACTITIONER.id,
        address=SITE.address,
        starts_at=NOW,
        ends_at=NOW + timedelta(hours=1),
    )
    await store.upsert_visit(visit)
    await store.upsert_visit(visit.model_copy(update={"id": "v-2"}))
    await store.delete_visit("v-2")
    upto = await store.directory_version()

    delta = await store.directory_delta(since, upto)

    assert delta is not None
    assert delta.devices == {
        "btn-1": device("btn-1", label="accueil"),
        "btn-2": device("btn-2").model_copy(update={"state": DeviceState.REVOKED}),
    }
    assert {d: c.state for d, c in delta.credentials.items() if c} == {
        "btn-1": DeviceState.ACTIVE,
        "btn-2": DeviceState.REVOKED,
    }
    assert delta.practitioners == {PRACTITIONER.id: await store.get_practitioner(PRACTITIONER.id)}
    assert delta.visits == {"v-1": visit, "v-2": None}  # v-2 came and went: gone
    assert not delta.sites and not delta.conventions
    assert await store.directory_delta(upto, upto) == type(delta)()


@covers("directory_delta")
async def test_what_every_alert_writes_is_not_a_directory_change(store: Any) -> None:
    await seed(store, "btn-1")
    since = await store.directory_version()
    await store.save_last_fixes({"btn-1": {"lat": 43.6, "lon": 3.9, "fix_ts": 1}})
    delta = await store.directory_delta(since, await store.directory_version())
    assert delta is not None and not delta.devices


@covers("prune_directory_changes", "directory_delta")
async def test_a_reader_behind_the_pruned_log_is_told_to_read_everything(store: Any) -> None:
    await seed(store, "btn-1")
    old = await store.directory_version()
    for label in ("a", "b", "c"):
        await store.update_device(device("btn-1", label=label))
    upto = await store.directory_version()

    assert await store.prune_directory_changes(2) >= 1
    assert await store.directory_delta(old, upto) is None  # its changes are gone: read everything
    recent = await store.directory_delta(upto - 2, upto)
    assert recent is not None and recent.devices == {"btn-1": device("btn-1", label="c")}
    assert await store.prune_directory_changes(2) == 0


@covers("directory_delta")
async def test_a_reader_from_before_the_log_is_told_to_read_everything(store: Any) -> None:
    await seed(store, "btn-1")
    since = await store.directory_version()
    await store.upsert_convention(CONVENTION)
    delta = await store.directory_delta(since, await store.directory_version())
    assert delta is not None and delta.conventions == {CONVENTION.id: CONVENTION}
    assert await store.directory_delta(-1, await store.directory_version()) is None


async def test_a_cache_catching_up_while_instances_edit_ends_as_a_full_read(
    store: Any, open_another: StoreOpener
) -> None:
    """Four writers race while another instance polls: no change numbered below a version the
    poller saw may commit after it saw it, or the poller would never read that change (each
    device is edited once, so a missed edit stays missed)."""
    ids = [f"btn-{i:03d}" for i in range(240)]
    await seed(store, *ids)
    reader = DirectoryCache(await open_another())
    await reader.refresh()
    writers = [await open_another() for _ in range(4)]
    done = asyncio.Event()

    async def edit(writer: Any, first: int) -> None:
        for device_id in ids[first :: len(writers)]:
            await writer.update_device(device(device_id, label="modifié"))

    async def poll() -> None:
        while not done.is_set():
            await reader.refresh_if_changed()

    poller = asyncio.create_task(poll())
    try:
        await asyncio.gather(*(edit(w, i) for i, w in enumerate(writers)))
    finally:
        done.set()
        await poller
    await reader.refresh_if_changed()

    assert [d for d in ids if reader.current.devices[d].label != "modifié"] == []
    assert reader.current.devices == (await load_snapshot(store)).devices


async def test_a_visit_ending_later_than_another_keeps_the_snapshot_in_the_stores_order(store: Any) -> None:
    await seed(store, "btn-1")
    cache = DirectoryCache(store)
    await cache.refresh()
    for minutes, visit_id in ((30, "v-b"), (10, "v-c"), (30, "v-a")):
        await store.upsert_visit(
            HomeVisit(
                id=visit_id,
                practitioner_id=PRACTITIONER.id,
                address=SITE.address,
                starts_at=NOW,
                ends_at=NOW + timedelta(minutes=minutes),
            )
        )
        await cache.refresh()
    assert cache.current.visits == tuple(await store.list_visits())
    assert [v.id for v in cache.current.visits] == ["v-c", "v-a", "v-b"]
