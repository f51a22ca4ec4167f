"""Routing that cannot come up empty, end to end: real Mosquitto, the dispatcher,
the provider sandbox over HTTP, signed simulated devices (issue 10).

The ``system`` fixture (and the store parameters) come from test_end_to_end;
``running_system`` loads the sandbox's commune contours.
"""

# ruff: noqa: F811  (pytest fixtures imported from test_end_to_end are parameters here)

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from broker_config.runner import DevBroker, free_port
from protocol.messages import Location
from protocol.topics import UplinkKind
from sandbox.fleet import SimulatedDevice
from tests.dispatcher.test_end_to_end import (  # noqa: F401
    CHEF_DE_POSTE,
    OFFICIER_DE_QUART,
    REFERENT_SSJ,
    notified_numbers,
    store_url,
    system,
)
from tests.support.postgres import postgres_cluster  # noqa: F401
from tests.support.system import FALLBACK_NUMBER, HERAULT, System, running_system

PIGNAN = (43.58543, 3.7499)  # 34202, brigade de Pignan; 10.7 km from Dr Fabre's cabinet
MONTFERRIER = (43.66935, 3.86318)  # 34169: in the Hérault, listed by no unit
SUMENE = (43.98845, 3.73235)  # 30325: Gard, no convention
COMEDIE = (43.6086, 3.8800)  # 34172, Montpellier
BTA_PIGNAN_PATROUILLE = "+33639980106"
BTA_SGF_PATROUILLE = "+33639980105"
CIC_SMS, CORG_SMS, CIC_VOICE, CORG_VOICE = "+33639980109", "+33639980110", "+33465710105", "+33465710106"


def fix(lat: float, lon: float, *, age_s: float = 5, accuracy_m: float = 10) -> Location:
    fix_ts = int((datetime.now(UTC).timestamp() - age_s) * 1000)
    return Location(lat=lat, lon=lon, accuracy_m=accuracy_m, fix_ts=fix_ts, source="gnss")


async def fabre_bracelet(system: System) -> SimulatedDevice:
    return await system.add_device("bracelet-fabre", practitioner="dr-claire-fabre", site="cabinet-boutonnet")


async def alarms_of(system: System, alert_id: str) -> list[str]:
    return [
        e["detail"]["reason"]
        for e in await system.store.alert_events(alert_id)
        if e["kind"] == "operator_alarm"
    ]


async def test_gps_fix_far_from_every_known_address_reaches_the_commune_s_competent_unit(
    system: System,
) -> None:
    device = await fabre_bracelet(system)
    alert_id = await asyncio.to_thread(device.alert, fix(*PIGNAN))

    assert await notified_numbers(system, alert_id) == {BTA_PIGNAN_PATROUILLE}
    [sms] = system.sent_to(BTA_PIGNAN_PATROUILLE, "message")
    assert "Routage de secours" not in sms and "43.58543" in sms
    record = await system.store.get_alert(alert_id)
    assert record.context is not None and record.context["location"]["insee"] == "34202"
    assert await alarms_of(system, alert_id) == []


async def test_gps_fix_in_a_commune_no_unit_lists_goes_to_the_departmental_fallback(system: System) -> None:
    device = await fabre_bracelet(system)
    alert_id = await asyncio.to_thread(device.alert, fix(*MONTFERRIER))

    assert await notified_numbers(system, alert_id) == {CIC_SMS, CORG_SMS, CIC_VOICE, CORG_VOICE}
    for number in (CIC_SMS, CORG_SMS):
        [sms] = system.sent_to(number, "message")
        assert (
            "Routage de secours: zone non déterminée - position GPS 43.66935, 3.86318 (commune 34169)" in sms
        )
    assert "zone non déterminée" in system.sent_to(CIC_VOICE, "call")[0]
    [alarm] = await alarms_of(system, alert_id)
    assert alarm.startswith("routage de secours : zone non déterminée")


async def test_gps_fix_outside_every_convention_goes_to_the_deployment_fallback(system: System) -> None:
    device = await fabre_bracelet(system)
    alert_id = await asyncio.to_thread(device.alert, fix(*SUMENE))

    assert await notified_numbers(system, alert_id) == {FALLBACK_NUMBER}
    [sms] = system.sent_to(FALLBACK_NUMBER, "message")
    assert (
        "aucune convention SSJ ne couvre cette position - position GPS 43.98845, 3.73235 (commune 30325)"
        in sms
    )
    record = await system.store.get_alert(alert_id)
    assert record.context is not None and record.context["fallback"] == "deployment"
    assert [a for a in await alarms_of(system, alert_id) if "aucune convention" in a]


async def test_no_fix_no_visit_no_site_goes_to_the_deployment_fallback_saying_why(system: System) -> None:
    # Lucie Martel has no site; her bracelet sends no fix, has sent none before, and she declared no visit.
    device = await system.add_device("bracelet-martel", practitioner="lucie-martel")
    alert_id = await asyncio.to_thread(device.alert)
    await asyncio.to_thread(device.wait_downlink, "received", alert_id)

    assert await notified_numbers(system, alert_id) == {FALLBACK_NUMBER}
    [sms] = system.sent_to(FALLBACK_NUMBER, "message")
    assert "Routage de secours: position inconnue" in sms
    assert [a for a in await alarms_of(system, alert_id) if "routage de secours" in a]


