"""Store conformance: SqliteStore and PostgresStore give the same answers to the same calls.

Every test runs once per implementation (``store`` is parametrised) with the
same inputs and the same expected outputs. ``@covers`` lists the methods a
test exercises (checked: the test must really call them), and
:func:`test_every_protocol_method_is_implemented_and_covered` fails as soon as
the ``Store`` protocol gains a method that an implementation lacks or that no
conformance test exercises.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import shapely

from dispatcher.domain import (
    Address,
    Contact,
    Convention,
    Device,
    DeviceKind,
    DeviceState,
    EscalationTier,
    GeoPoint,
    HomeVisit,
    Practitioner,
    ResponderUnit,
    Site,
    SiteKind,
    TierTarget,
    UnitKind,
    Zone,
)
from dispatcher.store.base import (
    PURGED_LOCATION,
    AlertFacts,
    AlertHead,
    AlertQuery,
    AlreadyExists,
    CommuneRecord,
    Conflict,
    FlagChange,
    Lease,
    NewAlert,
    NewUser,
    NotFound,
    NotificationSpec,
    TimerSpec,
    Transition,
)
from dispatcher.store.postgres import PostgresStore
from dispatcher.store.rows import OFF_LOOP_ROWS
from dispatcher.store.sqlite import SqliteStore
from protocol.replay import SequenceWindow
from tests.store.coverage import COVERED, covers, protocol_methods

NOW = datetime.now(UTC).replace(microsecond=123456)
PRACTITIONER = Practitioner(
    id="dr-fabre", first_name="Claire", last_name="Fabre", rpps="10001234567", phones=["+33639980150"]
)
SITE = Site(
    id="cabinet-boutonnet",
    kind=SiteKind.CABINET,
    name="Cabinet Boutonnet",
    address=Address(
        label="45 Rue du Faubourg Boutonnet, 34090 Montpellier", point=GeoPoint(lat=43.6, lon=3.87)
    ),
)
CONVENTION = Convention(
    id="ssj-34",
    name="Convention SSJ Hérault",
    departement="34",
    units=[
        ResponderUnit(
            id="csp-montpellier",
            name="Commissariat de Montpellier",
            kind=UnitKind.COMMISSARIAT,
            zone=Zone.POLICE,
            communes=["34172"],
            polygons=[[(3.8, 43.6), (3.9, 43.6), (3.9, 43.7), (3.8, 43.6)]],
            contacts=[Contact(id="chef-de-poste", name="Chef de poste", phone="+33639980101")],
        )
    ],
    tiers=[EscalationTier(targets=[TierTarget(unit="competent")], ack_timeout_s=60)],
    fallback_units=["csp-montpellier"],
)
FIX = {
    "lat": 43.6219,
    "lon": 3.8731,
    "accuracy_m": 8.0,
    "fix_ts": int(NOW.timestamp() * 1000),
    "source": "gnss",
}


def device(device_id: str = "btn-1", **changes: Any) -> Device:
    fields: dict[str, Any] = {
        "id": device_id,
        "kind": DeviceKind.BUTTON,
        "practitioner_id": PRACTITIONER.id,
        "site_id": SITE.id,
        "label": "bureau",
    }
    return Device(**(fields | changes))


async def seed(store: Any, *device_ids: str) -> None:
    await store.upsert_practitioner(PRACTITIONER)
    await store.upsert_site(SITE)
    for d in device_ids or ("btn-1",):
        await store.add_device(device(d), b"k" * 32)


def new_alert(
    alert_id: str, *, device_id: str = "btn-1", seq: int = 1, at: datetime = NOW, **kw: Any
) -> NewAlert:
    fields: dict[str, Any] = {
        "id": alert_id,
        "device_id": device_id,
        "kind": "alert",
        "seq": seq,
        "device_ts": at - timedelta(milliseconds=20),
        "received_at": at,
        "gesture": "hold",
        "fix": None,
        "raw": b'{"signed": true}',
    }
    return NewAlert(**(fields | kw))


def spec(
    contact: str, channel: str = "sms", *, tier: int = 0, round: int = 0, purpose: str = "alert"
) -> NotificationSpec:
    return NotificationSpec(
        contact,
        contact.title(),
        "+3363998" + str(abs(hash(contact)) % 10000).zfill(4),
        channel,
        purpose,
        tier,
        round,
    )


def first(alert_id: str, *specs: NotificationSpec, timers: tuple[TimerSpec, ...] = ()) -> Transition:
    return Transition(
        alert_id=alert_id,
        expected_version=0,
        state="notifying",
        escalation={"tier": 0, "round": 0, "plan": {"tiers": []}},
        notifications=specs,
        timers=timers,
        events=(("located", {"source": "site", "description": "45 Rue du Faubourg Boutonnet"}),),
        context={
            "location": {"source": "site", "description": "45 Rue", "insee": "34172"},
            "convention_name": CONVENTION.name,
            "practitioner": {"id": PRACTITIONER.id},
        },
    )


def window(*seqs: int) -> SequenceWindow:
    w = SequenceWindow()
    for s in seqs:
        w = w.admit(s)
    return w


# -- the protocol itself ----------------------------------------------------------


def test_every_protocol_method_is_implemented_and_covered() -> None:
    methods = protocol_methods()
    assert len(methods) > 60  # DirectoryStore + AlertStore + AccessStore
    for impl in (SqliteStore, PostgresStore):
        for name, signature in methods.items():
            member = getattr(impl, name, None)
            assert member is not None, f"{impl.__name__} lacks {name}"
            is_async = inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member)
            assert is_async, f"{impl.__name__}.{name} is not async"
            params = list(inspect.signature(member).parameters.values())
            expected = list(signature.parameters.values())
            assert [(p.name, p.kind, p.default) for p in params] == [
                (p.name, p.kind, p.default) for p in expected
            ], f"{impl.__name__}.{name}{inspect.signature(member)} differs from the protocol"
    # The other conformance modules' @covers, even when this one runs alone.
    import tests.store.test_conformance_directory_changes
    import tests.store.test_conformance_positions
    import tests.store.test_conformance_responders
    import tests.store.test_conformance_visits  # noqa: F401

    uncovered = set(methods) - COVERED - {"close"}
    assert not uncovered, f"no conformance test exercises {sorted(uncovered)}"


# -- directory ----------------------------------------------------------------------


@covers(
    "upsert_practitioner",
    "get_practitioner",
    "list_practitioners",
    "upsert_site",
    "get_site",
    "list_sites",
    "upsert_convention",
    "list_conventions",
)
async def test_directory_documents_round_trip(store: Any) -> None:
    other = PRACTITIONER.model_copy(update={"id": "dr-a-benali", "last_name": "Benali"})
    for p in (PRACTITIONER, other):
        await store.upsert_practitioner(p)
    await store.upsert_practitioner(PRACTITIONER.model_copy(update={"phones": ["+33639980151"]}))
    assert (await store.get_practitioner(PRACTITIONER.id)).phones == ["+33639980151"]
    assert [p.id for p in await store.list_practitioners()] == ["dr-a-benali", "dr-fabre"]
    await store.upsert_site(SITE)
    assert await store.get_site(SITE.id) == SITE
    assert await store.list_sites() == [SITE]
    await store.upsert_convention(CONVENTION)
    assert await store.list_conventions() == [CONVENTION]
    with pytest.raises(NotFound):
        await store.get_practitioner("nobody")
    with pytest.raises(NotFound):
        await store.get_site("nowhere")


@covers("add_device", "update_device", "get_device", "list_devices", "revoke_device", "device_credentials")
async def test_devices(store: Any) -> None:
    await seed(store, "btn-2", "btn-1")
    with pytest.raises(AlreadyExists):
        await store.add_device(device("btn-1"), b"x" * 32)
    with pytest.raises(NotFound):
        await store.add_device(device("btn-3", practitioner_id="unknown"), b"x" * 32)
    with pytest.raises(NotFound):
        await store.update_device(device("btn-9"))
    await store.update_device(device("btn-2", label="accueil"))
    assert (await store.get_device("btn-2")).label == "accueil"
    assert [d.id for d in await store.list_devices()] == ["btn-1", "btn-2"]
    await store.revoke_device("btn-1")
    assert (await store.get_device("btn-1")).state is DeviceState.REVOKED
    creds = sorted(await store.device_credentials(), key=lambda c: c.device_id)
    assert [(c.device_id, c.hmac_key, c.state) for c in creds] == [
        ("btn-1", b"k" * 32, DeviceState.REVOKED),
        ("btn-2", b"k" * 32, DeviceState.ACTIVE),
    ]
    with pytest.raises(NotFound):
        await store.get_device("btn-9")


async def test_a_reread_after_an_edit_has_the_edit_and_the_other_devices_as_they_were(store: Any) -> None:
    """A directory reload after one edit parses only what changed (100,000 devices are re-read at
    each edit); what it returns is still exactly what the store holds."""
    ids = [f"btn-{i:04d}" for i in range(OFF_LOOP_ROWS + 50)]  # read in a worker thread
    await seed(store, *ids)
    first = {d.id: d for d in await store.list_devices()}
    await store.update_device(device("btn-0007", label="accueil"))
    await store.revoke_device("btn-0008")
    second = {d.id: d for d in await store.list_devices()}
    assert second["btn-0007"] == device("btn-0007", label="accueil")
    assert second["btn-0008"].state is DeviceState.REVOKED
    assert all(second[d] is first[d] for d in ids if d not in ("btn-0007", "btn-0008"))
    creds = {c.device_id: c.state for c in await store.device_credentials()}
    assert creds == {d: DeviceState.REVOKED if d == "btn-0008" else DeviceState.ACTIVE for d in ids}


@covers("upsert_visit", "delete_visit", "list_visits")
async def test_visits(store: Any) -> None:
    await seed(store)
    late = HomeVisit(
        id="v-late",
        practitioner_id=PRACTITIONER.id,
        address=SITE.address,
        starts_at=NOW,
        ends_at=NOW + timedelta(hours=2),
        note="digicode 1234",
    )
    early = late.model_copy(update={"id": "v-early", "ends_at": NOW + timedelta(hours=1)})
    await store.upsert_visit(late)
    await store.upsert_visit(early)
    assert [v.id for v in await store.list_visits()] == ["v-early", "v-late"]
    assert await store.list_visits(PRACTITIONER.id) == [early, late]
    assert await store.list_visits("dr-other") == []
    await store.delete_visit("v-early")
    with pytest.raises(NotFound):
        await store.delete_visit("v-early")
    with pytest.raises(NotFound):
        await store.upsert_visit(late.model_copy(update={"practitioner_id": "dr-other"}))


@covers("directory_version")
async def test_directory_version_moves_on_directory_changes_only(store: Any) -> None:
    async def moved(before: int) -> bool:
        return await store.directory_version() > before

    v = await store.directory_version()
    await seed(store, "btn-1")  # practitioner, site, device
    assert await moved(v)
    v = await store.directory_version()
    # What every alert writes on the device row must not force a directory reload.
    await store.insert_alerts([(new_alert("a-1", seq=1, fix=FIX), window(1), None)])
    await store.save_replay_windows({"btn-1": window(1, 2)})
    assert await store.directory_version() == v
    await store.revoke_device("btn-1")
    assert await moved(v)
    v = await store.directory_version()
    await store.upsert_site(SITE)
    assert await moved(v)
    v = await store.directory_version()
    ends = NOW + timedelta(hours=1)
    visit = HomeVisit(
        id="v-1", practitioner_id=PRACTITIONER.id, address=SITE.address, starts_at=NOW, ends_at=ends
    )
    await store.upsert_visit(visit)
    assert await moved(v)
    v = await store.directory_version()
    await store.delete_visit("v-1")
    assert await moved(v)


@covers("deployment_secret")
async def test_deployment_secret_first_writer_wins(store: Any) -> None:
    assert await store.deployment_secret("mqtt_share_group", "first") == "first"
    assert await store.deployment_secret("mqtt_share_group", "second") == "first"
    assert await store.deployment_secret("other", "x") == "x"


# -- alerts -------------------------------------------------------------------------


@covers("insert_alerts", "alert_exists", "get_alert", "replay_windows", "last_fix", "alert_events")
async def test_insert_alerts_is_idempotent_and_keeps_window_fix_and_first_transition(store: Any) -> None:
    await seed(store)
    w = window(1, 2)
    outcomes = await store.insert_alerts(
        [
            (new_alert("a-1", seq=1, fix=FIX), window(1), first("a-1", spec("chef"))),
            (new_alert("a-2", seq=2, at=NOW + timedelta(seconds=1)), w, None),
        ]
    )
    assert [o.created for o in outcomes] == [True, True]
    again = await store.insert_alerts([(new_alert("a-1", seq=1), w, None)])
    assert [o.created for o in again] == [False]
    assert await store.alert_exists("a-1") and not await store.alert_exists("a-3")
    a1 = await store.get_alert("a-1")
    assert (a1.state, a1.version, a1.fix, a1.seq, a1.received_at) == ("notifying", 1, FIX, 1, NOW)
    assert a1.escalation == {"tier": 0, "round": 0, "plan": {"tiers": []}}
    assert a1.context is not None and a1.context["convention_name"] == CONVENTION.name
    a2 = await store.get_alert("a-2")
    assert (a2.state, a2.version, a2.escalation, a2.context) == ("received", 0, None, None)
    assert (await store.replay_windows())["btn-1"] == w
    assert await store.last_fix("btn-1") == FIX  # a-2 had no fix: the last one is kept
    assert await store.last_fix("btn-9") is None
    events = await store.alert_events("a-1")
    assert [(e["kind"], e["detail"]) for e in events] == [
        ("received", {"seq": 1, "gesture": "hold"}),
        ("located", {"source": "site", "description": "45 Rue du Faubourg Boutonnet"}),
    ]
    assert datetime.fromisoformat(events[0]["at"]).tzinfo is not None
    with pytest.raises(NotFound):
        await store.get_alert("a-3")


@covers("insert_alerts", "replay_windows", "last_fix", "alert_events", "notifications_for", "next_timer_due")
async def test_a_mixed_batch_is_stored_as_its_alerts_one_by_one_would_be(store: Any) -> None:
    """Several devices, several first transitions with their timers, a copy twice in the batch and a
    re-send of a stored alert: each alert, window, fix, event and notification as if written alone."""
    await seed(store, "btn-1", "btn-2")
    await store.insert_alerts([(new_alert("a-0", seq=1), window(1), None)])
    later = NOW + timedelta(seconds=1)
    fix2 = {**FIX, "lat": 43.62}
    timer = TimerSpec("ack_timeout", 1120.0, {"tier": 0})
    outcomes = await store.insert_alerts(
        [
            (
                new_alert("a-1", seq=2, fix=FIX),
                window(1, 2),
                first("a-1", spec("chef"), spec("cic", "voice")),
            ),
            (new_alert("a-0", seq=1), window(1), first("a-0", spec("chef"))),  # stored already
            (new_alert("b-1", device_id="btn-2", seq=7, fix=fix2), window(7), first("b-1", spec("chef"))),
            (new_alert("a-1", seq=2, fix=FIX), window(1, 2), first("a-1", spec("chef"))),  # the same, twice
            (new_alert("a-2", seq=3, at=later), window(1, 2, 3), first("a-2", spec("cic"), timers=(timer,))),
            (new_alert("b-2", device_id="btn-2", seq=8, at=later), window(7, 8), None),
        ],
        lease=Lease("inst-1", until=1030.0),
    )
    assert [o.created for o in outcomes] == [True, False, True, False, True, True]
    assert [[(n.alert_id, n.contact_id, n.channel) for n in o.claimed] for o in outcomes] == [
        [("a-1", "chef", "sms"), ("a-1", "cic", "voice")],
        [],
        [("b-1", "chef", "sms")],
        [],
        [("a-2", "cic", "sms")],
        [],
    ]
    claimed_ids = [n.id for o in outcomes for n in o.claimed]
    assert claimed_ids == sorted(claimed_ids)  # numbered in the order the alerts came
    for o in outcomes:
        for n in o.claimed:
            assert n in [
                replace(m, status="pending", attempts=0) for m in await store.notifications_for(n.alert_id)
            ]
    windows = await store.replay_windows()
    assert windows["btn-1"] == window(1, 2, 3) and windows["btn-2"] == window(7, 8)
    assert await store.last_fix("btn-1") == FIX  # a-2 had none: a-1's is kept
    assert await store.last_fix("btn-2") == fix2
    for alert_id in ("a-1", "b-1", "a-2"):
        stored = await store.get_alert(alert_id)
        assert (stored.state, stored.version) == ("notifying", 1), alert_id
        assert [e["kind"] for e in await store.alert_events(alert_id)] == ["received", "located"]
    assert await store.next_timer_due() == 1120.0  # a-2's
    assert (await store.get_alert("a-0")).state == "received"  # the re-send decided nothing
    assert (await store.get_alert("b-2")).version == 0
    assert len(await store.notifications_for("a-1")) == 2


@covers("insert_alerts")
async def test_unknown_device_is_an_integrity_error_and_nothing_is_kept(store: Any) -> None:
    await seed(store)
    with pytest.raises(AlreadyExists):  # SqliteStore maps every IntegrityError so
        await store.insert_alerts(
            [(new_alert("a-1"), window(1), None), (new_alert("a-2", device_id="ghost"), window(1), None)]
        )
    assert not await store.alert_exists("a-1")  # one transaction: all or nothing


@covers("save_replay_windows", "replay_windows")
async def test_save_replay_windows_never_goes_back(store: Any) -> None:
    await seed(store, "btn-1", "btn-2")
    await store.save_replay_windows({"btn-1": window(5, 7), "btn-2": window(3)})
    await store.save_replay_windows({"btn-1": window(5), "btn-2": window(3, 4)})  # btn-1's is older
    windows = await store.replay_windows()
    assert windows["btn-1"] == window(5, 7) and windows["btn-2"] == window(3, 4)


@covers("replace_communes", "list_communes", "communes_version")
async def test_communes_are_replaced_per_departement_in_one_transaction(store: Any) -> None:
    square = shapely.to_wkb(shapely.box(3.8, 43.6, 3.9, 43.7))
    before = await store.communes_version()
    herault = [
        CommuneRecord("34172", "Montpellier", "34", square),
        CommuneRecord("34116", "Grabels", "34", square),
    ]
    assert await store.replace_communes(["34"], herault) == 2
    assert await store.replace_communes(["30"], [CommuneRecord("30189", "Nîmes", "30", square)]) == 3
    assert await store.replace_communes(["34"], herault[:1]) == 2  # Grabels gone: the file replaced 34
    assert [(c.code, c.nom, c.departement) for c in await store.list_communes()] == [
        ("30189", "Nîmes", "30"),
        ("34172", "Montpellier", "34"),
    ]
    assert (await store.list_communes())[1].wkb == square
    assert await store.communes_version() == before + 3


@covers("save_last_fixes", "last_fix")
async def test_heartbeat_fixes_never_replace_a_newer_one(store: Any) -> None:
    await seed(store, "btn-1", "btn-2")
    newer = FIX | {"fix_ts": FIX["fix_ts"] + 60_000}
    await store.save_last_fixes({"btn-1": newer, "btn-2": FIX})
    await store.save_last_fixes({"btn-1": FIX, "btn-unknown": FIX})  # older: kept as is; unknown: ignored
    assert await store.last_fix("btn-1") == newer
    assert await store.last_fix("btn-2") == FIX


@covers("apply_transition", "notifications_for", "get_alert", "alert_events", "next_timer_due")
async def test_apply_transition_is_optimistic_and_writes_its_consequences(store: Any) -> None:
    await seed(store)
    due = time.time() + 60
    timer = TimerSpec("ack_timeout", due, {"tier": 0, "round": 0})
    opening = first("a-1", spec("chef"), spec("chef", "voice"), timers=(timer,))
    await store.insert_alerts([(new_alert("a-1"), window(1), opening)])
    assert await store.next_timer_due() == due
    t = Transition(
        alert_id="a-1",
        expected_version=1,
        state="notifying",
        escalation={"tier": 1},
        notifications=(spec("chef", "voice"), spec("referent", tier=1), spec("cic", "voice", tier=1)),
        timers=(TimerSpec("ack_timeout", due + 60, {"tier": 1, "round": 0}),),
        cancel_timers=True,
        events=(("AckTimeout", {"tier": 0}), ("operator_alarm", {"reason": "x"})),
    )
    ids = await store.apply_transition(t)
    rows = await store.notifications_for("a-1")
    assert [(n.contact_id, n.channel, n.tier, n.status, n.attempts) for n in rows] == [
        ("chef", "sms", 0, "pending", 0),
        ("chef", "voice", 0, "pending", 0),
        ("referent", "sms", 1, "pending", 0),
        ("cic", "voice", 1, "pending", 0),
    ]
    assert ids == [rows[2].id, rows[3].id]  # the duplicate decision created nothing
    assert await store.next_timer_due() == due + 60  # the old timer was cancelled
    record = await store.get_alert("a-1")
    assert (record.version, record.escalation) == (2, {"tier": 1})
    assert record.context is not None and record.context["convention_name"] == CONVENTION.name  # kept
    assert [e["kind"] for e in await store.alert_events("a-1")][-2:] == ["AckTimeout", "operator_alarm"]
    with pytest.raises(Conflict):
        await store.apply_transition(replace(t, notifications=(spec("late"),)))  # version 1 is gone
    assert len(await store.notifications_for("a-1")) == 4  # nothing of the refused one
    with pytest.raises(Conflict):
        await store.apply_transition(replace(t, alert_id="a-404"))


@covers("list_alerts", "unstarted_alerts")
async def test_list_alerts_newest_first_with_state_filter_and_limit(store: Any) -> None:
    await seed(store)
    batch = [
        (
            new_alert(f"a-{i}", seq=i, at=NOW + timedelta(seconds=i)),
            window(*range(1, i + 1)),
            first(f"a-{i}") if i % 2 else None,
        )
        for i in range(1, 6)
    ]
    await store.insert_alerts(batch)
    assert [a.id for a in await store.list_alerts()] == ["a-5", "a-4", "a-3", "a-2", "a-1"]
    assert [a.id for a in await store.list_alerts(limit=2)] == ["a-5", "a-4"]
    assert [a.id for a in await store.list_alerts(states=["received"])] == ["a-4", "a-2"]
    assert [a.id for a in await store.list_alerts(states=["notifying", "acknowledged"], limit=1)] == ["a-5"]
    assert [a.id for a in await store.unstarted_alerts()] == ["a-2", "a-4"]


# -- notifications --------------------------------------------------------------------


@covers("claim_notifications", "record_notification", "notification_by_sid", "notifications_for")
async def test_claim_is_once_and_returns_rows_as_they_were(store: Any) -> None:
    await seed(store)
    await store.insert_alerts(
        [(new_alert("a-1"), window(1), first("a-1", spec("chef"), spec("cic", "voice")))]
    )
    rows = await store.notifications_for("a-1")
    only = await store.claim_notifications("inst-1", ids=[rows[1].id], now=1000.0)
    assert [(n.id, n.status, n.attempts) for n in only] == [(rows[1].id, "pending", 0)]
    rest = await store.claim_notifications("inst-2", now=1000.0)
    assert [n.id for n in rest] == [rows[0].id]
    assert await store.claim_notifications("inst-1", now=1000.0) == []
    assert [(n.status, n.attempts) for n in await store.notifications_for("a-1")] == [("sending", 1)] * 2
    await store.record_notification(rows[0].id, status="queued", provider_sid="SM1")
    await store.record_notification(rows[0].id, status="delivered")  # the SID stays
    n = await store.notification_by_sid("SM1")
    assert n is not None and (n.id, n.status, n.provider_sid, n.error) == (
        rows[0].id,
        "delivered",
        "SM1",
        None,
    )
    assert await store.notification_by_sid("SM404") is None
    await store.record_notification(rows[1].id, status="failed", error="21211: invalid number")
    failed = (await store.notifications_for("a-1"))[1]
    assert (failed.status, failed.error, failed.provider_sid) == ("failed", "21211: invalid number", None)


@covers("insert_alerts", "claim_notifications", "abandoned_notifications")
async def test_an_alert_inserted_with_a_lease_comes_back_with_its_notifications_claimed(store: Any) -> None:
    """One transaction stores the alert and claims its first tier: nobody else claims those rows
    while the lease runs; once it has run out they are abandoned like any claimed row."""
    await seed(store)
    said = replace(spec("cic", "voice"), duress=True, actor="Mme Roux")
    outcomes = await store.insert_alerts(
        [
            (new_alert("a-1", seq=1), window(1), first("a-1", spec("chef"), said)),
            (new_alert("a-2", seq=2), window(1, 2), None),
        ],
        lease=Lease("inst-1", until=1030.0),
    )
    stored = await store.notifications_for("a-1")
    assert [o.claimed for o in outcomes] == [
        tuple(replace(n, status="pending", attempts=0) for n in stored),
        (),
    ]
    assert [(n.contact_id, n.channel, n.duress, n.actor) for n in outcomes[0].claimed] == [
        ("chef", "sms", False, None),
        ("cic", "voice", True, "Mme Roux"),
    ]
    assert [(n.status, n.attempts) for n in stored] == [("sending", 1)] * 2
    assert await store.claim_notifications("inst-2", now=1000.0) == []
    assert await store.abandoned_notifications(1010.0, "inst-2") == []
    abandoned = await store.abandoned_notifications(1031.0, "inst-2")
    assert sorted(n.id for n in abandoned) == [n.id for n in stored]
    again = await store.insert_alerts(
        [(new_alert("a-1", seq=1), window(1), first("a-1", spec("chef")))], lease=Lease("inst-2", 2000.0)
    )
    assert [(o.created, o.claimed) for o in again] == [(False, ())]


async def test_a_notification_keeps_what_it_must_say(store: Any) -> None:
    """Duress and actor are decided with the notification and come back with it, claimed or read."""
    await seed(store)
    said = replace(spec("chef", purpose="false_alarm"), duress=True, actor="Mme Roux (opérateur Vigie)")
    await store.insert_alerts([(new_alert("a-1"), window(1), first("a-1", spec("cic", "voice"), said))])
    plain, marked = await store.notifications_for("a-1")
    assert (plain.duress, plain.actor) == (False, None)
    assert (marked.duress, marked.actor) == (True, "Mme Roux (opérateur Vigie)")
    claimed = await store.claim_notifications("inst-1", now=1000.0)
    assert [(n.duress, n.actor) for n in claimed] == [(False, None), (True, "Mme Roux (opérateur Vigie)")]


@covers("record_notifications")
async def test_record_notifications_in_one_go(store: Any) -> None:
    await seed(store)
    opening = first("a-1", spec("chef"), spec("cic", "voice"), spec("ref"))
    await store.insert_alerts([(new_alert("a-1"), window(1), opening)])
    a, b, c = await store.notifications_for("a-1")
    await store.claim_notifications("i1", now=1000.0)
    await store.record_notifications([(a.id, "queued", "SM1", None), (b.id, "failed", None, "21211: x")])
    await store.record_notifications([])
    rows = await store.notifications_for("a-1")
    assert [(n.status, n.provider_sid, n.error) for n in rows] == [
        ("queued", "SM1", None),
        ("failed", None, "21211: x"),
        ("sending", None, None),
    ]
    assert sorted(n.id for n in await store.abandoned_notifications(2000.0, "nobody")) == [c.id]


@covers("record_notifications")
async def test_recorded_statuses_never_go_back_whatever_comes_last(store: Any) -> None:
    """The provider's callbacks may come before the answer to the send, and in any order:
    'queued' (the answer) or 'sent' (a late callback) never undoes 'delivered'; the SID is kept."""
    await seed(store)
    opening = first("a-1", spec("chef"), spec("cic", "voice"), spec("ref"))
    await store.insert_alerts([(new_alert("a-1"), window(1), opening)])
    sms, call, lost = await store.notifications_for("a-1")
    await store.claim_notifications("i1", now=1000.0)
    # The callbacks of the SMS and the call are recorded first, the call's out of order.
    await store.record_notifications([(sms.id, "sent", "SM1", None), (call.id, "completed", "CA1", None)])
    await store.record_notifications([(sms.id, "delivered", "SM1", None), (call.id, "ringing", "CA1", None)])
    # Then the answers to the sends; the third one timed out, but its callback had come.
    await store.record_notifications([(lost.id, "sent", "SM3", None)])
    await store.record_notifications(
        [
            (sms.id, "queued", "SM1", None),
            (call.id, "queued", "CA1", None),
            (lost.id, "unknown", None, "timeout"),
        ]
    )
    rows = await store.notifications_for("a-1")
    assert [(n.status, n.provider_sid, n.error) for n in rows] == [
        ("delivered", "SM1", None),
        ("completed", "CA1", None),
        ("sent", "SM3", None),
    ]
    assert await store.abandoned_notifications(2000.0, "nobody") == []  # none left claimed


@covers("record_notifications")
async def test_the_answer_to_a_send_brings_its_sid_to_a_row_its_callbacks_settled(store: Any) -> None:
    """A callback without the SID stored yet, then the answer: its status stays, its SID is taken.
    Twilio's own 'sending' (no lease) is a provider status: the answer's 'queued' does not undo it."""
    await seed(store)
    await store.insert_alerts([(new_alert("a-1"), window(1), first("a-1", spec("chef"), spec("ref")))])
    a, b = await store.notifications_for("a-1")
    await store.claim_notifications("i1", now=1000.0)
    await store.record_notifications([(a.id, "delivered", None, None), (b.id, "sending", "SM2", None)])
    await store.record_notifications([(a.id, "queued", "SM1", None), (b.id, "queued", "SM2", None)])
    rows = await store.notifications_for("a-1")
    assert [(n.status, n.provider_sid) for n in rows] == [("delivered", "SM1"), ("sending", "SM2")]
    assert await store.notification_by_sid("SM1") is not None
    # In one batch, in order: the last word is the latest status, not the last line.
    await store.record_notifications([(b.id, "delivered", "SM2", None), (b.id, "sent", "SM2", None)])
    assert (await store.notifications_for("a-1"))[1].status == "delivered"
    # Recovery's resets are not outcomes: record_notification still sets what it is told.
    await store.record_notification(b.id, status="unknown", error="dispatcher arrêté pendant l'envoi")
    assert (await store.notifications_for("a-1"))[1].status == "unknown"


@covers("mark_notification", "abandoned_notifications")
async def test_abandoned_rows_are_expired_leases_or_our_own_previous_life(store: Any) -> None:
    await seed(store)
    await store.insert_alerts([(new_alert("a-1"), window(1), first("a-1", spec("a"), spec("b"), spec("c")))])
    a, b, c = await store.notifications_for("a-1")
    await store.claim_notifications("dead", ids=[a.id], lease_s=30, now=1000.0)
    await store.claim_notifications("alive", ids=[b.id, c.id], lease_s=30, now=1000.0)
    await store.mark_notification(
        c.id, status="retry_wait", owner="alive", lease_until=1050.0, error="500: x"
    )
    assert await store.abandoned_notifications(1010.0, "nobody") == []
    # Order unspecified (SqliteStore returns them in index order).
    assert sorted(n.id for n in await store.abandoned_notifications(1031.0, "nobody")) == [a.id, b.id]
    assert sorted((n.id, n.status) for n in await store.abandoned_notifications(1010.0, "alive")) == [
        (b.id, "sending"),
        (c.id, "retry_wait"),
    ]
    await store.mark_notification(c.id, status="sending", owner="alive", lease_until=1060.0, error=None)
    row = (await store.notifications_for("a-1"))[2]
    assert (row.status, row.error) == ("sending", "500: x")  # the error is kept


@covers("notifications_to_reconcile", "settle_notification")
async def test_uncertain_and_stuck_rows_are_listed_and_settled_by_compare_and_set(store: Any) -> None:
    await seed(store)
    await store.insert_alerts([(new_alert("a-1"), window(1), first("a-1", spec("a"), spec("b"), spec("c")))])
    a, b, c = await store.notifications_for("a-1")
    await store.claim_notifications("dead", now=1000.0)
    await store.record_notification(a.id, status="unknown", error="timeout")
    await store.record_notification(b.id, status="queued", provider_sid="SMb")
    await store.record_notification(c.id, status="delivered", provider_sid="SMc")
    later = datetime.now(UTC) + timedelta(minutes=1)
    earlier = datetime.now(UTC) - timedelta(minutes=1)
    # 'unknown' always; 'queued' only once unchanged since the cut-off; 'delivered' never.
    assert [r.notification.id for r in await store.notifications_to_reconcile(stuck_before=earlier)] == [a.id]
    rows = await store.notifications_to_reconcile(stuck_before=later)
    assert sorted(r.notification.id for r in rows) == [a.id, b.id]
    row = next(r for r in rows if r.notification.id == a.id)
    assert row.alert_state == "notifying" and row.created_at <= row.updated_at <= later
    # Compare-and-set: only from the expected status; the SID is kept unless a new one is given.
    assert await store.settle_notification(a.id, expected="unknown", status="queued", provider_sid="SMa")
    assert not await store.settle_notification(a.id, expected="unknown", status="pending")
    assert await store.settle_notification(b.id, expected="queued", status="delivered", error="rapprochée")
    by_id = {n.id: n for n in await store.notifications_for("a-1")}
    assert (by_id[a.id].status, by_id[a.id].provider_sid) == ("queued", "SMa")
    assert (by_id[b.id].status, by_id[b.id].provider_sid, by_id[b.id].error) == (
        "delivered",
        "SMb",
        "rapprochée",
    )
    with pytest.raises(AlreadyExists):  # a SID belongs to one row
        await store.settle_notification(a.id, expected="queued", status="sent", provider_sid="SMc")


@covers("active_alert_for_phone")
async def test_active_alert_for_phone_is_the_latest_open_alert_notified(store: Any) -> None:
    await seed(store)
    chef = spec("chef")
    await store.insert_alerts(
        [
            (new_alert("a-1", seq=1), window(1), first("a-1", chef)),
            (new_alert("a-2", seq=2), window(1, 2), first("a-2", chef)),
        ]
    )
    assert await store.active_alert_for_phone(chef.phone, ["notifying"]) == "a-2"
    assert await store.active_alert_for_phone(chef.phone, ["acknowledged"]) is None
    assert await store.active_alert_for_phone("+33639989999", ["notifying"]) is None


@covers("open_alerts_for_phone")
async def test_open_alerts_for_phone_lists_each_open_alert_once_newest_first(store: Any) -> None:
    await seed(store)
    chef = spec("chef")
    await store.insert_alerts(
        [
            (new_alert("a-1", seq=1), window(1), first("a-1", chef)),
            (new_alert("a-2", seq=2), window(1, 2), first("a-2", chef)),
        ]
    )
    assert await store.open_alerts_for_phone(chef.phone, ["notifying"]) == ["a-2", "a-1"]
    assert await store.open_alerts_for_phone(chef.phone, ["acknowledged"]) == []
    assert await store.open_alerts_for_phone("+33639989999", ["notifying"]) == []


@covers("claim_inbound_message")
async def test_an_inbound_message_id_is_claimed_once(store: Any) -> None:
    at = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    sid = "SM" + "c" * 32
    assert await store.claim_inbound_message(sid, at) is True
    assert await store.claim_inbound_message(sid, at + timedelta(hours=1)) is False
    assert await store.claim_inbound_message("SM" + "d" * 32, at) is True


@covers("take_pin_try")
async def test_pin_tries_are_a_token_bucket_per_device(store: Any) -> None:
    at = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    async def take(device: str, seconds: float) -> bool:
        now = at + timedelta(seconds=seconds)
        return bool(await store.take_pin_try(device, burst=3, refill_per_s=1 / 60, now=now))

    assert [await take("pocket", 0) for _ in range(4)] == [True, True, True, False]
    assert await take("desk", 0) is True  # per device
    assert await take("pocket", 30) is False  # half a try refilled
    assert await take("pocket", -600) is False  # a clock behind the last try adds nothing
    assert await take("pocket", 60) is True and await take("pocket", 61) is False
    # Refilled to 3, no more.
    assert [await take("pocket", 3600) for _ in range(4)] == [True, True, True, False]


@covers("begin_quarantine", "quarantines", "end_quarantine")
async def test_a_quarantine_is_one_episode_until_ended(store: Any) -> None:
    at = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert await store.quarantines() == []
    assert await store.begin_quarantine("flood", at + timedelta(minutes=5)) is True
    assert await store.begin_quarantine("early", at + timedelta(minutes=1)) is True
    # A second instance seeing the same flood: the same episode, its end unchanged.
    assert await store.begin_quarantine("flood", at + timedelta(minutes=9)) is False
    ends = [("early", at + timedelta(minutes=1)), ("flood", at + timedelta(minutes=5))]
    assert await store.quarantines() == ends
    assert await store.end_quarantine("flood") is True
    assert await store.end_quarantine("flood") is False  # one instance releases it
    assert await store.quarantines() == [("early", at + timedelta(minutes=1))]
    assert await store.begin_quarantine("flood", at + timedelta(minutes=20)) is True  # a new episode


@covers("forget_inbound_messages")
async def test_inbound_message_ids_older_than_the_cutoff_are_forgotten(store: Any) -> None:
    at = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    old, recent = "SM" + "e" * 32, "SM" + "f" * 32
    await store.claim_inbound_message(old, at - timedelta(days=400))
    await store.claim_inbound_message(recent, at - timedelta(days=1))
    assert await store.forget_inbound_messages(at - timedelta(days=365)) == 1
    assert await store.forget_inbound_messages(at - timedelta(days=365)) == 0  # idempotent
    assert await store.claim_inbound_message(old, at) is True  # forgotten: a replay would count as new
    assert await store.claim_inbound_message(recent, at) is False  # still remembered


@covers("notifications_in_doubt", "disown_provider_records", "disowned_provider_records")
async def test_rows_in_doubt_and_disowned_provider_records(store: Any) -> None:
    await seed(store)
    chef = spec("chef")
    await store.insert_alerts(
        [(new_alert("a-1"), window(1), first("a-1", chef, spec("chef", round=1), spec("b")))]
    )
    a, b, c = await store.notifications_for("a-1")
    assert await store.notifications_in_doubt("sms", chef.phone) == []  # pending: provably unsent
    await store.claim_notifications("dead", now=1000.0)
    await store.record_notification(a.id, status="unknown", error="timeout")
    assert await store.notifications_in_doubt("sms", chef.phone) == [a.id, b.id]  # 'unknown', 'sending'
    assert await store.notifications_in_doubt("voice", chef.phone) == []
    assert await store.notifications_in_doubt("sms", c.phone) == [c.id]  # per number
    await store.record_notification(b.id, status="queued", provider_sid="SMb")
    assert await store.notifications_in_doubt("sms", chef.phone) == [a.id]  # a SID: no longer in doubt

    at = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert await store.disowned_provider_records([]) == set()
    await store.disown_provider_records(["SMx", "SMy"], at)
    await store.disown_provider_records(["SMx"], at)  # twice is harmless
    assert await store.disowned_provider_records(["SMx", "SMy", "SMz"]) == {"SMx", "SMy"}


# -- timers -------------------------------------------------------------------------


@covers("claim_due_timers", "delete_timer", "next_timer_due", "alert_timers")
async def test_timers_are_leased_and_taken_over_after_the_lease(store: Any) -> None:
    await seed(store)
    timers = (
        TimerSpec("ack_timeout", 1000.0, {"tier": 0, "round": 0}),
        TimerSpec("ack_timeout", 1005.0, {"tier": 0, "round": 1}),
    )
    await store.insert_alerts([(new_alert("a-1"), window(1), first("a-1", timers=timers))])
    assert await store.claim_due_timers("i1", now=999.0) == []
    claimed = await store.claim_due_timers("i1", now=1001.0, lease_s=30)
    assert [(t.alert_id, t.kind, t.payload) for t in claimed] == [
        ("a-1", "ack_timeout", {"tier": 0, "round": 0})
    ]
    assert claimed[0].due_at == datetime.fromtimestamp(1000.0, UTC)
    assert [t.payload["round"] for t in await store.claim_due_timers("i2", now=1010.0)] == [1]
    assert await store.claim_due_timers("i2", now=1030.0) == []  # i1's lease runs until 1031
    taken = await store.claim_due_timers("i2", now=1031.5)
    assert [t.id for t in taken] == [claimed[0].id]
    await store.delete_timer(claimed[0].id)
    assert await store.next_timer_due() == 1005.0
    await store.delete_timer(taken[0].id + 1000)  # unknown: nothing happens
    assert await store.next_timer_due() == 1005.0
    # The console's countdown: this alert's timers only, leased or not, earliest first.
    await store.insert_alerts([(new_alert("a-2", seq=2), window(1, 2), first("a-2", timers=(timers[0],)))])
    mine = await store.alert_timers("a-1")
    assert [(t.alert_id, t.due_at, t.payload) for t in mine] == [
        ("a-1", datetime.fromtimestamp(1005.0, UTC), {"tier": 0, "round": 1})
    ]
    assert await store.alert_timers("nobody") == []


# -- rejections, health, operator events -----------------------------------------------


@covers("record_rejections", "rejection_counts", "add_operator_event", "operator_events")
async def test_audit_trails(store: Any) -> None:
    await seed(store, "btn-1", "btn-2")
    await store.record_rejections(
        [
            ("btn-1", "vigie/v1/dev/btn-1/up/alert", "replay", "seq 3"),
            (None, "bad/topic", "topic_mismatch", "x" * 600),
        ]
    )
    await store.record_rejections([("btn-2", "vigie/v1/dev/btn-2/up/alert", "replay", "seq 4")])
    assert await store.rejection_counts() == {"replay": 2, "topic_mismatch": 1}
    first_id = await store.add_operator_event("alarm", "envoi incertain", alert_id=None, device_id="btn-1")
    second_id = await store.add_operator_event("offline", "btn-2 silencieux", device_id="btn-2")
    assert second_id == first_id + 1
    events = await store.operator_events(limit=1)
    assert [(e["id"], e["kind"], e["device_id"], e["message"], e["handled_by"]) for e in events] == [
        (second_id, "offline", "btn-2", "btn-2 silencieux", None)
    ]
    assert datetime.fromisoformat(events[0]["at"]).tzinfo is not None
    assert len(await store.operator_events()) == 2


@covers("add_operator_event", "open_system_alarms")
async def test_a_system_alarm_is_open_while_its_latest_event_raised_it(store: Any) -> None:
    assert await store.open_system_alarms() == {}
    await store.add_operator_event("alarm", "fournisseur injoignable", topic="provider")
    await store.add_operator_event("alarm", "aucune instance ne prend les alertes", topic="alert_takers")
    await store.add_operator_event("alarm", "une alerte sans suite", alert_id=None)  # no topic
    assert await store.open_system_alarms() == {
        "provider": "fournisseur injoignable",
        "alert_takers": "aucune instance ne prend les alertes",
    }
    await store.add_operator_event("alert_takers", "alertes de nouveau reçues", topic="alert_takers")
    assert await store.open_system_alarms() == {"provider": "fournisseur injoignable"}
    await store.add_operator_event("provider", "fournisseur de nouveau joignable", topic="provider")
    await store.add_operator_event("alarm", "fournisseur injoignable (2)", topic="provider")
    assert await store.open_system_alarms() == {"provider": "fournisseur injoignable (2)"}


@covers(
    "add_operator_event", "operator_events", "handle_operator_event", "operator_event", "open_scoped_alarms"
)
async def test_an_event_scoped_to_conventions_is_handled_once(store: Any) -> None:
    """A home visit's alarm (no alert, no device) names the conventions that see it, and is
    marked handled by the first operator only."""
    scoped = await store.add_operator_event(
        "alarm", "visite sans nouvelles", scope=["Convention SSJ Hérault", "Convention SSJ Gard"]
    )
    system = await store.add_operator_event("alarm", "aucune instance ne prend les alertes")
    by_id = {e["id"]: e for e in await store.operator_events()}
    assert by_id[scoped]["scope"] == ["Convention SSJ Hérault", "Convention SSJ Gard"]
    assert by_id[system]["scope"] is None
    assert [e["id"] for e in await store.open_scoped_alarms()] == [scoped], "system events are not scoped"
    one = await store.operator_event(scoped)
    assert one is not None
    assert (one["message"], one["scope"]) == ("visite sans nouvelles", by_id[scoped]["scope"])
    assert await store.operator_event(system + 100) is None
    assert await store.handle_operator_event(scoped, "op-herault") is True
    assert await store.handle_operator_event(scoped, "op-gard") is False, "already handled"
    assert await store.handle_operator_event(system + 100, "op-gard") is False, "unknown"
    by_id = {e["id"]: e for e in await store.operator_events()}
    assert (by_id[scoped]["handled_by"], by_id[system]["handled_by"]) == ("op-herault", None)
    assert await store.open_scoped_alarms() == [], "handled: off the consoles"


def _at(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def _observation(device_id: str, seen: float | None, status_at: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "last_seen_at": None if seen is None else _at(seen),
        # The heartbeat's sequence number: the device numbers them in time order.
        "hb_seq": extra.pop("hb_seq", None if seen is None else int(seen * 1000)),
        "status": extra.pop("status", "online"),
        "status_at": None if status_at is None else _at(status_at),
        "battery_pct": extra.pop("battery_pct", 80),
        "signal_dbm": -70,
        "firmware": "1.2.0",
        "uptime_s": 3600,
        "merged_by": extra.pop("merged_by", "dispatcher-1"),
    }


@covers("merge_device_health", "device_health", "record_health_changes")
async def test_health_observations_merge_whatever_the_order(store: Any) -> None:
    """Two instances' snapshots, written out of order, end in the newest of each."""
    await seed(store, "btn-1", "btn-2")
    t = 1_700_000_000.25
    await store.merge_device_health([_observation("btn-2", t + 10, t + 10, battery_pct=40)])
    # An older heartbeat (another instance, flushed late: refused) and a newer Last Will.
    refused = await store.merge_device_health(
        [
            _observation("btn-2", t, t, battery_pct=90),
            _observation("btn-1", None, t + 20, status="offline", battery_pct=None),
        ]
    )
    assert [(r["device_id"], r["hb_seq"], r["battery_pct"]) for r in refused] == [
        ("btn-2", int((t + 10) * 1000), 40)
    ]
    await store.merge_device_health([_observation("btn-2", None, t + 15, status="offline", battery_pct=None)])
    rows = {r["device_id"]: r for r in await store.device_health()}
    assert (rows["btn-2"]["last_seen_at"], rows["btn-2"]["battery_pct"]) == (_at(t + 10), 40)
    assert (rows["btn-2"]["status"], rows["btn-2"]["status_at"]) == ("offline", _at(t + 15))
    assert (rows["btn-1"]["status"], rows["btn-1"]["last_seen_at"]) == ("offline", None)
    assert rows["btn-1"]["flags"] == "[]"

    # Flags are the leader's: merging observations leaves them alone.
    [event_id] = await store.record_health_changes(
        [FlagChange("btn-2", '["offline"]', "offline", "balise btn-2 hors ligne")]
    )
    await store.merge_device_health([_observation("btn-2", t + 30, t + 30)])
    rows = {r["device_id"]: r for r in await store.device_health()}
    assert rows["btn-2"]["flags"] == '["offline"]'
    assert (rows["btn-2"]["status"], rows["btn-2"]["last_seen_at"]) == ("online", _at(t + 30))
    assert [(e["id"], e["kind"]) for e in await store.operator_events()] == [(event_id, "offline")]

    # Incremental reads: only what was merged after a given rev.
    last_rev = max(r["rev"] for r in rows.values())
    await store.merge_device_health([_observation("btn-1", t + 40, t + 40)])
    assert [r["device_id"] for r in await store.device_health(after_rev=last_rev)] == ["btn-1"]
    assert await store.device_health(after_rev=last_rev + 1) == []


