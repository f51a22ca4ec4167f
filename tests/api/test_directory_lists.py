"""The directory's lists at national scale: a page by id, searched by words, counted.

A national directory holds 100,000 practitioners: ``GET /api/practitioners`` and
``/api/sites`` send ``limit`` rows at most (1,000 by default), keep with ``q`` those
whose name, id, RPPS (or a site's address) hold every word typed, any case, any
accent, and say how many the user sees in all (``X-Total-Count``). Territories
apply as before. The screens get the names they show with the rows that need
them (the devices' table, the users' list), not by reading the whole directory.
"""

from __future__ import annotations

from dispatcher.domain import Device, DeviceKind, Practitioner
from tests.api.conftest import Api
from tests.api.test_device_health_page import CABINET, FABRE, add_devices


async def add_practitioners(api: Api, *practitioners: Practitioner) -> None:
    for p in practitioners:
        await api.system.store.upsert_practitioner(p)
    await api.system.dispatcher.cache.refresh()


def nurse(n: int, first: str, last: str) -> Practitioner:
    return Practitioner(
        id=f"inf-{n:03d}", first_name=first, last_name=last, profession="infirmière libérale",
        rpps=f"1009{n:07d}", phones=(f"+336{n:08d}",),
    )  # fmt: skip


async def test_practitioners_a_page_by_id_searched_without_accents_or_case(api: Api) -> None:
    await add_practitioners(
        api, nurse(1, "Hélène", "Durand"), nurse(2, "Helene", "DURAND-Vidal"), nurse(3, "Paul", "Roux")
    )
    admin = await api.as_user("admin")

    everyone = await admin.get("/api/practitioners")
    ids = [p["id"] for p in everyone.json()]
    assert ids == sorted(ids) and {"inf-001", "inf-002", "inf-003", FABRE} <= set(ids)
    assert int(everyone.headers["X-Total-Count"]) == len(ids)
    two = await admin.get("/api/practitioners", params={"limit": 2})
    assert [p["id"] for p in two.json()] == ids[:2]
    assert int(two.headers["X-Total-Count"]) == len(ids), "the page says there is more"

    found = await admin.get("/api/practitioners", params={"q": "helene durand"})
    assert [p["id"] for p in found.json()] == ["inf-001", "inf-002"]
    assert found.headers["X-Total-Count"] == "2"
    assert [p["display_name"] for p in found.json()] == ["Dr Hélène Durand", "Dr Helene DURAND-Vidal"]
    by_rpps = await admin.get("/api/practitioners", params={"q": "10090000003"})
    assert [p["id"] for p in by_rpps.json()] == ["inf-003"]
    first = await admin.get("/api/practitioners", params={"q": "DURAND", "limit": 1})
    assert ([p["id"] for p in first.json()], first.headers["X-Total-Count"]) == (["inf-001"], "2")
    none = await admin.get("/api/practitioners", params={"q": "zzz"})
    assert (none.json(), none.headers["X-Total-Count"]) == ([], "0")

    for bad in ({"limit": 0}, {"limit": 10_001}, {"q": ""}, {"q": "x" * 101}):
        assert (await admin.get("/api/practitioners", params=bad)).status_code == 422, bad


async def test_an_operator_lists_and_finds_only_her_territory_s_practitioners_and_sites(api: Api) -> None:
    await add_practitioners(api, nurse(7, "Claire", "Fabreguette"))
    await add_devices(api, Device(id="btn-a", kind=DeviceKind.BUTTON, practitioner_id=FABRE, site_id=CABINET))
    herault, gard = await api.as_user("op-herault"), await api.as_user("op-gard")

    # Fabreguette has no device in the Hérault: its operator does not see her, even searched for.
    found = await herault.get("/api/practitioners", params={"q": "fabre"})
    assert ([p["id"] for p in found.json()], found.headers["X-Total-Count"]) == ([FABRE], "1")
    assert (await gard.get("/api/practitioners", params={"q": "fabre"})).json() == []
    assert (await gard.get("/api/practitioners")).headers["X-Total-Count"] == "0"

    sites = await herault.get("/api/sites", params={"q": "saint gely"})  # its address: Saint-Gély-du-Fesc
    assert ([s["id"] for s in sites.json()], sites.headers["X-Total-Count"]) == (["mmg-saint-gely"], "1")
    assert (sites.json()[0]["has_cancel_pin"], sites.json()[0]["has_duress_pin"]) == (True, True)
    everything = await herault.get("/api/sites", params={"limit": 1})
    assert ([s["id"] for s in everything.json()], everything.headers["X-Total-Count"]) == ([CABINET], "2")
    gard_sites = await gard.get("/api/sites", params={"q": "boutonnet"})
    assert (gard_sites.json(), gard_sites.headers["X-Total-Count"]) == ([], "0")


async def test_the_rows_the_screens_show_carry_the_names_they_show(api: Api) -> None:
    await add_devices(
        api,
        Device(id="btn-a", kind=DeviceKind.BUTTON, practitioner_id=FABRE, site_id=CABINET, label="Bureau"),
        Device(id="btn-loose", kind=DeviceKind.POCKET, label="Sans attribution"),
    )
    admin = await api.as_user("admin")
    rows = {d["device_id"]: d for d in (await admin.get("/api/devices/health")).json()}
    assert (rows["btn-a"]["practitioner_name"], rows["btn-a"]["site_name"]) == (
        "Dr Claire Fabre",
        "Cabinet médical du Faubourg Boutonnet",
    )
    assert (rows["btn-loose"]["practitioner_name"], rows["btn-loose"]["site_name"]) == (None, None)

    users = {u["username"]: u for u in (await admin.get("/api/users")).json()}
    assert users["dr-fabre"]["practitioner_name"] == "Dr Claire Fabre"
    assert users["op-herault"]["practitioner_name"] is None


async def test_the_alerts_filter_by_her_name_finds_her_among_namesakes(api: Api) -> None:
    """The alerts' "Praticien" filter reads the same folded names as the lists."""
    await add_practitioners(api, nurse(8, "Claire", "Fabreguette"))
    _, alert_id = await api.alert_from("btn-boutonnet", FABRE, CABINET)
    admin = await api.as_user("admin")
    hers = await admin.get("/api/alerts", params={"practitioner": "CLAIRE fabre"})
    assert [a["id"] for a in hers.json()] == [alert_id]
    other = await admin.get("/api/alerts", params={"practitioner": "fabreguette"})
    assert other.json() == []


async def test_the_accounts_a_page_by_username_searched_and_counted(api: Api) -> None:
    """One account per practitioner nationally: the admin's list is a page, found by words."""
    admin = await api.as_user("admin")
    everyone = await admin.get("/api/users")
    names = [u["username"] for u in everyone.json()]
    assert names == sorted(names) and int(everyone.headers["X-Total-Count"]) == len(names) >= 4
    two = await admin.get("/api/users", params={"limit": 2})
    assert ([u["username"] for u in two.json()], two.headers["X-Total-Count"]) == (names[:2], str(len(names)))
    fabre = await admin.get("/api/users", params={"q": "FABRE"})  # her name, her practitioner id
    assert [u["username"] for u in fabre.json()] == ["dr-fabre"]
    assert fabre.json()[0]["practitioner_name"] == "Dr Claire Fabre"
    assert (await admin.get("/api/users", params={"q": "op- gard"})).headers["X-Total-Count"] == "1"
    assert (await (await api.as_user("op-herault")).get("/api/users")).status_code == 403
