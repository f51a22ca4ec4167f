"""Directory methods both stores share, written once over three document primitives.

Each store keeps practitioners, sites, conventions and devices as validated
JSON documents; only how a document is read or written differs (SQL dialect,
driver), so the stores implement :meth:`_upsert_doc`, :meth:`_get_doc`,
:meth:`_list_docs` and :meth:`update_device`, and inherit the rest from here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from dispatcher.domain import Convention, Device, DeviceState, HomeVisit, Practitioner, Site
from dispatcher.store.base import DeviceCredentials, DirectoryDelta
from dispatcher.store.rows import Reused, parse_rows

M = TypeVar("M", bound=BaseModel)


_STATES = {state.value: state for state in DeviceState}  # DeviceState(text) costs 2 µs a device

#: Above this many changed rows a delta is not worth it: the caller reads the whole directory.
#: Reading 20,000 rows by id still costs a fraction of reading a national directory (100,000
#: devices): an import of a few thousand devices is caught up with row by row
#: (docs/performance.md, "An import while alerts come").
MAX_DELTA_ROWS = 20_000


def _credentials(row: Any) -> DeviceCredentials:
    return DeviceCredentials(row["id"], bytes(row["hmac_key"]), _STATES[row["state"]])


class DocumentDirectory(ABC):
    """Practitioners, sites, conventions and device lookups over document tables."""

    #: What the last reads parsed (set by each store's constructor): a directory reload after an
    #: edit parses the rows that changed, not 100,000 unchanged devices.
    _parsed: Reused

    async def _parse_docs(self, table: str, model: type[M], rows: Sequence[Any]) -> list[M]:
        """Rows with a ``doc`` column (JSON text) as ``model``; unchanged ones as last read."""
        return await self._parsed.parse(
            table, lambda r: model.model_validate_json(r["doc"]), rows, content=lambda r: r["doc"]
        )

    async def _parse_credentials(self, rows: Sequence[Any]) -> list[DeviceCredentials]:
        """Rows of ``devices`` (id, hmac_key, state) as the ingest's credentials."""
        return await self._parsed.parse(
            "credentials", _credentials, rows, content=lambda r: (r["id"], bytes(r["hmac_key"]), r["state"])
        )

    @abstractmethod
    async def _change_log(self, since: int, upto: int) -> tuple[Sequence[Any], int | None]:
        """The log's distinct (``tbl``, ``id``) rows after ``since`` up to ``upto``, then the
        version it is complete from (``logged_from``), read in that order."""

    async def _directory_changes(self, since: int, upto: int) -> dict[str, set[str]] | None:
        """Ids changed per table after ``since`` up to ``upto``; None when the log was pruned past it."""
        rows, logged_from = await self._change_log(since, upto)
        # Read after the rows: pruning only raises it, so a value still at most
        # ``since`` proves that nothing the read needed was gone.
        if logged_from is None or since < logged_from:
            return None
        changed: dict[str, set[str]] = {}
        for r in rows:
            changed.setdefault(r["tbl"], set()).add(r["id"])
        return changed

    @abstractmethod
    async def _rows_by_id(self, table: str, ids: Collection[str]) -> Sequence[Any]:
        """The rows of ``table`` with these ids (``id``, ``doc``; devices also ``hmac_key``, ``state``)."""

    async def directory_delta(self, since: int, upto: int) -> DirectoryDelta | None:
        changed = await self._directory_changes(since, upto)
        if changed is None or sum(map(len, changed.values())) > MAX_DELTA_ROWS:
            return None

        async def read(table: str, model: type[M]) -> dict[str, M | None]:
            ids = changed.get(table, set())
            rows = await self._rows_by_id(table, ids) if ids else []
            found = dict(await parse_rows(lambda r: (r["id"], model.model_validate_json(r["doc"])), rows))
            return {i: found.get(i) for i in ids}

        device_ids = changed.get("devices", set())
        device_rows = await self._rows_by_id("devices", device_ids) if device_ids else []
        # An import changes thousands of devices: parsed off the event loop (rows.OFF_LOOP_ROWS).
        parsed = await parse_rows(
            lambda r: (r["id"], Device.model_validate_json(r["doc"]), _credentials(r)), device_rows
        )
        devices = {device_id: device for device_id, device, _ in parsed}
        credentials: Mapping[str, DeviceCredentials] = {device_id: creds for device_id, _, creds in parsed}
        return DirectoryDelta(
            practitioners=await read("practitioners", Practitioner),
            sites=await read("sites", Site),
            conventions=await read("conventions", Convention),
            visits=await read("visits", HomeVisit),
            devices={i: devices.get(i) for i in device_ids},
            credentials={i: credentials.get(i) for i in device_ids},
        )

    @abstractmethod
    async def _upsert_doc(self, table: str, record: BaseModel, record_id: str) -> None:
        """Insert or replace the document ``record_id`` of ``table`` (one transaction)."""

    @abstractmethod
    async def _get_doc(self, table: str, model: type[M], record_id: str) -> M:
        """The document ``record_id`` of ``table``; raises NotFound."""

    @abstractmethod
    async def _list_docs(self, table: str, model: type[M]) -> list[M]:
        """Every document of ``table``, ordered by id."""

    @abstractmethod
    async def update_device(self, device: Device) -> None:
        """Replace a device's document and state; raises NotFound."""

    async def upsert_practitioner(self, practitioner: Practitioner) -> None:
        await self._upsert_doc("practitioners", practitioner, practitioner.id)

    async def get_practitioner(self, practitioner_id: str) -> Practitioner:
        return await self._get_doc("practitioners", Practitioner, practitioner_id)

    async def list_practitioners(self) -> Sequence[Practitioner]:
        return await self._list_docs("practitioners", Practitioner)

    async def upsert_site(self, site: Site) -> None:
        await self._upsert_doc("sites", site, site.id)

    async def get_site(self, site_id: str) -> Site:
        return await self._get_doc("sites", Site, site_id)

    async def list_sites(self) -> Sequence[Site]:
        return await self._list_docs("sites", Site)

    async def upsert_convention(self, convention: Convention) -> None:
        await self._upsert_doc("conventions", convention, convention.id)

    async def list_conventions(self) -> Sequence[Convention]:
        return await self._list_docs("conventions", Convention)

    async def _check_device_bindings(self, device: Device) -> None:
        if device.practitioner_id is not None:
            await self.get_practitioner(device.practitioner_id)
        if device.site_id is not None:
            await self.get_site(device.site_id)

    async def get_device(self, device_id: str) -> Device:
        return await self._get_doc("devices", Device, device_id)

    async def list_devices(self) -> Sequence[Device]:
        return await self._list_docs("devices", Device)

    async def revoke_device(self, device_id: str) -> None:
        device = await self.get_device(device_id)
        await self.update_device(device.model_copy(update={"state": DeviceState.REVOKED}))
