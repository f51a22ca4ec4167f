"""The YAML side of the directory routers: an entry read and written as the directory file's text.

Shared by ``practitioners``, ``sites`` and ``conventions``: each router adds
``GET /{id}/yaml``, ``PUT /{id}/yaml`` and ``POST /yaml`` with :func:`add_yaml_routes`.
An entry that breaks the loader's rules is answered 422 with the loader's
problems (line, path, message) and nothing is saved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from dispatcher import audit
from dispatcher.directory.entry import Entry, Others, Section, entry_yaml, parse_entry
from dispatcher.directory.loader import DirectoryError
from dispatcher.directory.snapshot import DirectorySnapshot
from dispatcher.domain import Convention, Id
from dispatcher.web.api.deps import AdminUser, ClientIp, Ctx, not_found
from dispatcher.web.auth import User


class EntryYaml(BaseModel):
    """One directory entry as YAML (the directory file's format, one section, one entry)."""

    id: str | None = Field(default=None, description="the entry's id (answers only)")
    yaml: str = Field(max_length=100_000)


def as_yaml(section: Section, entry: Entry) -> EntryYaml:
    return EntryYaml(id=entry.id, yaml=entry_yaml(section, entry))


def invalid(error: DirectoryError) -> HTTPException:
    """422 with every problem, line-precise as ``vigie load-directory`` prints them."""
    count = len(error.problems)
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail={
            "message": f"Annuaire invalide ({count} problème{'s' if count > 1 else ''}) :"
            " rien n'a été enregistré.",
            "problems": [
                {"line": p.line, "path": p.path, "message": p.message, "text": str(p)} for p in error.problems
            ],
        },
    )


async def parsed(ctx: Ctx, section: Section, body: EntryYaml, entry_id: str | None) -> Entry:
    """The entry in ``body``, checked by the loader against the current directory; 422 otherwise."""
    others = Others(conventions=tuple(ctx.cache.current.conventions))
    try:
        entry = await asyncio.to_thread(parse_entry, section, body.yaml, entry_id, others)
    except DirectoryError as exc:
        raise invalid(exc) from None
    if entry_id is None and _exists(ctx, section, entry.id):
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"l'identifiant {entry.id!r} existe déjà")
    return entry


def _exists(ctx: Ctx, section: Section, entry_id: str) -> bool:
    snapshot = ctx.cache.current
    if section == "conventions":
        return any(c.id == entry_id for c in snapshot.conventions)
    return entry_id in (snapshot.practitioners if section == "practitioners" else snapshot.sites)


def keep_pins(entry: Entry, current: Entry) -> Entry:
    """An edited practitioner or site keeps its PIN hashes unless the text set new PINs."""
    if isinstance(entry, Convention) or isinstance(current, Convention):
        return entry
    kept = {
        name: getattr(entry, name) or getattr(current, name)
        for name in ("cancel_pin_hash", "duress_pin_hash")
    }
    return entry.model_copy(update=kept)


Lookup = Callable[[DirectorySnapshot, str], Entry | None]
Save = Callable[[Ctx, Any], Awaitable[Entry | None]]
SECTIONS: dict[str, Section] = {"practitioner": "practitioners", "site": "sites", "convention": "conventions"}


def add_yaml_routes(router: APIRouter, kind: str, what: str, lookup: Lookup, save: Save) -> None:
    """``GET /{id}/yaml``, ``POST /yaml`` and ``PUT /{id}/yaml`` on ``router`` (admins only, audited).

    ``what``: the entry's French name in 404s; ``lookup``: the entry in a snapshot;
    ``save``: stores a checked entry (returning it as stored if that differs, e.g. geocoded).
    """
    section = SECTIONS[kind]

    async def audited(ctx: Ctx, admin: User, ip: str, entry: Entry, change: str) -> EntryYaml:
        stored = await save(ctx, entry) or entry
        await ctx.cache.refresh()
        await ctx.audit.record(
            admin,
            audit.CONFIG_CHANGE,
            target_kind=kind,
            target_id=stored.id,
            ip=ip,
            change=change,
            via="yaml",
        )
        return as_yaml(section, stored)

    @router.get("/{entry_id}/yaml", response_model=EntryYaml, name=f"get_{kind}_yaml")
    async def get_yaml(entry_id: Id, _: AdminUser, ctx: Ctx) -> EntryYaml:
        """The entry as the directory file writes it (never its PIN hashes)."""
        entry = lookup(ctx.cache.current, entry_id)
        if entry is None:
            raise not_found(what)
        return as_yaml(section, entry)

    @router.post(
        "/yaml", response_model=EntryYaml, status_code=status.HTTP_201_CREATED, name=f"create_{kind}_yaml"
    )
    async def create_yaml(body: EntryYaml, admin: AdminUser, ctx: Ctx, ip: ClientIp) -> EntryYaml:
        """A new entry from directory YAML; the loader's problems (422) save nothing; 409 if the id exists."""
        return await audited(ctx, admin, ip, await parsed(ctx, section, body, None), "create")

    @router.put("/{entry_id}/yaml", response_model=EntryYaml, name=f"put_{kind}_yaml")
    async def put_yaml(entry_id: Id, body: EntryYaml, admin: AdminUser, ctx: Ctx, ip: ClientIp) -> EntryYaml:
        """Replace an entry from directory YAML (PINs kept unless given in clear); 422 saves nothing."""
        current = lookup(ctx.cache.current, entry_id)
        if current is None:
            raise not_found(what)
        entry = keep_pins(await parsed(ctx, section, body, entry_id), current)
        return await audited(ctx, admin, ip, entry, "update")
