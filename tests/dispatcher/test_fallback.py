"""The fallback chain as a property: whatever the directory, the location and the hour,
the plan's first tier reaches at least one contact on duty (or the deployment contact)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.directory.fallback import DEPLOYMENT_CONTACT_ID, Fallback, deployment_recipient, route
from dispatcher.domain import (
    Channel,
    Contact,
    Convention,
    EscalationTier,
    GeoPoint,
    Hours,
    LocationSource,
    ResolvedLocation,
    ResponderUnit,
    TierTarget,
    UnitKind,
    Zone,
)

DEPLOYMENT = deployment_recipient("Permanence Vigie", "+33465710190", ["sms", "voice"])
PARIS = ZoneInfo("Europe/Paris")
DEPARTEMENTS = ("34", "30", "2A")
# A few communes per département, so that generated units, conventions and locations meet.
COMMUNES = {dep: [f"{dep}{n:03d}" for n in (1, 2, 3, 116, 172)] for dep in DEPARTEMENTS}
ALL_COMMUNES = [c for codes in COMMUNES.values() for c in codes]

times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 59]))
hours = st.lists(st.builds(Hours, start=times, end=times), max_size=2)


@st.composite
def units(draw: st.DrawFn, prefix: str, dep: str) -> list[ResponderUnit]:
    out = []
    for u in range(draw(st.integers(1, 4))):
        contacts = [
            Contact(
                id=f"{prefix}-u{u}-c{c}",
                name=f"Contact {c}",
                phone=f"+336399{draw(st.integers(10000, 99999))}",
                channels=draw(st.sampled_from([[Channel.SMS], [Channel.VOICE], list(Channel)])),
                priority=draw(st.integers(1, 9)),
                hours=draw(hours),
            )
            for c in range(draw(st.integers(1, 3)))
        ]
        lon, lat = draw(st.floats(-5, 9)), draw(st.floats(41, 51))
        square = [(lon, lat), (lon + 0.1, lat), (lon + 0.1, lat + 0.1), (lon, lat + 0.1)]
        out.append(
            ResponderUnit(
                id=f"{prefix}-u{u}",
                name=f"Unité {u}",
                kind=draw(st.sampled_from(list(UnitKind))),
                zone=draw(st.sampled_from(list(Zone))),
                communes=draw(st.lists(st.sampled_from(COMMUNES[dep]), max_size=3, unique=True)),
                polygons=draw(st.sampled_from([[], [square]])),
                contacts=contacts,
            )
        )
    return out


@st.composite
def conventions(draw: st.DrawFn) -> list[Convention]:
    out = []
    for i in range(draw(st.integers(0, 3))):
        dep = draw(st.sampled_from(DEPARTEMENTS))
        unit_list = draw(units(f"k{i}", dep))
        ids = [u.id for u in unit_list]
        targets = st.builds(
            TierTarget, unit=st.sampled_from(["competent", *ids]), max_priority=st.integers(1, 9)
        )
        tier = st.builds(EscalationTier, targets=st.lists(targets, min_size=1, max_size=3))
        tiers = st.lists(tier, min_size=1, max_size=3)
        out.append(
            Convention(
                id=f"k{i}",
                name=f"Convention {i}",
                departement=dep,
                communes=draw(st.lists(st.sampled_from(COMMUNES[dep]), max_size=2, unique=True)),
                units=unit_list,
                tiers=draw(tiers),
                repeats=draw(st.integers(0, 2)),
                fallback_units=draw(st.lists(st.sampled_from(ids), min_size=1, max_size=2, unique=True)),
            )
        )
    return out


@st.composite
def locations(draw: st.DrawFn) -> ResolvedLocation:
    """None, GPS anywhere on Earth (in and outside France), stale fixes, addresses without coordinates."""
    source = draw(st.sampled_from(list(LocationSource)))
    if source is LocationSource.UNKNOWN:
        return ResolvedLocation(source=source, description="inconnue")
    insee = draw(st.one_of(st.none(), st.sampled_from(ALL_COMMUNES)))
    departement = insee[:2] if insee else draw(st.one_of(st.none(), st.sampled_from(DEPARTEMENTS)))
    point = draw(
        st.one_of(
            st.none(),
            st.builds(GeoPoint, lat=st.floats(-90, 90), lon=st.floats(-180, 180)),
            st.builds(GeoPoint, lat=st.floats(41, 51), lon=st.floats(-5, 9)),  # metropolitan France
        )
    )
    return ResolvedLocation(
        source=source,
        point=point,
        description="générée",
        stale=source is LocationSource.LAST_KNOWN,
        insee=insee,
        departement=departement,
    )


moments = st.datetimes(datetime(2024, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC))


def _on_duty(contact: Contact, now: datetime) -> bool:
    t = now.astimezone(PARIS).time()
    return not contact.hours or any(h.covers(t) for h in contact.hours)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conventions(), locations(), moments)
def test_every_plan_first_tier_reaches_someone_on_duty(
    directory: list[Convention], location: ResolvedLocation, now: datetime
) -> None:
    decision = route(directory, location, now, DEPLOYMENT)
    contacts = {c.id: c for k in directory for u in k.units for c in u.contacts}

    assert decision.plan.tiers, "an empty plan: the alert would reach nobody"
    first = decision.plan.tiers[0].recipients
    assert first, "an empty first tier"
    for tier in decision.plan.tiers:
        for r in tier.recipients:
            # Nobody off duty is alerted: contact hours fall through, they never silence.
            assert r.contact_id == DEPLOYMENT_CONTACT_ID or _on_duty(contacts[r.contact_id], now)
    if decision.fallback is None:
        assert decision.reason is None and decision.convention is not None
    else:
        assert decision.reason, "a fallback must say why"
    if decision.convention is None:
        assert decision.fallback is Fallback.DEPLOYMENT and first == (DEPLOYMENT,)


def test_the_dispatcher_refuses_to_start_without_a_deployment_fallback_contact(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIE_")} | {
        "VIGIE_DATABASE_URL": f"sqlite:///{tmp_path / 'vigie.db'}",
        "VIGIE_TWILIO__ACCOUNT_SID": "AC" + "0" * 32,
        "VIGIE_TWILIO__AUTH_TOKEN": "x",
        "VIGIE_TWILIO__FROM_NUMBER": "+33465710199",
        "VIGIE_TWILIO__PUBLIC_BASE_URL": "http://127.0.0.1:23999",
    }
    command = [sys.executable, "-c", "from dispatcher.cli import main; main()", "serve", "--create"]
    started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 2
    assert "VIGIE_FALLBACK" in started.stderr