@covers("device_health_of", "flagged_devices")
async def test_a_page_of_the_devices_table_reads_its_devices_and_the_flagged_ones(store: Any) -> None:
    """The devices' table of a national fleet reads the flagged devices, then one page of rows:
    the same rows as the full read, for these devices only."""
    await seed(store, "btn-1", "btn-2", "btn-3")
    t = 1_700_000_000.25
    await store.merge_device_health([_observation(d, t, t) for d in ("btn-3", "btn-1", "btn-2")])
    assert await store.flagged_devices() == []
    await store.record_health_changes(
        [
            FlagChange("btn-3", '["offline"]', "offline", "balise btn-3 hors ligne"),
            FlagChange("btn-1", '["low_battery"]', "low_battery", "batterie faible (9 %) sur btn-1"),
        ]
    )
    assert await store.flagged_devices() == ["btn-1", "btn-3"]
    every = {r["device_id"]: r for r in await store.device_health()}
    page = await store.device_health_of(["btn-3", "btn-2", "btn-404"])
    assert page == [every["btn-2"], every["btn-3"]]
    assert await store.device_health_of([]) == []
    await store.record_health_changes([FlagChange("btn-3", "[]", "offline_cleared", "balise btn-3 revenue")])
    assert await store.flagged_devices() == ["btn-1"]