async def test_no_fix_no_visit_no_site_uses_the_last_position_a_heartbeat_gave(system: System) -> None:
    device = await system.add_device("bracelet-martel", practitioner="lucie-martel")
    heard = fix(*COMEDIE, age_s=90)
    await asyncio.to_thread(device.send, UplinkKind.HEARTBEAT, location=heard, firmware="t", uptime_s=60)

    # Saved with the replay windows, every few seconds (no event to wait on: poll).
    async def saved() -> None:
        while await system.store.last_fix("bracelet-martel") != heard.model_dump():  # noqa: ASYNC110
            await asyncio.sleep(0.2)

    await asyncio.wait_for(saved(), 15)
    alert_id = await asyncio.to_thread(device.alert)

    assert CHEF_DE_POSTE in await notified_numbers(system, alert_id)  # Montpellier's commissariat
    [sms] = system.sent_to(CHEF_DE_POSTE, "message")
    assert "ANCIENNE dernière position connue il y a 1 min" in sms or "ANCIENNE derniere" in sms
    assert "43.60860" in sms
    record = await system.store.get_alert(alert_id)
    assert record.context is not None
    assert record.context["location"]["source"] == "last_known" and record.context["location"]["stale"]


def vigie(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from dispatcher.cli import main; main()", *args]
    return subprocess.run(command, env=os.environ | env, capture_output=True, text=True, timeout=60)


async def test_a_visit_declared_with_the_geocoder_down_is_routed_by_its_postcode(system: System) -> None:
    env = {
        "VIGIE_DATABASE_URL": system.dispatcher.settings.database_url,
        "VIGIE_GEOCODER__DOMAIN": f"127.0.0.1:{free_port()}",  # nobody listens: the geocoder is down
        "VIGIE_GEOCODER__SCHEME": "http",
    }
    address = ("--practitioner", "dr-karim-benali", "--address", "12 Rue des Cistes, 34790 Grabels")
    declared = await asyncio.to_thread(vigie, "visit", "add", *address, "--access-code", "B4521", env=env)
    assert declared.returncode == 0, declared.stderr
    assert "géocodeur injoignable : alerte routée par la commune 34116" in declared.stderr
    assert "site" not in declared.stderr  # the old, false "routing will use the practitioner's site"

    refused = await asyncio.to_thread(
        vigie, "visit", "add", "--practitioner", "dr-karim-benali", "--address", "chez Mme Durand", env=env
    )
    assert refused.returncode == 1 and "visite refusée" in refused.stderr
    assert len(await system.store.list_visits("dr-karim-benali")) == 1  # never stored without a place

    async def visit_known() -> bool:
        return any(v.practitioner_id == "dr-karim-benali" for v in system.dispatcher.cache.current.visits)

    await system.until(visit_known, within=10)
    device = await system.add_device("bracelet-benali", practitioner="dr-karim-benali")
    alert_id = await asyncio.to_thread(device.alert)

    assert BTA_SGF_PATROUILLE in await notified_numbers(system, alert_id)  # brigade of Grabels
    [sms] = system.sent_to(BTA_SGF_PATROUILLE, "message")
    assert "12 Rue des Cistes" in sms and "B4521" in sms and "Routage de secours" not in sms


@pytest.fixture
async def night_system(broker: DevBroker, tmp_path: Path, store_url: str) -> AsyncIterator[System]:
    """The sample directory where Montpellier's priority-1 contacts are off duty right now."""
    doc = yaml.safe_load(HERAULT.read_text())
    paris = datetime.now(ZoneInfo("Europe/Paris"))
    off = {
        "start": (paris + timedelta(hours=2)).strftime("%H:%M"),
        "end": (paris + timedelta(hours=3)).strftime("%H:%M"),
    }
    [unit] = [u for u in doc["conventions"][0]["units"] if u["id"] == "csp-montpellier"]
    for contact in unit["contacts"]:
        contact["hours"] = [off] if contact["priority"] == 1 else []
    night = tmp_path / "herault-night.yaml"
    night.write_text(yaml.safe_dump(doc, allow_unicode=True))
    async with running_system(broker, tmp_path, directory=night, database_url=store_url) as s:
        yield s


async def test_contact_hours_that_empty_tier_1_fall_through_to_the_next_contacts(
    night_system: System,
) -> None:
    system = night_system
    device = await system.add_device(
        "btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet"
    )
    alert_id = await asyncio.to_thread(device.alert)

    notified = await notified_numbers(system, alert_id)
    assert REFERENT_SSJ in notified  # the next priority of the competent units, on duty
    assert not notified & {CHEF_DE_POSTE, OFFICIER_DE_QUART}
    assert system.sent_to(CHEF_DE_POSTE, "message") == [] and system.sent_to(OFFICIER_DE_QUART, "call") == []
    routed = [e for e in await system.store.alert_events(alert_id) if e["kind"] == "routed"]
    assert any("priorité suivante" in n for n in routed[0]["detail"]["notes"])


async def test_a_fix_is_described_from_the_nearest_site_even_another_practitioner_s(system: System) -> None:
    # Dr Benali has no site; the fix is 40 m from Dr Fabre's cabinet.
    device = await system.add_device("bracelet-benali", practitioner="dr-karim-benali")
    alert_id = await asyncio.to_thread(device.alert, fix(43.62189, 3.87269))

    assert CHEF_DE_POSTE in await notified_numbers(system, alert_id)
    [sms] = system.sent_to(CHEF_DE_POSTE, "message")
    assert "au nord de 45 Rue du Faubourg Boutonnet" in sms
