"""An in-memory, immutable copy of the directory: the hot path reads only this.

The store is the source of truth; the snapshot is reloaded after every change
made through this process, and whenever the store's directory version (a
counter bumped by triggers, whoever writes) has moved: changes by the admin
CLI or another instance, such as a revocation, are picked up within
``refresh_interval_s``. Polling the version instead of reloading everything
matters: re-validating 100,000 devices takes about two seconds of Python.

When the version moved, the cache reads only the rows changed since its own
version (the store's change log, filled by the same triggers) and patches its
snapshot: an edit costs its own rows, not a read of 100,000 devices. The whole
directory is read at start, and when the log cannot say (pruned, or more than
20,000 rows changed at once); that work, and the patching of an import's
thousands of rows, runs in worker threads (the store parses large lists there,
and the snapshot is assembled or patched there), so alerts arriving meanwhile
are not held: the event loop gets the GIL back within the interpreter's switch
interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from dispatcher.directory import search
from dispatcher.directory.communes import CommuneIndex
from dispatcher.directory.site_index import SiteIndex
from dispatcher.domain import Convention, Device, DeviceState, HomeVisit, Practitioner, Site
from dispatcher.store.rows import off_the_loop_if_many
from protocol.messages import Location

if TYPE_CHECKING:
    from dispatcher.store.base import DirectoryDelta, Store

log = logging.getLogger(__name__)

#: Snapshots whose changed devices the cache remembers (one per catch-up; the health monitor
#: asks once a second what changed since the one it watches).
KEPT_GENERATIONS = 64


L = TypeVar("L", Practitioner, Site, Device)


@dataclass(frozen=True)
class Listed(Generic[L]):
    """Records in id order and, at the same index, the folded text that finds each.

    Two flat tuples rather than one pair per record: a tuple of strings is not
    tracked by the garbage collector, and 150,000 pairs made after start (and
    its ``gc.freeze``) would lengthen every full collection pass.
    """

    texts: tuple[str, ...]
    records: tuple[L, ...]


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
    generation: int = 0  # numbered by the cache, which knows what each one changed

    @cached_property
    def site_index(self) -> SiteIndex:
        """The sites by position (built once per snapshot: by the cache before it serves it)."""
        return SiteIndex(self.sites.values())

    @cached_property
    def devices_by_id(self) -> tuple[Device, ...]:
        """The devices sorted by id (the devices' table), sorted once per snapshot."""
        return tuple(sorted(self.devices.values(), key=lambda d: d.id))

    @cached_property
    def practitioner_devices(self) -> dict[str, tuple[Device, ...]]:
        """Each practitioner's devices: one pass over the devices per snapshot, not one per
        practitioner or device asked about (a territory's 100,000 were 10^10 steps)."""
        devices: dict[str, list[Device]] = {}
        for d in self.devices.values():
            if d.practitioner_id:
                devices.setdefault(d.practitioner_id, []).append(d)
        return {p: tuple(ds) for p, ds in devices.items()}

    @cached_property
    def practitioner_sites(self) -> dict[str, tuple[str, ...]]:
        """For each practitioner, the sites her devices are bound to (where a carried device of
        hers, bound to none, belongs)."""
        return {
            p: tuple(sorted({d.site_id for d in ds if d.site_id and d.site_id in self.sites}))
            for p, ds in self.practitioner_devices.items()
        }

    @cached_property
    def territory_devices(self) -> dict[frozenset[str], tuple[Device, ...]]:
        """Memo of the devices (by id) an operator of these conventions sees, filled as operators
        ask (:func:`dispatcher.web.api.devices.device_health`): once per territory and snapshot,
        not once per console's read."""
        return {}

    @cached_property
    def territory_ids(self) -> dict[frozenset[str], frozenset[str]]:
        """The ids of :attr:`territory_devices`, made once per territory and snapshot: a mobile
        network's outage flags tens of thousands of devices, each tested against a territory."""
        return {}

    @cached_property
    def site_conventions(self) -> dict[str, str | None]:
        """Memo of each site's convention id, filled as sites are asked about
        (:meth:`dispatcher.web.api.access.Access.site_convention`): a territory test per site
        and snapshot, not one per device of the site and request."""
        return {}

    @cached_property
    def practitioners_listed(self) -> Listed[Practitioner]:
        """The practitioners by id, with the text that finds each (:mod:`dispatcher.directory.search`):
        folded once per snapshot, for the lists and the alerts' filter at national scale."""
        listed = tuple(sorted(self.practitioners.values(), key=lambda p: p.id))
        return Listed(tuple(search.practitioner_text(p) for p in listed), listed)

    @cached_property
    def sites_listed(self) -> Listed[Site]:
        """The sites by id, with the text that finds each: folded once per snapshot."""
        listed = tuple(sorted(self.sites.values(), key=lambda s: s.id))
        return Listed(tuple(search.site_text(s) for s in listed), listed)

    @cached_property
    def devices_listed(self) -> Listed[Device]:
        """The devices by id, with the text that finds each (its id, label, practitioner, site)."""
        whose, where = self.practitioners, self.sites
        texts = tuple(
            search.device_text(d, whose.get(d.practitioner_id or ""), where.get(d.site_id or ""))
            for d in self.devices_by_id
        )
        return Listed(texts, self.devices_by_id)

    def key_for(self, device_id: str) -> bytes | None:
        """HMAC key of an active device; None for unknown or revoked ones."""
        return self.keys.get(device_id)

    def any_key_for(self, device_id: str) -> bytes | None:
        """Key even of a revoked device: downlinks about its past alerts still need signing."""
        return self.keys.get(device_id) or self.revoked_keys.get(device_id)

    def updated(self, delta: DirectoryDelta, *, generation: int = 0) -> DirectorySnapshot:
        """This snapshot with the delta's rows replaced or removed; what did not change is shared."""
        keys, revoked = self.keys, self.revoked_keys
        if delta.credentials:
            keys, revoked = dict(keys), dict(revoked)
            for device_id, creds in delta.credentials.items():
                keys.pop(device_id, None)
                revoked.pop(device_id, None)
                if creds is not None:
                    (keys if creds.state is DeviceState.ACTIVE else revoked)[device_id] = creds.hmac_key
        snapshot = DirectorySnapshot(
            practitioners=_patched(self.practitioners, delta.practitioners),
            sites=_patched(self.sites, delta.sites),
            devices=_patched(self.devices, delta.devices),
            keys=keys,
            visits=_patched_rows(self.visits, delta.visits, order=lambda v: (v.ends_at, v.id)),
            conventions=_patched_rows(self.conventions, delta.conventions, order=lambda c: c.id),
            revoked_keys=revoked,
            generation=generation,
        )
        if not delta.sites and "site_index" in self.__dict__:
            snapshot.__dict__["site_index"] = self.site_index  # same sites: the same index serves
        # The web side's memos, kept while what they are made of is unchanged: a home visit
        # starting or ending makes a new snapshot every few seconds in a national deployment.
        changed = {n for n in ("practitioners", "devices", "sites", "conventions") if getattr(delta, n)}
        for memo, made_of in _MEMOS.items():
            if memo in self.__dict__ and not changed & made_of:
                snapshot.__dict__[memo] = self.__dict__[memo]
        return snapshot


#: The snapshot's memos of the web side, and the parts of the directory each is made of.
_MEMOS = {
    "devices_by_id": {"devices"},
    "practitioner_devices": {"devices"},
    "practitioner_sites": {"devices", "sites"},
    "territory_devices": {"devices", "sites", "conventions"},
    "territory_ids": {"devices", "sites", "conventions"},
    "site_conventions": {"sites", "conventions"},
    "practitioners_listed": {"practitioners"},
    "sites_listed": {"sites"},
    "devices_listed": {"devices", "practitioners", "sites"},
}

R = TypeVar("R", Practitioner, Site, Device, HomeVisit, Convention)


def _patched(records: dict[str, R], changes: Mapping[str, R | None]) -> dict[str, R]:
    if not changes:
        return records
    patched = dict(records)
    for record_id, record in changes.items():
        if record is None:
            patched.pop(record_id, None)
        elif record != records.get(record_id):  # a row rewritten as it was keeps its object
            patched[record_id] = record
    return patched


def _patched_rows(
    rows: tuple[R, ...], changes: Mapping[str, R | None], *, order: Callable[[R], Any]
) -> tuple[R, ...]:
    """Rows kept as a tuple in the store's order (visits by end, conventions by id), patched."""
    if not changes:
        return rows
    return tuple(sorted(_patched({r.id: r for r in rows}, changes).values(), key=order))


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
        self._refreshing = asyncio.Lock()
        # The devices each recent generation changed (None: read in full), oldest first.
        self._device_changes: deque[tuple[int, frozenset[str] | None]] = deque(maxlen=KEPT_GENERATIONS)

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
        """Catch up with the store now: the rows changed since the last load, or everything."""
        # One refresh at a time: two overlapping ones could finish in the wrong
        # order and put back an older snapshot under a newer version.
        async with self._refreshing:
            # Read the version first: a change committed during the load moves it
            # again, so the next poll reads it rather than missing it.
            version = await self._store.directory_version()
            delta = None
            if self.version is not None and version >= self.version:
                delta = await self._store.directory_delta(self.version, version)
            generation = self.current.generation + 1
            if delta is None:
                snapshot = replace(await load_snapshot(self._store), generation=generation)
            else:
                # An import patches thousands of rows: off the event loop, as a full read is.
                current = self.current
                snapshot = await off_the_loop_if_many(
                    lambda: current.updated(delta, generation=generation), delta.rows
                )
            if "site_index" not in snapshot.__dict__:
                # Built here, in a thread, not by the first alert with a fix (thousands of sites).
                await asyncio.to_thread(getattr, snapshot, "site_index")
            self.current = snapshot
            self._device_changes.append((generation, None if delta is None else frozenset(delta.devices)))
            self.version = version

    def devices_changed(self, since: DirectorySnapshot, upto: DirectorySnapshot) -> frozenset[str] | None:
        """The devices whose rows changed from snapshot ``since`` to the later ``upto``; None when
        the cache cannot say (a full read in between, or too long ago): compare them whole."""
        steps = [ids for g, ids in self._device_changes if since.generation < g <= upto.generation]
        if len(steps) != upto.generation - since.generation:
            return None
        changed: set[str] = set()
        for ids in steps:
            if ids is None:
                return None
            changed |= ids
        return frozenset(changed)

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