@covers("record_health_changes", "operator_events")
async def test_a_pass_flag_changes_are_recorded_together_with_their_events_in_order(store: Any) -> None:
    """A network outage silences many devices at once: one write records them all, each with its event."""
    await seed(store, "btn-1", "btn-2")
    t = 1_700_000_000.25
    await store.merge_device_health([_observation("btn-1", t, t), _observation("btn-2", t, t)])
    assert await store.record_health_changes([]) == []
    ids = await store.record_health_changes(
        [
            FlagChange("btn-1", '["offline"]', "offline", "balise btn-1 hors ligne"),
            FlagChange("btn-2", '["low_battery"]', "low_battery", "batterie faible (9 %) sur btn-2"),
            FlagChange("btn-2", '["low_battery", "offline"]', "offline", "balise btn-2 hors ligne"),
        ]
    )
    events = {e["id"]: (e["device_id"], e["kind"]) for e in await store.operator_events()}
    assert [events[i] for i in ids] == [("btn-1", "offline"), ("btn-2", "low_battery"), ("btn-2", "offline")]
    assert ids == sorted(ids)
    flags = {r["device_id"]: r["flags"] for r in await store.device_health()}
    assert flags == {"btn-1": '["offline"]', "btn-2": '["low_battery", "offline"]'}  # the last one given


