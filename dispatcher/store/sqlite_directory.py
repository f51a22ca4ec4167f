"""SQLite side of the directory (mixed into SqliteStore).

The document primitives :class:`~dispatcher.store.documents.DocumentDirectory`
builds practitioners, sites and conventions on; the devices, their
credentials and anti-replay windows; the deployment secrets; the communes and
last known fixes (GeoStore); the home visits. Kept apart from
:mod:`dispatcher.store.sqlite` so that each file stays small.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from dispatcher.domain import Device, HomeVisit
from dispatcher.store.base import AlreadyExists, CommuneRecord, DeviceCredentials, NotFound
from dispatcher.store.documents import DocumentDirectory
from dispatcher.store.sqliteutil import SqliteMixin, _iso, utcnow
from protocol.replay import SequenceWindow, merge_windows

M = TypeVar("M", bound=BaseModel)


class SqliteDirectory(SqliteMixin, DocumentDirectory):
    """Directory documents, devices, replay windows, secrets, communes and home visits."""

    async def _upsert_doc(self, table: str, record: BaseModel, record_id: str) -> None:
        async with self._tx() as tx:
            await tx.execute(
                f"INSERT INTO {table}(id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc=excluded.doc",
                (record_id, record.model_dump_json()),
            )

    async def _get_doc(self, table: str, model: type[M], record_id: str) -> M:
        row = await self._one(f"SELECT doc FROM {table} WHERE id=?", (record_id,))
        if row is None:
            raise NotFound(f"{table[:-1]} {record_id!r} does not exist")
        return model.model_validate_json(row["doc"])

    async def _list_docs(self, table: str, model: type[M]) -> list[M]:
        return await self._parse_docs(table, model, await self._all(f"SELECT doc FROM {table} ORDER BY id"))

    async def add_device(self, device: Device, hmac_key: bytes) -> None:
        await self._check_device_bindings(device)
        if await self._one("SELECT 1 FROM devices WHERE id=?", (device.id,)) is not None:
            raise AlreadyExists(f"device {device.id!r} already exists")
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO devices(id, doc, state, hmac_key, created_at) VALUES (?, ?, ?, ?, ?)",
                (device.id, device.model_dump_json(), device.state.value, hmac_key, _iso(utcnow())),
            )

    async def update_device(self, device: Device) -> None:
        await self._check_device_bindings(device)
        async with self._tx() as tx:
            cur = await tx.execute(
                "UPDATE devices SET doc=?, state=? WHERE id=?",
                (device.model_dump_json(), device.state, device.id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"device {device.id!r} does not exist")

    async def device_credentials(self) -> Sequence[DeviceCredentials]:
        return await self._parse_credentials(await self._all("SELECT id, hmac_key, state FROM devices"))

    async def directory_version(self) -> int:
        row = await self._one("SELECT version FROM directory_version WHERE id=1")
        return 0 if row is None else int(row["version"])

    async def _change_log(self, since: int, upto: int) -> tuple[Sequence[Any], int | None]:
        rows = await self._all(
            "SELECT DISTINCT tbl, id FROM directory_changes WHERE seq > ? AND seq <= ?", (since, upto)
        )
        logged = await self._one("SELECT logged_from FROM directory_version WHERE id=1")
        return rows, None if logged is None else int(logged["logged_from"])

    async def _rows_by_id(self, table: str, ids: Collection[str]) -> Sequence[Any]:
        columns = "id, doc, hmac_key, state" if table == "devices" else "id, doc"
        return await self._all(
            f"SELECT {columns} FROM {table} WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(ids)),),
        )

    async def prune_directory_changes(self, keep: int) -> int:
        async with self._tx() as tx:
            cur = await tx.execute(
                "DELETE FROM directory_changes WHERE seq <= (SELECT version FROM directory_version) - ?",
                (keep,),
            )
            await tx.execute(
                "UPDATE directory_version SET logged_from = max(logged_from, version - ?)", (keep,)
            )
            return cur.rowcount

    async def replay_windows(self) -> dict[str, SequenceWindow]:
        """Persisted anti-replay windows of every device."""
        rows = await self._all("SELECT id, replay_high, replay_seen FROM devices")
        return {
            r["id"]: SequenceWindow.from_stored(r["replay_high"], bytes(r["replay_seen"] or b""))
            for r in rows
        }

    async def save_replay_windows(self, windows: dict[str, SequenceWindow]) -> None:
        """Flush in-memory windows in one transaction, merged with the stored ones (their union:
        :meth:`admit_sequence` may have stored numbers this window has not seen)."""
        async with self._tx() as tx:
            cur = await tx.execute(
                "SELECT id, replay_high, replay_seen FROM devices"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(windows)),),
            )
            stored = {
                r[0]: SequenceWindow.from_stored(r[1], bytes(r[2] or b"")) for r in await cur.fetchall()
            }
            rows = [
                (merged.high, merged.to_bytes(), d)
                for d, w in windows.items()
                if d in stored and (merged := merge_windows(stored[d], w)) != stored[d]
            ]
            await tx.executemany("UPDATE devices SET replay_high=?, replay_seen=? WHERE id=?", rows)

    async def admit_sequence(self, device_id: str, seq: int) -> bool:
        async with self._tx() as tx:
            cur = await tx.execute("SELECT replay_high, replay_seen FROM devices WHERE id=?", (device_id,))
            row = await cur.fetchone()
            if row is None:
                return False
            window = SequenceWindow.from_stored(row[0], bytes(row[1] or b""))
            if not window.is_fresh(seq):
                return False
            window = window.admit(seq)
            await tx.execute(
                "UPDATE devices SET replay_high=?, replay_seen=? WHERE id=?",
                (window.high, window.to_bytes(), device_id),
            )
            return True

    async def deployment_secret(self, name: str, candidate: str) -> str:
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO deployment_secrets(name, value) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
                (name, candidate),
            )
            cur = await tx.execute("SELECT value FROM deployment_secrets WHERE name=?", (name,))
            row = await cur.fetchone()
        assert row is not None
        return str(row[0])

    # -- communes and last known positions (GeoStore) ------------------------------

    async def replace_communes(self, departements: Sequence[str], communes: Sequence[CommuneRecord]) -> int:
        async with self._tx() as tx:
            await tx.executemany("DELETE FROM communes WHERE departement=?", [(d,) for d in departements])
            await tx.executemany(
                "INSERT INTO communes(code, nom, departement, geometry) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(code) DO UPDATE SET nom=excluded.nom, departement=excluded.departement,"
                " geometry=excluded.geometry",
                [(c.code, c.nom, c.departement, c.wkb) for c in communes],
            )
            await tx.execute("UPDATE communes_version SET version=version+1 WHERE id=1")
            async with tx.execute("SELECT count(*) FROM communes") as cur:
                row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def list_communes(self) -> list[CommuneRecord]:
        rows = await self._all("SELECT code, nom, departement, geometry FROM communes ORDER BY code")
        return [CommuneRecord(r["code"], r["nom"], r["departement"], bytes(r["geometry"])) for r in rows]

    async def communes_version(self) -> int:
        row = await self._one("SELECT version FROM communes_version WHERE id=1")
        return 0 if row is None else int(row["version"])

    async def save_last_fixes(self, fixes: dict[str, dict[str, Any]]) -> None:
        if not fixes:
            return
        async with self._tx() as tx:
            await tx.executemany(
                "UPDATE devices SET last_fix=? WHERE id=? AND (last_fix IS NULL"
                " OR COALESCE(json_extract(last_fix, '$.fix_ts'), 0) < ?)",
                [(json.dumps(f), d, f["fix_ts"]) for d, f in fixes.items()],
            )

    async def upsert_visit(self, visit: HomeVisit) -> None:
        await self.get_practitioner(visit.practitioner_id)
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO visits(id, practitioner_id, ends_at, doc) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET practitioner_id=excluded.practitioner_id,"
                " ends_at=excluded.ends_at, doc=excluded.doc",
                (visit.id, visit.practitioner_id, _iso(visit.ends_at), visit.model_dump_json()),
            )

    async def delete_visit(self, visit_id: str) -> None:
        async with self._tx() as tx:
            cur = await tx.execute("DELETE FROM visits WHERE id=?", (visit_id,))
            if cur.rowcount == 0:
                raise NotFound(f"visit {visit_id!r} does not exist")

    async def list_visits(self, practitioner_id: str | None = None) -> Sequence[HomeVisit]:
        if practitioner_id is None:
            rows = await self._all("SELECT doc FROM visits ORDER BY ends_at, id")
        else:
            rows = await self._all(
                "SELECT doc FROM visits WHERE practitioner_id=? ORDER BY ends_at, id", (practitioner_id,)
            )
        return [HomeVisit.model_validate_json(r["doc"]) for r in rows]
