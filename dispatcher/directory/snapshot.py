"""An in-memory, immutable copy of the directory: the hot path reads only this.

The store is the source of truth; the snapshot is reloaded after every change
made through this process, and whenever the store's directory version (a
counter bumped by triggers, whoever writes) has moved: changes by the admin
CLI or another instance, such as a revocation, are picked up within
``refresh_interval_s``. Polling the version instead of reloading everything
matters: re-validating 100,000 devices takes about two seconds of Python. That
work runs in worker threads (the store parses large lists there, and the
snapshot is assembled there), so alerts arriving meanwhile are not held: the
event loop gets the GIL back within the interpreter's switch interval.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from dispatcher.directory.communes import CommuneIndex
from dispatcher.directory.site_index import SiteIndex
from dispatcher.domain import Convention, Device, DeviceState, HomeVisit, Practitioner, Site
from protocol.messages import Location

if TYPE_CHECKING:
    from dispatcher.store.base import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DirectorySnapshot:
    """The directory at one moment."""

    practitioners: dict[str, Practitioner] = field(default_factory=dict)
    sites: dict[str, Site] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)  # active devices only
    visits: tuple[HomeVisit, ...] = ()
    conventions: tuple[Convention, ...] = ()
    revoked_keys: dict[str, bytes] = field(default_factory=dict)

    @cached_property
    def site_index(self) -> SiteIndex:
        """The sites by position (built once per snapshot, on first use)."""
        return SiteIndex(self.sites.values())

    def key_for(self, device_id: str) -> bytes | None:
        """HMAC key of an active device; None for unknown or revoked ones."""
        return self.keys.get(device_id)

    def any_key_for(self, device_id: str) -> bytes | None:
        """Key even of a revoked device: downlinks about its past alerts still need signing."""
        return self.keys.get(device_id) or self.revoked_keys.get(device_id)


async def load_snapshot(store: Store) -> DirectorySnapshot:
    """Read the whole directory; assembled off the event loop (100,000 devices: ~0.1 s of Python)."""
    creds = await store.device_credentials()
    practitioners, sites = await store.list_practitioners(), await store.list_sites()
    devices, visits = await store.list_devices(), await store.list_visits()
    conventions = await store.list_conventions()

    def assemble() -> DirectorySnapshot:
        return DirectorySnapshot(
            practitioners={p.id: p for p in practitioners},
            sites={s.id: s for s in sites},
            devices={d.id: d for d in devices},
            keys={c.device_id: c.hmac_key for c in creds if c.state is DeviceState.ACTIVE},
            visits=tuple(visits),
            conventions=tuple(conventions),
            revoked_keys={c.device_id: c.hmac_key for c in creds if c.state is not DeviceState.ACTIVE},
        )

    return await asyncio.to_thread(assemble)


class DirectoryCache:
    """Holds the current snapshot and the last GPS fix of each device."""

    def __init__(self, store: Store, *, refresh_interval_s: float = 1.0) -> None:
        self._store = store
        self._interval = refresh_interval_s
        self.current = DirectorySnapshot()
        self.last_fixes: dict[str, Location] = {}
        self.version: int | None = None  # directory version the snapshot was loaded at
        self.communes = CommuneIndex()
        self.communes_version: int | None = None
        self._unsaved_fixes: dict[str, Location] = {}

    def note_fix(self, device_id: str, fix: Location) -> None:
        """A fix from a heartbeat: the device's last known position if newer (saved by
        :meth:`save_fixes`; an alert's own fix is stored with the alert)."""
        known = self.last_fixes.get(device_id)
        if known is None or fix.fix_ts > known.fix_ts:
            self.last_fixes[device_id] = fix
            self._unsaved_fixes[device_id] = fix

    def forget_fixes_before(self, cutoff: datetime) -> None:
        """RGPD retention: drop last known positions older than ``cutoff`` from memory."""
        cutoff_ms = cutoff.timestamp() * 1000
        for fixes in (self.last_fixes, self._unsaved_fixes):
            for device_id in [d for d, f in fixes.items() if f.fix_ts < cutoff_ms]:
                del fixes[device_id]

    async def save_fixes(self) -> None:
        """Persist the heartbeat fixes noted since the last call (kept for a retry on failure)."""
        pending, self._unsaved_fixes = self._unsaved_fixes, {}
        try:
            await self._store.save_last_fixes({d: f.model_dump() for d, f in pending.items()})
        except Exception:
            self._unsaved_fixes = pending | self._unsaved_fixes
            raise

    async def refresh_communes_if_changed(self) -> bool:
        """Rebuild the commune index when ``vigie load-communes`` changed the contours.

        Built in a thread: with all of France it takes seconds, which the alert
        path must not wait for; the old index answers meanwhile.
        """
        version = await self._store.communes_version()
        if version == self.communes_version:
            return False
        records = await self._store.list_communes()
        self.communes = await asyncio.to_thread(CommuneIndex, records)
        self.communes_version = version
        log.info(
            "index des communes : %d communes (départements %s)",
            len(self.communes),
            ", ".join(sorted(self.communes.departements)) or "aucun : vigie load-communes",
        )
        return True

    async def refresh(self) -> None:
        """Reload from the store now."""
        # Read the version first: a change committed during the load moves it
        # again, so the next poll reloads rather than missing that change.
        version = await self._store.directory_version()
        self.current = await load_snapshot(self._store)
        self.version = version

    async def refresh_if_changed(self) -> bool:
        """Reload only if the directory changed since the last load; True if it did."""
        if await self._store.directory_version() == self.version:
            return False
        await self.refresh()
        return True

    async def load_last_fixes(self) -> None:
        for device_id in self.current.devices:
            raw = await self._store.last_fix(device_id)
            if raw:
                self.last_fixes[device_id] = Location.model_validate(raw)

    async def run(self) -> None:
        """Poll for changes until cancelled; a failed refresh keeps the old snapshot."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh_if_changed()
                await self.refresh_communes_if_changed()
            except Exception:
                log.exception("rechargement de l'annuaire en échec : l'annuaire déjà chargé reste en service")
