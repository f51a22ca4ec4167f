"""The devices' table (console and administration): the flagged devices first, one page at most.

A national fleet has 100,000 devices and each console asks again at every new
alert: the table is a page (``limit``, 1,000 by default) with the devices
flagged offline or low on battery first, then the others by id, and says how
many the user sees in all (``X-Total-Count``). Territories apply as before.
"""

from __future__ import annotations

from typing import Any

from dispatcher.domain import Device, DeviceKind
from sandbox.fleet import new_device_secrets
from tests.api.conftest import Api
from tests.support.system import flag_device

CABINET = "cabinet-boutonnet"
FABRE = "dr-claire-fabre"


async def add_devices(api: Api, *devices: Device) -> None:
    for device in devices:
        await api.system.store.add_device(device, new_device_secrets()[0])
    await api.system.dispatcher.cache.refresh()


async def test_flagged_devices_come_first_and_a_page_says_how_many_there_are(api: Api) -> None:
    await add_devices(
        api,
        Device(id="btn-a", kind=DeviceKind.BUTTON, practitioner_id=FABRE, site_id=CABINET, label="Bureau"),
        Device(id="btn-b", kind=DeviceKind.BUTTON, practitioner_id=FABRE, site_id=CABINET, label="Accueil"),
        Device(id="btn-c", kind=DeviceKind.BRACELET, practitioner_id=FABRE, label="Bracelet (porté)"),
        Device(id="btn-z", kind=DeviceKind.BUTTON, practitioner_id=FABRE, site_id=CABINET, label="Salle 2"),
    )
    await flag_device(api.system.store, "btn-z", '["offline"]', "offline")
    await flag_device(api.system.store, "btn-b", '["low_battery"]', "low_battery")
    herault = await api.as_user("op-herault")

    everything = await herault.get("/api/devices/health")
    total = int(everything.headers["X-Total-Count"])
    ids = [d["device_id"] for d in everything.json()]
    assert total == len(ids) and {"btn-a", "btn-b", "btn-c", "btn-z"} <= set(ids)
    assert ids[:2] == ["btn-b", "btn-z"]  # flagged first (by id), then every other one by id
    assert ids[2:] == sorted(ids[2:])
    rows = {d["device_id"]: d for d in everything.json()}
    assert rows["btn-z"]["offline"] and not rows["btn-z"]["low_battery"]
    assert rows["btn-b"]["low_battery"] and rows["btn-b"]["label"] == "Accueil"
    assert not rows["btn-a"]["offline"] and rows["btn-a"]["last_seen_at"] is None

    page = await herault.get("/api/devices/health", params={"limit": 3})
    assert [d["device_id"] for d in page.json()] == ids[:3]
    assert int(page.headers["X-Total-Count"]) == total  # the page says there is more
    one = await herault.get("/api/devices/health", params={"limit": 1})
    assert [d["device_id"] for d in one.json()] == ["btn-b"]

    listed = await herault.get("/api/devices", params={"limit": 2})  # the plain list: a page by id
    assert [d["id"] for d in listed.json()] == sorted(ids)[:2]
    assert int(listed.headers["X-Total-Count"]) == total

    # The carried bracelet belongs to the territory of her cabinet, as before; Gard sees none of them.
    gard = await api.as_user("op-gard")
    nothing = await gard.get("/api/devices/health")
    assert nothing.json() == [] and nothing.headers["X-Total-Count"] == "0"
    hers = await (await api.as_user("dr-fabre")).get("/api/devices/health")
    assert {"btn-a", "btn-b", "btn-c", "btn-z"} <= {d["device_id"] for d in hers.json()}


async def test_a_page_is_bounded(api: Api) -> None:
    herault = await api.as_user("op-herault")
    for limit in (0, 10_001):
        for path in ("/api/devices/health", "/api/devices"):
            response = await herault.get(path, params={"limit": limit})
            assert response.status_code == 422, (path, limit)
    assert (await herault.get("/api/devices/health", params={"q": ""})).status_code == 422


async def test_the_table_searched_by_id_label_practitioner_or_site(api: Api) -> None:
    """The administration finds one device of 100,000 to revoke it: words of its id, label,
    practitioner or site, any case or accent; still flagged first, still within the territory."""
    await add_devices(
        api,
        Device(id="btn-a", kind=DeviceKind.BUTTON, practitioner_id=FABRE, site_id=CABINET, label="Bureau"),
        Device(id="btn-b", kind=DeviceKind.BUTTON, practitioner_id=FABRE, site_id=CABINET, label="Accueil"),
        Device(id="pocket-k", kind=DeviceKind.POCKET, practitioner_id="dr-karim-benali", label="Poche"),
    )
    await flag_device(api.system.store, "btn-b", '["offline"]', "offline")
    admin, gard = await api.as_user("admin"), await api.as_user("op-gard")

    def ids(answer: Any) -> tuple[list[str], str]:
        return [d["device_id"] for d in answer.json()], answer.headers["X-Total-Count"]

    assert ids(await admin.get("/api/devices/health", params={"q": "BUREAU"})) == (["btn-a"], "1")
    hers = (["btn-b", "btn-a"], "2")  # the flagged one first
    assert ids(await admin.get("/api/devices/health", params={"q": "claire fabre"})) == hers
    assert ids(await admin.get("/api/devices/health", params={"q": "faubourg"})) == hers
    assert ids(await admin.get("/api/devices/health", params={"q": "bénali"})) == (["pocket-k"], "1")
    assert ids(await admin.get("/api/devices/health", params={"q": "fabre", "limit": 1})) == (["btn-b"], "2")
    assert ids(await gard.get("/api/devices/health", params={"q": "fabre"})) == ([], "0")