@covers("merge_device_health")
async def test_a_heartbeat_not_above_the_stored_sequence_number_is_refused(store: Any) -> None:
    """A heartbeat replayed to another instance: same sequence number, later receipt, other readings."""
    await seed(store, "btn-1")
    t = 1_700_000_000.5
    assert await store.merge_device_health([_observation("btn-1", t, t, hb_seq=41, battery_pct=70)]) == []
    replayed = _observation("btn-1", t + 100, t + 100, hb_seq=41, battery_pct=5)
    refused = await store.merge_device_health([replayed])
    assert [(r["device_id"], r["hb_seq"], r["last_seen_at"]) for r in refused] == [("btn-1", 41, _at(t))]
    row = (await store.device_health())[0]
    assert (row["hb_seq"], row["last_seen_at"], row["battery_pct"]) == (41, _at(t), 70)
    assert row["status_at"] == _at(t + 100)  # the status part of a row is merged on its own
    # The next heartbeat is taken, and a status without a heartbeat refuses nothing.
    assert await store.merge_device_health([_observation("btn-1", t + 130, t + 130, hb_seq=42)]) == []
    assert await store.merge_device_health([_observation("btn-1", None, t + 140, status="offline")]) == []
    row = (await store.device_health())[0]
    assert (row["hb_seq"], row["last_seen_at"], row["status"]) == (42, _at(t + 130), "offline")


