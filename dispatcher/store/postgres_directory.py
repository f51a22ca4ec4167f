"""PostgreSQL side of the directory (mixed into PostgresStore).

Same semantics as :mod:`dispatcher.store.sqlite_directory`; what differs is
that several instances share the anti-replay windows: they are read under
the devices' row locks (:meth:`PostgresDirectory._lock_windows`) and merged.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from dispatcher.domain import Device, HomeVisit
from dispatcher.store.base import AlreadyExists, CommuneRecord, DeviceCredentials, NotFound
from dispatcher.store.documents import DocumentDirectory
from dispatcher.store.pgutil import Conn, PostgresMixin, _status_count, _utc, utcnow
from protocol.replay import SequenceWindow, merge_windows

M = TypeVar("M", bound=BaseModel)

_BY_END = 'ORDER BY ends_at, id COLLATE "C"'  # the snapshot's order: ties by id, as Python compares


class PostgresDirectory(PostgresMixin, DocumentDirectory):
    """Directory documents, devices, replay windows, secrets, communes and home visits."""

    async def _upsert_doc(self, table: str, record: BaseModel, record_id: str) -> None:
        sql = (
            f"INSERT INTO {table}(id, doc) VALUES ($1, $2::text::jsonb)"
            " ON CONFLICT (id) DO UPDATE SET doc=excluded.doc"
        )
        await self._tx(lambda c: c.execute(sql, record_id, record.model_dump_json()))

    async def _get_doc(self, table: str, model: type[M], record_id: str) -> M:
        row = await self._fetchrow(f"SELECT doc::text AS doc FROM {table} WHERE id=$1", record_id)
        if row is None:
            raise NotFound(f"{table[:-1]} {record_id!r} does not exist")
        return model.model_validate_json(row["doc"])

    async def _list_docs(self, table: str, model: type[M]) -> list[M]:
        rows = await self._fetch(f'SELECT doc::text AS doc FROM {table} ORDER BY id COLLATE "C"')
        return await self._parse_docs(table, model, rows)

    async def add_device(self, device: Device, hmac_key: bytes) -> None:
        await self._check_device_bindings(device)
        sql = (
            "INSERT INTO devices(id, doc, state, hmac_key, created_at)"
            " VALUES ($1, $2::text::jsonb, $3, $4, $5)"
        )
        try:
            await self._tx(
                lambda c: c.execute(
                    sql, device.id, device.model_dump_json(), device.state.value, hmac_key, utcnow()
                )
            )
        except AlreadyExists:
            raise AlreadyExists(f"device {device.id!r} already exists") from None

    async def update_device(self, device: Device) -> None:
        await self._check_device_bindings(device)
        status = await self._tx(
            lambda c: c.execute(
                "UPDATE devices SET doc=$1::text::jsonb, state=$2 WHERE id=$3",
                device.model_dump_json(),
                device.state.value,
                device.id,
            )
        )
        if _status_count(status) == 0:
            raise NotFound(f"device {device.id!r} does not exist")

    async def device_credentials(self) -> Sequence[DeviceCredentials]:
        return await self._parse_credentials(await self._fetch("SELECT id, hmac_key, state FROM devices"))

    async def directory_version(self) -> int:
        row = await self._fetchrow("SELECT version FROM directory_version WHERE id=1")
        return 0 if row is None else int(row["version"])

    async def _change_log(self, since: int, upto: int) -> tuple[Sequence[Any], int | None]:
        rows = await self._fetch(
            "SELECT DISTINCT tbl, id FROM directory_changes WHERE seq > $1 AND seq <= $2", since, upto
        )
        logged = await self._fetchrow("SELECT logged_from FROM directory_version WHERE id=1")
        return rows, None if logged is None else int(logged["logged_from"])

    async def _rows_by_id(self, table: str, ids: Collection[str]) -> Sequence[Any]:
        columns = "id, doc::text AS doc, hmac_key, state" if table == "devices" else "id, doc::text AS doc"
        return await self._fetch(f"SELECT {columns} FROM {table} WHERE id = ANY($1::text[])", list(ids))

    async def prune_directory_changes(self, keep: int) -> int:
        async def run(conn: Conn) -> int:
            status = await conn.execute(
                "DELETE FROM directory_changes WHERE seq <= (SELECT version FROM directory_version) - $1",
                keep,
            )
            await conn.execute(
                "UPDATE directory_version SET logged_from = greatest(logged_from, version - $1)", keep
            )
            return _status_count(status)

        return await self._tx(run)

    # -- communes and last known positions (GeoStore) ------------------------------

    async def replace_communes(self, departements: Sequence[str], communes: Sequence[CommuneRecord]) -> int:
        async def run(conn: Conn) -> int:
            await conn.execute("DELETE FROM communes WHERE departement = ANY($1::text[])", list(departements))
            await conn.executemany(
                "INSERT INTO communes(code, nom, departement, geometry) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (code) DO UPDATE SET nom=excluded.nom, departement=excluded.departement,"
                " geometry=excluded.geometry",
                [(c.code, c.nom, c.departement, c.wkb) for c in communes],
            )
            await conn.execute("UPDATE communes_version SET version=version+1 WHERE id=1")
            return int(await conn.fetchval("SELECT count(*) FROM communes"))

        return await self._tx(run)

    async def list_communes(self) -> list[CommuneRecord]:
        rows = await self._fetch("SELECT code, nom, departement, geometry FROM communes ORDER BY code")
        return [CommuneRecord(r["code"], r["nom"], r["departement"], bytes(r["geometry"])) for r in rows]

    async def communes_version(self) -> int:
        row = await self._fetchrow("SELECT version FROM communes_version WHERE id=1")
        return 0 if row is None else int(row["version"])

    async def save_last_fixes(self, fixes: dict[str, dict[str, Any]]) -> None:
        if not fixes:
            return
        rows = [(json.dumps(f), d, f["fix_ts"]) for d, f in fixes.items()]
        sql = (
            "UPDATE devices SET last_fix=$1::text::jsonb WHERE id=$2 AND (last_fix IS NULL"
            " OR COALESCE((last_fix->>'fix_ts')::numeric, 0) < $3)"
        )
        await self._tx(lambda c: c.executemany(sql, rows))

    async def replay_windows(self) -> dict[str, SequenceWindow]:
        """Persisted anti-replay windows of every device."""
        rows = await self._fetch("SELECT id, replay_high, replay_seen FROM devices")
        return {
            r["id"]: SequenceWindow.from_stored(r["replay_high"], bytes(r["replay_seen"] or b""))
            for r in rows
        }

    async def deployment_secret(self, name: str, candidate: str) -> str:
        async def run(conn: Conn) -> str:
            await conn.execute(
                "INSERT INTO deployment_secrets(name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                name,
                candidate,
            )
            value: str = await conn.fetchval("SELECT value FROM deployment_secrets WHERE name=$1", name)
            return value

        return await self._tx(run)

    async def save_replay_windows(self, windows: dict[str, SequenceWindow]) -> None:
        """Flush in-memory windows in one transaction, merged with what is stored.

        SqliteStore skips a window older than the stored one; here another
        instance may have stored seqs this one never saw, so both are kept.
        """

        async def run(conn: Conn) -> None:
            stored = await self._lock_windows(conn, windows.keys())
            rows = [
                (d, merged.high, merged.to_bytes())
                for d, w in windows.items()
                if d in stored and (merged := merge_windows(stored[d], w)) != stored[d]
            ]
            await conn.executemany("UPDATE devices SET replay_high=$2, replay_seen=$3 WHERE id=$1", rows)

        await self._tx(run)

    async def admit_sequence(self, device_id: str, seq: int) -> bool:
        async def run(conn: Conn) -> bool:
            window = (await self._lock_windows(conn, [device_id])).get(device_id)
            if window is None or not window.is_fresh(seq):
                return False
            window = window.admit(seq)
            await conn.execute(
                "UPDATE devices SET replay_high=$2, replay_seen=$3 WHERE id=$1",
                device_id,
                window.high,
                window.to_bytes(),
            )
            return True

        return await self._tx(run)

    async def _lock_windows(self, conn: Conn, device_ids: Iterable[str]) -> dict[str, SequenceWindow]:
        """Lock the devices' rows (sorted: a fixed order cannot deadlock) and read their windows."""
        rows = await conn.fetch(
            "SELECT id, replay_high, replay_seen FROM devices WHERE id = ANY($1::text[])"
            ' ORDER BY id COLLATE "C" FOR UPDATE',
            sorted(set(device_ids)),
        )
        return {
            r["id"]: SequenceWindow.from_stored(r["replay_high"], bytes(r["replay_seen"] or b""))
            for r in rows
        }

    async def upsert_visit(self, visit: HomeVisit) -> None:
        await self.get_practitioner(visit.practitioner_id)
        sql = (
            "INSERT INTO visits(id, practitioner_id, ends_at, doc) VALUES ($1, $2, $3, $4::text::jsonb)"
            " ON CONFLICT (id) DO UPDATE SET practitioner_id=excluded.practitioner_id,"
            " ends_at=excluded.ends_at, doc=excluded.doc"
        )
        await self._tx(
            lambda c: c.execute(
                sql, visit.id, visit.practitioner_id, _utc(visit.ends_at), visit.model_dump_json()
            )
        )

    async def delete_visit(self, visit_id: str) -> None:
        status = await self._tx(lambda c: c.execute("DELETE FROM visits WHERE id=$1", visit_id))
        if _status_count(status) == 0:
            raise NotFound(f"visit {visit_id!r} does not exist")

    async def list_visits(self, practitioner_id: str | None = None) -> Sequence[HomeVisit]:
        if practitioner_id is None:
            rows = await self._fetch(f"SELECT doc::text AS doc FROM visits {_BY_END}")
        else:
            rows = await self._fetch(
                f"SELECT doc::text AS doc FROM visits WHERE practitioner_id=$1 {_BY_END}", practitioner_id
            )
        return [HomeVisit.model_validate_json(r["doc"]) for r in rows]
