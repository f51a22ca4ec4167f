"""The admin screens in headless Chromium: devices (health, revocation), users and roles, audit log."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, expect

from dispatcher.domain import DeviceState
from dispatcher.store.base import NewUser
from protocol.topics import UplinkKind
from tests.admin.conftest import open_admin
from tests.api.conftest import PASSWORD, Served

pytestmark = pytest.mark.browser


async def _heartbeat(served: Served, device_id: str, battery: int, **binding: str) -> None:
    device = await served.system.add_device(device_id, **binding)
    await asyncio.to_thread(
        device.send, UplinkKind.HEARTBEAT, battery_pct=battery, firmware="1.2.0", uptime_s=60
    )

    health = served.system.dispatcher.health

    async def seen() -> bool:
        return getattr(health.devices.get(device_id), "battery_pct", None) == battery

    await served.system.until(seen, 10)
    await health.flush()  # what its periodic pass does: the API reads the stored rows


async def test_devices_show_health_and_revoke_after_confirmation(browser: Browser, served: Served) -> None:
    await _heartbeat(served, "btn-boutonnet", 76, practitioner="dr-claire-fabre", site="cabinet-boutonnet")
    await _heartbeat(served, "bracelet-benali", 8, practitioner="dr-karim-benali", site="mmg-saint-gely")
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await open_admin(page, served, "balises")

    row = page.locator('#devices tr[data-id="btn-boutonnet"]')
    await expect(row).to_contain_text("en ligne")
    await expect(row).to_contain_text("76 %")
    await expect(row).to_contain_text("Dr Claire Fabre")
    await expect(page.locator('#devices tr[data-id="bracelet-benali"]')).to_contain_text("8 % (faible)")

    # Cancelling the confirmation revokes nothing.
    await row.locator("button.revoke").click()
    await expect(page.locator("#confirm")).to_be_visible()
    await expect(page.locator("#confirm-text")).to_contain_text("btn-boutonnet")
    await page.click("#confirm-cancel")
    await expect(page.locator("#confirm")).to_be_hidden()
    assert (await served.system.store.get_device("btn-boutonnet")).state is DeviceState.ACTIVE
    assert await served.system.store.list_audit(target_kind="device") == []

    await row.locator("button.revoke").click()
    await page.click("#confirm-ok")
    await expect(row).to_contain_text("révoquée", timeout=5000)
    await expect(row.locator("button.revoke")).to_be_disabled()
    assert (await served.system.store.get_device("btn-boutonnet")).state is DeviceState.REVOKED
    [entry] = await served.system.store.list_audit(target_kind="device", target_id="btn-boutonnet")
    assert (entry.action, entry.username, entry.detail) == ("config.change", "admin", {"change": "revoke"})
    assert errors == []


async def test_users_create_change_role_and_scope_then_disable(browser: Browser, served: Served) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await open_admin(page, served, "utilisateurs")
    store = served.system.store

    # An operator without a convention is refused with the API's French reason, nothing created.
    await page.click("#user-new")
    await page.fill("#u-username", "op-nouveau")
    await page.fill("#u-display", "Noé Nouveau")
    await page.fill("#u-password", PASSWORD)
    await page.select_option("#u-role", "operator")
    await page.click("#user-save")
    await expect(page.locator("#user-error")).to_contain_text("au moins une convention")
    assert "op-nouveau" not in {u.username for u in await store.list_users()}

    await page.check('#u-conventions input[value="ssj-30"]')
    await page.click("#user-save")
    row = page.locator('#users tr[data-username="op-nouveau"]')
    await expect(row).to_contain_text("Opérateur")
    await expect(row).to_contain_text("Convention SSJ Gard")
    created = next(u for u in await store.list_users() if u.username == "op-nouveau")
    assert created.conventions == ("ssj-30",)

    # Scope moves to the Hérault, then the account is disabled.
    await row.locator("button.edit").click()
    await page.uncheck('#u-conventions input[value="ssj-30"]')
    await page.check('#u-conventions input[value="ssj-34"]')
    await page.click("#user-save")
    await expect(row).not_to_contain_text("Gard")
    await row.locator("button.edit").click()
    await page.select_option("#u-role", "admin")
    await page.check("#u-disabled")
    await page.click("#user-save")
    await expect(row).to_contain_text("Administrateur")
    await expect(row).to_contain_text("désactivé")
    final = await store.get_user(created.id)
    assert (final.role, final.disabled, final.conventions) == ("admin", True, ())

    audit = await store.list_audit(target_kind="user", target_id=str(created.id))
    assert [e.detail["change"] for e in audit] == ["update", "update", "create"]
    assert all(e.username == "admin" for e in audit)
    assert audit[1].detail["conventions"] == ["ssj-34"]
    assert (audit[0].detail["role"], audit[0].detail["disabled"]) == ("admin", True)
    # Disabled means disabled: the password no longer opens a session.
    anonymous = page.context.request
    login = await anonymous.post(
        f"{served.url}/api/auth/login", data={"username": "op-nouveau", "password": PASSWORD}
    )
    assert login.status == 401


async def test_an_admin_cannot_lock_herself_out(browser: Browser, served: Served) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await open_admin(page, served, "utilisateurs")
    await page.locator('#users tr[data-username="admin"] button.edit').click()
    await page.check("#u-disabled")
    await page.click("#user-save")
    await expect(page.locator("#user-error")).to_contain_text("votre propre compte")
    admin = next(u for u in await served.system.store.list_users() if u.username == "admin")
    assert not admin.disabled


async def test_audit_log_filters_by_user_action_and_dates(browser: Browser, served: Served) -> None:
    await _heartbeat(served, "btn-boutonnet", 76, practitioner="dr-claire-fabre", site="cabinet-boutonnet")
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await open_admin(page, served, "balises")
    await page.locator('#devices tr[data-id="btn-boutonnet"] button.revoke').click()
    await page.click("#confirm-ok")
    await expect(page.locator('#devices tr[data-id="btn-boutonnet"]')).to_contain_text("révoquée")

    await page.click('#tabs a[data-tab="journal"]')
    await expect(page.locator("body")).to_have_attribute("data-ready", "journal")
    rows = page.locator("#audit tbody tr")
    await expect(rows.first).to_contain_text("Modification de configuration")
    await expect(rows.first).to_contain_text("balise btn-boutonnet")
    await expect(rows.first).to_contain_text("révocation")

    # The user filter offers the accounts found as the admin types (never the whole list).
    await page.fill("#f-user", "adm")
    offered = page.locator('#f-user-list option[value="admin"]')
    await expect(offered).to_have_count(1)
    await page.fill("#f-user", "personne")  # no such account: nothing, not everyone's entries
    await page.click("#audit-filters button[type=submit]")
    await expect(rows).to_have_count(0)
    await expect(page.locator("#audit-empty")).to_be_visible()
    await page.fill("#f-user", "admin")
    await page.select_option("#f-action", "auth.login")
    await page.click("#audit-filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("Connexion")
    await expect(rows.first).to_contain_text("admin")

    # A date range before today: nothing; today (Paris): the login again.
    await page.fill("#f-since", "2020-01-01")
    await page.fill("#f-until", "2020-01-31")
    await page.click("#audit-filters button[type=submit]")
    await expect(rows).to_have_count(0)
    await expect(page.locator("#audit-empty")).to_be_visible()
    today = await page.evaluate("new Date().toLocaleDateString('sv-SE', {timeZone: 'Europe/Paris'})")
    await page.fill("#f-since", today)
    await page.fill("#f-until", today)
    await page.click("#audit-filters button[type=submit]")
    await expect(rows).to_have_count(1)


async def test_a_practitioner_account_is_bound_to_her_found_by_typing_her_name(
    browser: Browser, served: Served
) -> None:
    """A national directory's 100,000 practitioners are never all sent: the admin types, the
    screen offers the practitioners found (name and RPPS), and the account shows her name."""
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await open_admin(page, served, "utilisateurs")
    await page.click("#user-new")
    await page.fill("#u-username", "claire.fabre")
    await page.fill("#u-display", "Claire Fabre")
    await page.fill("#u-password", PASSWORD)
    await page.select_option("#u-role", "practitioner")
    await page.fill("#u-practitioner", "FABRE")
    offered = page.locator("#u-practitioner-list option")
    await expect(offered).to_have_count(1)
    assert await offered.get_attribute("value") == "dr-claire-fabre"
    await expect(offered).to_have_text("Dr Claire Fabre — RPPS 10001234567")

    await page.fill("#u-practitioner", "dr-inconnue")  # not one of those offered
    await page.click("#user-save")
    await expect(page.locator("#user-error")).to_contain_text("praticien inconnu")

    await page.fill("#u-practitioner", "dr-claire-fabre")  # what choosing the suggestion fills in
    await page.click("#user-save")
    row = page.locator('#users tr[data-username="claire.fabre"]')
    await expect(row).to_contain_text("Dr Claire Fabre")
    created = next(u for u in await served.system.store.list_users() if u.username == "claire.fabre")
    assert (created.role, created.practitioner_id) == ("practitioner", "dr-claire-fabre")


async def test_many_accounts_are_shown_a_page_at_a_time_and_searched(
    browser: Browser, served: Served
) -> None:
    store = served.system.store
    before = len(await store.list_users())
    for n in range(210):
        user = NewUser(f"inf-{n:03d}", f"Infirmier {n}", "h", "operator", conventions=("ssj-34",))
        await store.add_user(user)
    page = await browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    await open_admin(page, served, "utilisateurs")
    await expect(page.locator("#users tbody tr")).to_have_count(200)
    await expect(page.locator("#users-more")).to_have_text(
        f"200 comptes affichés sur {210 + before} : précisez la recherche."
    )
    await page.fill("#users-q", "infirmier 42")  # every word: "Infirmier 42" and "Infirmier 142"
    await expect(page.locator("#users tbody tr")).to_have_count(2)
    await page.fill("#users-q", "INF-042")
    await expect(page.locator("#users tbody tr")).to_have_count(1)
    await expect(page.locator('#users tr[data-username="inf-042"]')).to_contain_text("Infirmier 42")
    await expect(page.locator("#users-more")).to_be_hidden()
    await page.fill("#users-q", "personne")
    await expect(page.locator("#users-more")).to_have_text("Aucun compte ne correspond à « personne ».")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