@covers("merge_device_health", "device_health")
async def test_an_instance_reads_back_only_the_rows_that_are_not_wholly_its_own(store: Any) -> None:
    await seed(store, "btn-1", "btn-2", "btn-3")
    t = 1_700_000_000.5
    await store.merge_device_health(
        [
            _observation("btn-1", t, t, merged_by="a"),
            _observation("btn-2", t, t, merged_by="a"),
            _observation("btn-3", t, t, merged_by="b"),
        ]
    )
    # b: a later heartbeat of btn-2 (wholly b's now); a's late status-only row for btn-1 (mixed).
    await store.merge_device_health([_observation("btn-2", t + 30, t + 30, merged_by="b")])
    await store.merge_device_health([_observation("btn-1", None, t - 5, status="offline", merged_by="b")])
    assert [r["device_id"] for r in await store.device_health(not_by="a")] == ["btn-1", "btn-2", "btn-3"]
    assert [r["device_id"] for r in await store.device_health(not_by="b")] == ["btn-1"]
    assert len(await store.device_health()) == 3


@covers("device_last_seen")
async def test_last_seen_times_of_just_the_devices_asked_for(store: Any) -> None:
    await seed(store, "btn-1", "btn-2", "btn-3", "btn-4")
    t = 1_700_000_000.25
    await store.merge_device_health(
        [
            _observation("btn-1", t, t),
            _observation("btn-2", t + 30, t + 30),
            _observation("btn-4", t + 60, t + 60),
            # btn-3: a Last Will only, never a heartbeat: never heard.
            _observation("btn-3", None, t + 40, status="offline"),
        ]
    )
    seen = await store.device_last_seen(["btn-1", "btn-2", "btn-3", "no-such-device"])
    assert seen == {
        "btn-1": datetime.fromtimestamp(t, UTC),
        "btn-2": datetime.fromtimestamp(t + 30, UTC),
    }, "btn-4 was not asked for; btn-3 and the unknown id were never heard"
    assert all(at.utcoffset() == timedelta(0) for at in seen.values())
    await store.merge_device_health([_observation("btn-1", t + 90, t + 90)])
    assert await store.device_last_seen(["btn-1"]) == {"btn-1": datetime.fromtimestamp(t + 90, UTC)}
    assert await store.device_last_seen([]) == {}


