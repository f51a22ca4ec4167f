"""Who reaches the admin screens: admins only; a foreign page can change nothing through them."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser, expect

from dispatcher.domain import DeviceState
from tests.admin.conftest import open_admin
from tests.api.conftest import PASSWORD, Served
from tests.console.test_browser import login
from tests.security.web import hostile_site

pytestmark = pytest.mark.browser

# Every write the admin screens make, with a body that would be valid.
WRITES = [
    ("POST", "/api/devices/btn-boutonnet/revoke", None),
    ("POST", "/api/users", {"username": "intrus", "display_name": "Intrus", "password": "x" * 12,
                            "role": "admin"}),
    ("PATCH", "/api/users/1", {"disabled": True}),
    ("PUT", "/api/conventions/ssj-30/yaml", {"yaml": "conventions: []\n"}),
    ("POST", "/api/practitioners/yaml", {"yaml": "practitioners: []\n"}),
    ("PUT", "/api/sites/cabinet-boutonnet/yaml", {"yaml": "sites: []\n"}),
]  # fmt: skip
READS = [
    "/api/users",
    "/api/audit",
    "/api/conventions/ssj-34/yaml",
    "/api/practitioners/dr-claire-fabre/yaml",
]


async def test_an_operator_gets_403_on_the_page_and_every_admin_endpoint(
    browser: Browser, served: Served
) -> None:
    await served.system.add_device("btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet")
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await login(page, served, "op-herault")
    response = await page.goto(f"{served.url}/admin/")
    assert response is not None and response.status == 403
    await expect(page.locator("h1")).to_have_text("Accès réservé aux administrateurs")
    await expect(page.locator("#devices")).to_have_count(0)

    async with httpx.AsyncClient(base_url=served.url, headers={"Origin": served.url}) as op:
        assert (
            await op.post("/api/auth/login", json={"username": "op-herault", "password": PASSWORD})
        ).is_success
        for method, path, body in WRITES:
            answer = await op.request(method, path, json=body)
            assert answer.status_code == 403, (method, path, answer.status_code)
        for path in READS:
            assert (await op.get(path)).status_code == 403, path
    assert (await served.system.store.get_device("btn-boutonnet")).state is DeviceState.ACTIVE
    assert "intrus" not in {u.username for u in await served.system.store.list_users()}


async def test_without_a_session_the_page_sends_to_the_console_login(
    browser: Browser, served: Served
) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(f"{served.url}/admin/")
    assert page.url == f"{served.url}/console/"
    await expect(page.locator("#login-form")).to_be_visible()


async def test_the_page_is_served_with_a_strict_csp(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        assert (
            await client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
        ).is_success
        page = await client.get("/admin/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "http" not in page.text.replace('href="/', ""), "no external asset (CDN)"


async def test_a_cross_site_post_from_another_port_is_refused(browser: Browser, served: Served) -> None:
    await served.system.add_device("btn-boutonnet", practitioner="dr-claire-fabre", site="cabinet-boutonnet")
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    admin_page = await context.new_page()
    await open_admin(admin_page, served, "balises")
    async with hostile_site() as evil:
        page = await context.new_page()
        for path in ("/api/devices/btn-boutonnet/revoke", "/api/users", "/api/conventions/yaml"):
            async with page.expect_response(lambda r, p=path: r.url == served.url + p) as caught:
                await page.goto(f"{evil.url}/form?target={served.url}{path}")
            response = await caught.value
            assert response.status == 403, path
            assert "autre origine" in await response.text()
    assert (await served.system.store.get_device("btn-boutonnet")).state is DeviceState.ACTIVE
    assert await served.system.store.list_audit(action="config.change") == []
    await context.close()


async def test_the_console_header_leads_an_admin_to_the_admin_page(browser: Browser, served: Served) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await login(page, served, "admin")
    await page.click("#admin-link")
    await expect(page.locator("body")).to_have_attribute("data-ready", "balises", timeout=10000)
    assert page.url == f"{served.url}/admin/"
