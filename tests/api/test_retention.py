"""RGPD retention: location data is erased after the configured period (service task and CLI)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from dispatcher.cli import app as cli
from dispatcher.domain import Address, GeoPoint, HomeVisit
from dispatcher.retention import purge
from dispatcher.store.base import PURGED_LOCATION
from dispatcher.store.sqlite import SqliteStore
from protocol.messages import Location
from protocol.topics import UplinkKind
from tests.api.conftest import Api, add_users
from tests.support.system import HERAULT


async def test_purge_erases_fixes_addresses_and_visits_but_keeps_the_alert(api: Api) -> None:
    store = api.system.store
    now = datetime.now(UTC)
    fix = Location(lat=43.6219, lon=3.8731, accuracy_m=8, fix_ts=int(now.timestamp() * 1000), source="gnss")
    device = await api.system.add_device(
        "bracelet-fabre", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert, fix)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id)
    await asyncio.to_thread(device.send, UplinkKind.POSITION, location=fix, alert_id=alert_id)  # live

    async def followed() -> bool:
        return await store.latest_alert_position(alert_id) is not None

    await api.system.until(followed)
    await store.upsert_visit(
        HomeVisit(
            id="visit-recent",
            practitioner_id="dr-claire-fabre",
            address=Address(label="1 Rue Recente, 34000 Montpellier", point=GeoPoint(lat=43.6, lon=3.87)),
            starts_at=now - timedelta(hours=1),
            ends_at=now + timedelta(hours=1),
        )
    )
    assert (await store.get_alert(alert_id)).fix is not None

    # Nothing is old enough yet.
    report = await purge(store, 90)
    assert report.alerts == 0 and (await store.get_alert(alert_id)).fix is not None

    later = now + timedelta(days=91)
    report = await purge(store, 90, now=later)
    assert (
        report.alerts == 1 and report.last_fixes == 1 and report.positions == 1 and report.visits >= 1
    )  # ours (the service task may already have purged the demo visit)
    assert await store.latest_alert_position(alert_id) is None
    record = await store.get_alert(alert_id)
    assert record.fix is None and record.context is not None
    location = record.context["location"]
    assert location["description"] == PURGED_LOCATION
    assert "point" not in location and "address" not in location and location["insee"] == "34172"
    assert await store.last_fix("bracelet-fabre") is None
    assert await store.list_visits() == []
    located = [e for e in await store.alert_events(alert_id) if e["kind"] == "located"]
    assert located[0]["detail"]["description"] == PURGED_LOCATION

    admin = await api.as_user("admin")
    detail = (await admin.get(f"/api/alerts/{alert_id}")).json()
    assert detail["location"]["purged"] is True and detail["location"]["point"] is None
    assert "43.62" not in str(detail["location"]) and detail["state"] == record.state
    assert detail["live_position"] is None
    audited = (await store.list_audit(action="retention.purge"))[0].detail
    assert (audited["alerts"], audited["positions"]) == (1, 1)
    assert (await purge(store, 90, now=later)).alerts == 0  # idempotent


async def test_vigie_purge_command(tmp_path: Path) -> None:
    db = tmp_path / "vigie.db"
    store = await SqliteStore.open(db)
    from dispatcher.directory.loader import load_directory

    await load_directory(HERAULT, store, None)  # its demo visit ended in March 2026
    now = datetime.now(UTC)
    await store.upsert_visit(
        HomeVisit(
            id="visit-tomorrow",
            practitioner_id="dr-claire-fabre",
            address=Address(label="2 Rue Future, 34000 Montpellier"),
            starts_at=now + timedelta(days=1),
            ends_at=now + timedelta(days=1, hours=1),
        )
    )
    await store.close()

    env = {"VIGIE_DATABASE_URL": f"sqlite:///{db}", "VIGIE_LOCATION_RETENTION_DAYS": "30"}
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["purge"], env=env)
    assert result.exit_code == 0, result.output
    assert "1 visite(s) supprimée(s)" in result.output and "PurgeReport" not in result.output

    store = await SqliteStore.open(db)
    try:
        assert [v.id for v in await store.list_visits()] == ["visit-tomorrow"]
    finally:
        await store.close()


async def test_ids_of_received_sms_are_forgotten_after_their_own_retention(tmp_path: Path) -> None:
    db = tmp_path / "vigie.db"
    store = await SqliteStore.open(db)
    now = datetime.now(UTC)
    old, recent = "SM" + "a" * 32, "SM" + "b" * 32
    await store.claim_inbound_message(old, now - timedelta(days=31))
    await store.claim_inbound_message(recent, now - timedelta(days=29))
    await store.close()

    env = {"VIGIE_DATABASE_URL": f"sqlite:///{db}", "VIGIE_INBOUND_SID_RETENTION_DAYS": "30"}
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["purge"], env=env)
    assert result.exit_code == 0, result.output
    assert "1 identifiant(s) de SMS reçu(s) oublié(s)" in result.output

    store = await SqliteStore.open(db)
    try:
        assert await store.claim_inbound_message(recent, now) is False  # a replay is still recognised
        assert await store.claim_inbound_message(old, now) is True  # forgotten
        # By default they are kept a year (a replayed capture after that is stale): 364 and 335 days.
        assert (await purge(store, 90, now=now + timedelta(days=335))).inbound_messages == 0
        assert (await purge(store, 90, now=now + timedelta(days=366))).inbound_messages == 2
    finally:
        await store.close()


async def test_vigie_user_add_reads_the_password_from_a_hidden_prompt(tmp_path: Path) -> None:
    db = tmp_path / "vigie.db"
    store = await SqliteStore.open(db)
    from dispatcher.directory.loader import load_directory

    await load_directory(HERAULT, store, None)
    await store.close()
    env = {"VIGIE_DATABASE_URL": f"sqlite:///{db}"}
    args = [
        "user",
        "add",
        "op-nuit",
        "--role",
        "operator",
        "--convention",
        "ssj-34",
        "--name",
        "Opérateur de nuit",
    ]
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, args, env=env, input="a long night passphrase\na long night passphrase\n"
    )
    assert result.exit_code == 0, result.output
    assert "a long night passphrase" not in result.output  # hidden input is not echoed
    bad = await asyncio.to_thread(
        CliRunner().invoke, cli, [*args[:3], "op-x", "--role", "operator", "--convention", "ssj-99"],
        env={**env, "VIGIE_NEW_USER_PASSWORD": "another long one"},
    )  # fmt: skip
    assert bad.exit_code != 0
    store = await SqliteStore.open(db)
    try:
        user = await store.get_user_by_name("op-nuit")
        assert (
            user is not None and user.conventions == ("ssj-34",) and user.password_hash.startswith("$argon2")
        )
        assert await store.get_user_by_name("op-x") is None
    finally:
        await store.close()


__all__ = ["add_users"]