@covers("admit_sequence")
async def test_a_sequence_number_is_admitted_once_across_callers(store: Any) -> None:
    await seed(store, "btn-1")
    await store.insert_alerts([(new_alert("a-1", seq=10), window(10), None)])
    assert await store.admit_sequence("btn-1", 12)
    assert not await store.admit_sequence("btn-1", 12)  # a cancel replayed to another instance
    assert not await store.admit_sequence("btn-1", 10)  # the alert's number
    assert await store.admit_sequence("btn-1", 11)  # below the highest, never used
    assert not await store.admit_sequence("ghost", 1)
    assert (await store.replay_windows())["btn-1"] == window(10, 11, 12)
    # A window saved later by an instance that admitted only some of them forgets none.
    await store.save_replay_windows({"btn-1": window(10, 12)})
    assert (await store.replay_windows())["btn-1"].is_fresh(11) is False


@covers("hold_lease", "release_lease")
async def test_one_lease_holder_at_a_time(store: Any) -> None:
    assert await store.hold_lease("health", "a", now=1000.0, lease_s=5.0)
    assert not await store.hold_lease("health", "b", now=1002.0, lease_s=5.0)
    assert await store.hold_lease("health", "a", now=1004.0, lease_s=5.0)  # renewed until 1009
    assert not await store.hold_lease("health", "b", now=1008.0, lease_s=5.0)
    assert await store.hold_lease("health", "b", now=1010.0, lease_s=5.0)  # a's ran out
    assert not await store.hold_lease("health", "a", now=1011.0, lease_s=5.0)
    await store.release_lease("health", "a")  # not a's any more: nothing happens
    assert not await store.hold_lease("health", "a", now=1012.0, lease_s=5.0)
    await store.release_lease("health", "b")
    assert await store.hold_lease("health", "a", now=1012.0, lease_s=5.0)
    assert await store.hold_lease("other", "b", now=1012.0, lease_s=5.0)  # leases are independent


