"""The directory screen in headless Chromium: entries edited as the directory file's YAML.

An edit that breaks the loader's rules shows the loader's own line-precise
problems (compared here with ``parse_entry`` run on the same text) and saves
nothing; a valid one is saved, audited, and keeps the PIN hashes it did not set.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

from dispatcher.directory.entry import Others, parse_entry
from dispatcher.directory.loader import DirectoryError
from dispatcher.domain import Practitioner
from tests.admin.conftest import open_admin
from tests.api.conftest import Served

pytestmark = pytest.mark.browser


def loader_problems(section: str, text: str, entry_id: str, served: Served) -> list[str]:
    others = Others(tuple(served.system.dispatcher.cache.current.conventions))
    with pytest.raises(DirectoryError) as caught:
        parse_entry(section, text, entry_id, others)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


async def edit(page: Page, section: str, entry_id: str) -> str:
    await page.locator(f'#dir-{section} tr[data-id="{entry_id}"] button.edit').click()
    await expect(page.locator("#dir-editor")).to_be_visible()
    await expect(page.locator("#dir-yaml")).not_to_have_value("")
    return await page.locator("#dir-yaml").input_value()


async def save(page: Page, text: str) -> None:
    await page.fill("#dir-yaml", text)
    await page.click("#dir-save")


async def test_a_convention_edit_breaking_the_rules_shows_the_loader_errors_and_saves_nothing(
    browser: Browser, served: Served
) -> None:
    store = served.system.store
    before = next(c for c in await store.list_conventions() if c.id == "ssj-34")
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await open_admin(page, served, "annuaire")
    text = await edit(page, "conventions", "ssj-34")
    assert "csp-montpellier" in text

    # A tier naming a unit that does not exist, and a commune outside the département.
    broken = text.replace("unit: competent", "unit: unite-inconnue", 1).replace("'34301'", "'30189'", 1)
    expected = loader_problems("conventions", broken, "ssj-34", served)
    assert any("unité inconnue 'unite-inconnue'" in p for p in expected) and all(
        p.startswith("ligne ") for p in expected
    )
    await save(page, broken)
    await expect(page.locator("#dir-error")).to_contain_text("rien n'a été enregistré")
    await expect(page.locator("#dir-error pre")).to_have_text("\n".join(expected))
    assert next(c for c in await store.list_conventions() if c.id == "ssj-34") == before
    assert await store.list_audit(target_kind="convention") == []

    # A unit id already used by another convention: refused too, at its line.
    clash = text.replace("- id: csp-sete\n", "- id: csp-nimes\n", 1)
    await save(page, clash)
    await expect(page.locator("#dir-error pre")).to_contain_text(
        "units[1].id : identifiant d'unité 'csp-nimes'"
    )
    assert next(c for c in await store.list_conventions() if c.id == "ssj-34") == before

    # A valid edit is saved and audited.
    renamed = text.replace("Commissariat de Sète", "Commissariat de police de Sète", 1)
    await save(page, renamed)
    await expect(page.locator("#dir-saved")).to_have_text("Enregistré : convention « ssj-34 ».")
    after = next(c for c in await store.list_conventions() if c.id == "ssj-34")
    assert after.units[1].name == "Commissariat de police de Sète"
    [entry] = await store.list_audit(target_kind="convention", target_id="ssj-34")
    assert (entry.username, entry.detail) == ("admin", {"change": "update", "via": "yaml"})


async def test_a_practitioner_edit_keeps_her_pins_and_a_bad_phone_is_refused(
    browser: Browser, served: Served
) -> None:
    store = served.system.store
    before = await store.get_practitioner("dr-claire-fabre")
    assert before.cancel_pin_hash and before.duress_pin_hash
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await open_admin(page, served, "annuaire")
    text = await edit(page, "practitioners", "dr-claire-fabre")
    assert "pin" not in text.lower(), "no PIN hash is ever sent out"

    broken = text.replace("'+33639980150'", "'0639980150'")
    expected = loader_problems("practitioners", broken, "dr-claire-fabre", served)
    await save(page, broken)
    await expect(page.locator("#dir-error pre")).to_have_text("\n".join(expected))
    assert expected[0].startswith("ligne 8, practitioners[0].phones[0] : format refusé")
    assert await store.get_practitioner("dr-claire-fabre") == before

    await save(page, text.replace("'+33639980150'", "'+33639980159'"))
    await expect(page.locator("#dir-saved")).to_contain_text("dr-claire-fabre")
    after = await store.get_practitioner("dr-claire-fabre")
    assert after.phones == ["+33639980159"]
    assert (after.cancel_pin_hash, after.duress_pin_hash) == (before.cancel_pin_hash, before.duress_pin_hash)
    [entry] = await store.list_audit(target_kind="practitioner", target_id="dr-claire-fabre")
    assert entry.detail == {"change": "update", "via": "yaml"}


async def test_a_new_site_is_created_and_its_id_cannot_be_renamed(browser: Browser, served: Served) -> None:
    store = served.system.store
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await open_admin(page, served, "annuaire")
    await page.click("#dir-new-sites")
    await expect(page.locator("#dir-editor")).to_be_visible()
    site = (
        "sites:\n"
        "  - id: cabinet-ecusson\n"
        "    kind: cabinet\n"
        "    name: Cabinet de l'Écusson\n"
        "    address:\n"
        "      label: 2 Rue de la Loge, 34000 Montpellier\n"
        "      insee: '34172'\n"
        "      point: {lat: 43.6100, lon: 3.8770}\n"
    )
    await save(page, site)
    await expect(page.locator("#dir-saved")).to_have_text("Enregistré : site « cabinet-ecusson ».")
    await expect(page.locator('#dir-sites tr[data-id="cabinet-ecusson"]')).to_contain_text(
        "Cabinet de l'Écusson"
    )
    assert (await store.get_site("cabinet-ecusson")).name == "Cabinet de l'Écusson"

    # Now editing it: its id is fixed.
    await save(page, site.replace("id: cabinet-ecusson", "id: cabinet-autre"))
    await expect(page.locator("#dir-error pre")).to_have_text(
        "ligne 2, sites[0].id : l'identifiant ne peut pas changer ('cabinet-ecusson')"
    )
    assert [e.detail["change"] for e in await store.list_audit(target_kind="site")] == ["create"]


async def test_a_large_directory_is_shown_a_page_at_a_time_and_searched(
    browser: Browser, served: Served
) -> None:
    """A national directory's practitioners are not all sent: 200 shown, how many in all, and
    the one wanted found by a word of her name, without accents."""
    store = served.system.store
    for n in range(230):
        await store.upsert_practitioner(
            Practitioner(id=f"inf-{n:03d}", first_name="Ange", last_name=f"Infirmier{n}",
                         profession="infirmier libéral", rpps=f"1009{n:07d}", phones=("+33600000000",))
        )  # fmt: skip
    await store.upsert_practitioner(
        Practitioner(id="inf-helene", first_name="Hélène", last_name="Sérieys",
                     profession="infirmière libérale", rpps="10099999999", phones=("+33600000001",))
    )  # fmt: skip
    await served.system.dispatcher.cache.refresh()
    page = await browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    await open_admin(page, served, "annuaire")

    await expect(page.locator("#dir-practitioners tbody tr")).to_have_count(200)
    await expect(page.locator("#dir-more-practitioners")).to_have_text(
        "200 praticiens affichés sur 234 : précisez la recherche."
    )
    await page.fill("#dir-q-practitioners", "helene serieys")
    await expect(page.locator("#dir-practitioners tbody tr")).to_have_count(1)
    found = page.locator('#dir-practitioners tr[data-id="inf-helene"]')
    await expect(found).to_contain_text("Dr Hélène Sérieys")
    await expect(page.locator("#dir-more-practitioners")).to_be_hidden()
    await found.locator("button.edit").click()
    await expect(page.locator("#dir-yaml")).to_have_value(re.compile("last_name: Sérieys"))

    await page.fill("#dir-q-practitioners", "zzz")
    await expect(page.locator("#dir-practitioners tbody tr")).to_have_count(0)
    nothing = "Aucun praticien ne correspond à « zzz »."
    await expect(page.locator("#dir-more-practitioners")).to_have_text(nothing)
    await page.fill("#dir-q-sites", "saint gely")
    await expect(page.locator("#dir-sites tbody tr")).to_have_count(1)
    await expect(page.locator('#dir-sites tr[data-id="mmg-saint-gely"]')).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.screenshot(path="test-artifacts/admin-directory-search-phone.png", full_page=True)