@covers("lease_holders")
async def test_lease_holders_are_the_instances_whose_lease_under_a_prefix_runs(store: Any) -> None:
    await store.hold_lease("alert-taker/a", "a", now=1000.0, lease_s=10.0)
    await store.hold_lease("alert-taker/b_%", "b_%", now=1004.0, lease_s=10.0)
    await store.hold_lease("alert-takerX", "x", now=1004.0, lease_s=10.0)  # not under the prefix
    await store.hold_lease("alert-taker-/bz", "bz", now=1004.0, lease_s=10.0)  # nor this
    await store.hold_lease("health", "h", now=1004.0, lease_s=10.0)
    assert await store.lease_holders("alert-taker/", now=1005.0) == ["a", "b_%"]
    assert await store.lease_holders("alert-taker/", now=1012.0) == ["b_%"]  # a's ran out at 1010
    # The prefix is text, not a LIKE pattern: "_" does not stand for the "-".
    assert await store.lease_holders("alert-taker_/", now=1005.0) == []
    await store.release_lease("alert-taker/b_%", "b_%")
    assert await store.lease_holders("alert-taker/", now=1005.0) == ["a"]


# -- access control, audit, notes, search, retention ------------------------------------


@covers("add_user", "get_user", "get_user_by_name", "list_users", "update_user")
async def test_users(store: Any) -> None:
    op = await store.add_user(NewUser("zoe", "Zoé Op", "$argon2id$x", "operator", conventions=("ssj-34",)))
    admin = await store.add_user(NewUser("anne", "Anne Admin", "$argon2id$y", "admin"))
    assert (op.username, op.role, op.conventions, op.disabled) == ("zoe", "operator", ("ssj-34",), False)
    assert op.created_at.tzinfo is not None
    with pytest.raises(AlreadyExists):
        await store.add_user(NewUser("zoe", "Other", "$argon2id$z", "admin"))
    with pytest.raises(AlreadyExists):  # CHECK constraint on the role
        await store.add_user(NewUser("bad", "Bad", "h", "superuser"))
    assert await store.get_user(op.id) == op
    assert await store.get_user_by_name("nobody") is None
    assert [u.username for u in await store.list_users()] == ["anne", "zoe"]
    await store.update_user(replace(op, disabled=True, conventions=(), display_name="Zoé"))
    assert await store.get_user_by_name("zoe") == replace(
        op, disabled=True, conventions=(), display_name="Zoé"
    )
    with pytest.raises(NotFound):
        await store.update_user(replace(admin, id=admin.id + 100))
    with pytest.raises(NotFound):
        await store.get_user(admin.id + 100)


@covers("users_page")
async def test_a_page_of_accounts_holds_every_word_typed(store: Any) -> None:
    for username, name, practitioner in (
        ("zoe", "Zoé Opératrice", None),
        ("anne", "Anne Admin", None),
        ("claire.fabre", "Claire Fabre", "dr-claire-fabre"),
        ("c.fabregue", "Claire Fabrègue", "inf-fabregue"),
        ("odd_100%", "Compte étrange", None),
    ):
        role = "practitioner" if practitioner else "operator"
        await store.add_user(NewUser(username, name, "h", role, practitioner_id=practitioner))
    names = lambda page: ([u.username for u in page[0]], page[1])  # noqa: E731
    assert names(await store.users_page((), 2)) == (["anne", "c.fabregue"], 5)
    assert names(await store.users_page(("FABR",), 10)) == (["c.fabregue", "claire.fabre"], 2)
    # "dr-" is in her practitioner id only
    assert names(await store.users_page(("claire", "dr-"), 10)) == (["claire.fabre"], 1)
    assert names(await store.users_page(("zoé",), 10)) == (["zoe"], 1)
    assert names(await store.users_page(("100%",), 10)) == (["odd_100%"], 1)
    assert names(await store.users_page(("_",), 10)) == (["odd_100%"], 1), "_ is a character, not a wildcard"
    assert names(await store.users_page(("%",), 10)) == (["odd_100%"], 1)
    assert names(await store.users_page(("nobody",), 10)) == ([], 0)


@covers("create_session", "session_user", "delete_session", "delete_user_sessions")
async def test_sessions(store: Any) -> None:
    user = await store.add_user(NewUser("zoe", "Zoé", "h", "operator"))
    await store.create_session("t1", user.id, NOW + timedelta(hours=12))
    await store.create_session("t2", user.id, NOW + timedelta(hours=1))
    assert await store.session_user("t1", NOW) == user
    assert await store.session_user("t2", NOW + timedelta(hours=1)) is None  # expired
    assert await store.session_user("t3", NOW) is None
    await store.delete_session("t1")
    assert await store.session_user("t1", NOW) is None
    await store.create_session("t4", user.id, NOW + timedelta(hours=1))
    await store.update_user(replace(user, disabled=True))
    assert await store.session_user("t4", NOW) is None  # a disabled user has no session
    assert await store.delete_user_sessions(user.id) == 2
    assert await store.delete_user_sessions(user.id) == 0


@covers("record_login_failure", "count_login_failures", "clear_login_failures")
async def test_login_failures(store: Any) -> None:
    for minutes in (1, 2, 10):
        await store.record_login_failure("zoe", "192.0.2.1", NOW - timedelta(minutes=minutes))
    await store.record_login_failure("zoe", "192.0.2.2", NOW)
    assert await store.count_login_failures("zoe", "192.0.2.1", NOW - timedelta(minutes=5)) == 2
    assert await store.count_login_failures("zoe", "192.0.2.1", NOW - timedelta(minutes=10)) == 3
    await store.clear_login_failures("zoe", "192.0.2.1")
    assert await store.count_login_failures("zoe", "192.0.2.1", NOW - timedelta(days=1)) == 0
    assert await store.count_login_failures("zoe", "192.0.2.2", NOW - timedelta(days=1)) == 1


@covers("append_audit", "list_audit")
async def test_audit_log(store: Any) -> None:
    ids = [
        await store.append_audit(
            action="user.create",
            user_id=1,
            username="anne",
            target_kind="user",
            target_id="2",
            ip="192.0.2.1",
            detail={"role": "operator"},
        ),
        await store.append_audit(
            action="alert.location.read", user_id=2, username="zoe", target_kind="alert", target_id="a-1"
        ),
        await store.append_audit(action="alert.location.read", user_id=None, username=None),
    ]
    assert ids == sorted(ids) and len(set(ids)) == 3
    entries = await store.list_audit()
    assert [e.id for e in entries] == ids[::-1]
    assert entries[2].detail == {"role": "operator"} and entries[1].detail == {}
    assert entries[2].at.tzinfo is not None and entries[2].ip == "192.0.2.1"
    assert [e.id for e in await store.list_audit(action="alert.location.read")] == [ids[2], ids[1]]
    assert [e.id for e in await store.list_audit(target_kind="alert", target_id="a-1")] == [ids[1]]
    assert [e.id for e in await store.list_audit(user_id=1)] == [ids[0]]
    assert [e.id for e in await store.list_audit(before_id=ids[2], limit=1)] == [ids[1]]
    at = entries[0].at  # a date range: since inclusive, until exclusive
    assert len(await store.list_audit(since=at - timedelta(minutes=1), until=at + timedelta(minutes=1))) == 3
    assert await store.list_audit(since=at + timedelta(minutes=1)) == []
    assert await store.list_audit(until=entries[2].at) == []


@covers("search_alerts")
async def test_search_alerts(store: Any) -> None:
    await seed(store, "btn-1", "btn-2")
    await store.insert_alerts(
        [
            (new_alert("a-1", seq=1, at=NOW), window(1), first("a-1")),
            (new_alert("a-2", seq=2, at=NOW + timedelta(minutes=1)), window(1, 2), None),
            (
                new_alert("a-3", device_id="btn-2", kind="test", at=NOW + timedelta(minutes=2)),
                window(1),
                first("a-3"),
            ),
        ]
    )

    async def ids(**query: Any) -> list[str]:
        return [a.id for a in await store.search_alerts(AlertQuery(**query))]

    assert await ids() == ["a-3", "a-2", "a-1"]
    assert await ids(states=("notifying",)) == ["a-3", "a-1"]
    assert await ids(kinds=("test",)) == ["a-3"]
    assert await ids(convention_names=(CONVENTION.name,)) == ["a-3", "a-1"]
    assert await ids(convention_names=()) == []
    assert await ids(convention_names=("other",)) == []
    assert await ids(practitioner_id=PRACTITIONER.id, device_id="btn-1") == ["a-1"]
    hers = await ids(practitioner_id=PRACTITIONER.id)
    assert "a-1" in hers and await ids(practitioner_ids=(PRACTITIONER.id, "dr-autre")) == hers
    assert await ids(practitioner_ids=("dr-autre",)) == []
    assert await ids(practitioner_ids=()) == []
    assert await ids(ids=("a-1", "a-3", "a-9")) == ["a-3", "a-1"]
    assert await ids(ids=()) == []
    assert await ids(since=NOW + timedelta(minutes=1)) == ["a-3", "a-2"]
    assert await ids(until=NOW + timedelta(minutes=1)) == ["a-1"]
    assert await ids(limit=1) == ["a-3"]


@covers("alert_pages")
async def test_alert_pages_give_the_searched_alerts_a_page_at_a_time(store: Any) -> None:
    """A console's snapshot in a surge reads thousands of alerts: page by page, the same ones
    as one search, in the same order, with the event loop free to run between pages."""
    await seed(store)
    await store.insert_alerts(
        [
            (new_alert(f"a-{i:03}", seq=i, at=NOW + timedelta(seconds=i)), window(i), first(f"a-{i:03}"))
            if i % 3
            else (new_alert(f"a-{i:03}", seq=i, at=NOW + timedelta(seconds=i)), window(i), None)
            for i in range(1, 261)
        ]
    )
    ticks = 0

    async def ticking() -> None:  # another task of the loop: an alert arriving, say
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    for query in (AlertQuery(limit=1000), AlertQuery(states=("notifying",), limit=150)):
        ticker = asyncio.create_task(ticking())
        await asyncio.sleep(0)
        pages = []
        async with contextlib.aclosing(store.alert_pages(query)) as reading:
            async for page in reading:
                pages.append(list(page))
        ticker.cancel()
        assert [r for page in pages for r in page] == await store.search_alerts(query)
        assert len(pages) > 1 and ticks > len(pages), "the loop ran between the pages"
    assert len([r async for page in store.alert_pages(AlertQuery(convention_names=())) for r in page]) == 0

    # A reader that stops early (the console went away) leaves the store as it was.
    async with contextlib.aclosing(store.alert_pages(AlertQuery(limit=1000))) as reading:
        async for page in reading:
            assert next(iter(page)).id == "a-260"
            break
    await store.insert_alerts([(new_alert("a-261", seq=261, at=NOW + timedelta(hours=1)), window(261), None)])
    assert (await store.search_alerts(AlertQuery(limit=1)))[0].id == "a-261"


@covers("alert_heads")
async def test_alert_heads_name_the_searched_alerts_versions_in_the_same_order(store: Any) -> None:
    """A console's snapshot asks which version of each alert the store holds, to take the
    summaries it holds in memory: the same alerts as a search, in the same order, each with
    the version and time its record has."""
    await seed(store)
    await store.insert_alerts(
        [
            (new_alert(f"a-{i}", seq=i, at=NOW + timedelta(seconds=i)), window(i), first(f"a-{i}"))
            for i in (1, 2, 3)
        ]
    )
    record = await store.get_alert("a-2")
    await store.apply_transition(
        Transition(
            alert_id="a-2", expected_version=record.version, state="acknowledged", escalation={"tier": 1}
        )
    )
    for query in (
        AlertQuery(),
        AlertQuery(states=("notifying",)),
        AlertQuery(ids=("a-2", "a-3")),
        AlertQuery(limit=1),
        AlertQuery(convention_names=()),
    ):
        heads = await store.alert_heads(query)
        records = await store.search_alerts(query)
        assert heads == [AlertHead(r.id, r.version, r.received_at) for r in records]
    assert [h.version for h in await store.alert_heads(AlertQuery(ids=("a-2",)))] == [record.version + 1]


@covers("alert_facts")
async def test_alert_facts_are_what_the_records_and_their_first_acknowledgement_say(store: Any) -> None:
    """The statistics read only the facts they count, by the database from the documents: they
    must be exactly what the records say (a wrong count misleads a territory's review), for
    every shape a context takes: routed, fallback-routed with a territory, no place, duress."""
    await seed(store)
    contexts: dict[str, dict[str, Any] | None] = {
        "a-1": {
            "convention_name": CONVENTION.name,
            "location": {"source": "site", "description": "45 Rue"},
            "site": {"kind": "cabinet"},
            "practitioner": {"id": PRACTITIONER.id},
        },
        "a-2": {"operator_scope": ["SSJ Gard", "SSJ Hérault"], "location": {"source": "gnss"}},
        "a-3": None,
    }
    escalations = {"a-1": {"tier": 0}, "a-2": {"tier": 0, "duress": True}, "a-3": {"duress": False}}
    kinds = {"a-1": "alert", "a-2": "alert", "a-3": "drill"}
    await store.insert_alerts(
        [
            (
                new_alert(f"a-{i}", seq=i, at=NOW + timedelta(seconds=i), kind=kinds[f"a-{i}"]),
                window(i),
                Transition(
                    alert_id=f"a-{i}",
                    expected_version=0,
                    state="notifying",
                    escalation=escalations[f"a-{i}"],
                    context=contexts[f"a-{i}"],
                ),
            )
            for i in (1, 2, 3)
        ]
    )
    for state in ("acknowledged", "resolved"):  # two acknowledgements: the first one counts
        record = await store.get_alert("a-2")
        await store.apply_transition(
            Transition(
                alert_id="a-2",
                expected_version=record.version,
                state=state,
                escalation=escalations["a-2"],
                events=(("Acknowledged", {"by": "Brigadier Roux"}),),
            )
        )
    times = await store.alert_event_times(["a-1", "a-2", "a-3"])
    for query in (AlertQuery(), AlertQuery(kinds=("alert",)), AlertQuery(ids=("a-3",)), AlertQuery(limit=1)):
        expected = [
            AlertFacts(
                id=r.id,
                kind=r.kind,
                received_at=r.received_at,
                state=r.state,
                convention_name=(r.context or {}).get("convention_name"),
                operator_scope=tuple((r.context or {}).get("operator_scope", ())),
                practitioner_id=((r.context or {}).get("practitioner") or {}).get("id"),
                location_source=((r.context or {}).get("location") or {}).get("source"),
                site_kind=((r.context or {}).get("site") or {}).get("kind"),
                duress=bool((r.escalation or {}).get("duress")),
                acknowledged_at=times[r.id].get("Acknowledged"),
            )
            for r in await store.search_alerts(query)
        ]
        assert await store.alert_facts(query) == expected
    a1, a2, a3 = sorted(await store.alert_facts(AlertQuery()), key=lambda f: f.id)
    assert (a1.site_kind, a1.practitioner_id, a1.acknowledged_at) == ("cabinet", PRACTITIONER.id, None)
    assert a2.duress and a2.operator_scope == ("SSJ Gard", "SSJ Hérault") and a2.state == "resolved"
    assert a2.acknowledged_at is not None and a2.acknowledged_at == times["a-2"]["Acknowledged"]
    assert (a3.kind, a3.duress, a3.convention_name, a3.location_source) == ("drill", False, None, None)


@covers("add_note", "notes_for", "notification_times", "alert_event_times")
async def test_notes_and_timelines(store: Any) -> None:
    await seed(store)
    await store.insert_alerts([(new_alert("a-1"), window(1), first("a-1", spec("chef")))])
    note = await store.add_note("a-1", user_id=None, author="Dr Fabre", text="Patient agité, parti.")
    assert await store.notes_for("a-1") == [note]
    assert await store.notes_for("a-2") == []
    with pytest.raises(NotFound):
        await store.add_note("a-2", user_id=1, author="x", text="y")
    (n,) = await store.notifications_for("a-1")
    before = await store.notification_times("a-1")
    await store.record_notification(n.id, status="queued", provider_sid="SM1")
    created, updated = (await store.notification_times("a-1"))[n.id]
    assert created == before[n.id][0] and updated >= created and created.tzinfo is not None
    times = await store.alert_event_times(["a-1", "a-404"])
    assert set(times) == {"a-1", "a-404"} and times["a-404"] == {}
    assert set(times["a-1"]) == {"received", "located"}
    assert times["a-1"]["received"] <= times["a-1"]["located"]


@covers("purge_locations")
async def test_purge_locations(store: Any) -> None:
    await seed(store)
    old, recent = NOW - timedelta(days=100), NOW - timedelta(days=1)
    old_fix = FIX | {"fix_ts": int(old.timestamp() * 1000)}
    await store.insert_alerts(
        [
            (new_alert("a-old", seq=1, at=old, fix=old_fix), window(1), first("a-old")),
            (new_alert("a-new", seq=2, at=recent), window(1, 2), first("a-new")),
        ]
    )
    visit = HomeVisit(
        id="v-old",
        practitioner_id=PRACTITIONER.id,
        address=SITE.address,
        starts_at=old,
        ends_at=old + timedelta(hours=1),
    )
    await store.upsert_visit(visit)
    user = await store.add_user(NewUser("zoe", "Zoé", "h", "operator"))
    await store.create_session("gone", user.id, NOW - timedelta(minutes=1))
    await store.create_session("live", user.id, NOW + timedelta(hours=1))
    await store.record_login_failure("zoe", "192.0.2.1", NOW - timedelta(days=2))
    cutoff = NOW - timedelta(days=90)

    report = await store.purge_locations(cutoff, now=NOW)
    assert (report.alerts, report.visits, report.last_fixes, report.sessions, report.login_failures) == (
        1,
        1,
        1,
        1,
        1,
    )
    purged = await store.get_alert("a-old")
    assert purged.fix is None and purged.context is not None
    assert purged.context["location"] == {
        "source": "site",
        "description": PURGED_LOCATION,
        "stale": False,
        "insee": "34172",
        "departement": None,
    }
    assert purged.context["convention_name"] == CONVENTION.name
    located = [e for e in await store.alert_events("a-old") if e["kind"] == "located"]
    assert located[0]["detail"] == {"source": "site", "description": PURGED_LOCATION}
    kept = await store.get_alert("a-new")
    assert kept.context is not None and kept.context["location"]["description"] == "45 Rue"
    assert await store.last_fix("btn-1") is None
    assert await store.list_visits() == []
    assert await store.session_user("live", NOW) == user
    again = await store.purge_locations(cutoff, now=NOW)
    assert (again.alerts, again.visits, again.last_fixes, again.sessions, again.login_failures) == (0,) * 5
