"""Device health, the I/O shell around :mod:`dispatcher.fleet.devicehealth`.

Every instance records the heartbeats and Last Wills it receives and merges
them into the store each pass; the instance that holds the ``health`` lease (one
at a time, taken over within a lease period when it dies) reads what the others
merged, decides the flags and writes each change with its operator event in one
transaction. So a device is flagged once per episode however many instances
share its traffic, and a new leader resumes from the stored flags.

A heartbeat whose sequence number is not above the highest one this instance
knows is refused at once (a replay); one replayed to an instance that never saw
the original is refused by the store's merge, which compares it with the
highest one merged by any instance: that heartbeat's effect is then undone here
and counted as a replay (docs/architecture.md, "Replay windows with N instances").
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import operator
import time
from collections import deque
from datetime import UTC, datetime

from dispatcher.directory.snapshot import DirectoryCache, DirectorySnapshot
from dispatcher.domain import Device
from dispatcher.events import EventBus
from dispatcher.fleet.devicehealth import (
    LOW_BATTERY,
    OFFLINE,
    DeviceHealth,
    HealthChange,
    Monitored,
    Watch,
    merge,
)
from dispatcher.metrics import Metrics
from dispatcher.store.base import FlagChange, Store
from protocol.codec import RejectReason
from protocol.fastbeat import WireHeartbeat
from protocol.messages import Heartbeat

__all__ = ["DeviceHealth", "HealthChange", "HealthMonitor"]

log = logging.getLogger(__name__)

# A silent device is flagged at most one pass after its missed intervals; a pass
# over 10,000 devices costs ~5 ms of the event loop (docs/performance.md).
HEALTH_PASS_S = 1.0
LEASE = "health"
# The leader holds its lease this long past each renewal: a dead leader is
# replaced within it (and one pass).
LEASE_S = 5.0
# Rows merged by a transaction that committed after a newer one are re-read for
# this long: merging is idempotent, so reading a row twice costs nothing.
REREAD_S = 3.0
# A new leader reads and evaluates the whole fleet (100,000 devices: about two
# seconds of Python); it does so in slices of this many devices, letting alerts
# through between slices.
SLICE = 2_000


class HealthMonitor:
    """Tracks devices' health on one instance; leads the flags when it holds the lease."""

    def __init__(
        self,
        *,
        store: Store,
        cache: DirectoryCache,
        bus: EventBus,
        metrics: Metrics,
        instance_id: str = "dispatcher-1",
        missed_intervals: float = 2.0,
        low_battery_pct: int = 20,
    ) -> None:
        self._store = store
        self._cache = cache
        self._bus = bus
        self._metrics = metrics
        self._instance_id = instance_id
        self._missed = missed_intervals
        self._low_battery = low_battery_pct
        self.devices: dict[str, DeviceHealth] = {}
        self._dirty: set[str] = set()
        self._heard: set[str] = set()  # of the dirty ones, those with a new heartbeat to merge
        self._watch = Watch(missed_intervals=missed_intervals, low_battery_pct=low_battery_pct)
        self.leading = False
        self._watching_since = time.time()
        self._revs: deque[tuple[float, int]] = deque()  # (monotonic time, highest rev read then)
        self._highest_rev = 0
        # (last_seen_at, status_at) as this instance last merged them, per device.
        self._merged: dict[str, tuple[object, object]] = {}
        self._monitored_of: DirectorySnapshot | None = None  # the snapshot the watch was given

    def _get(self, device_id: str) -> DeviceHealth:
        # Not setdefault(): it would build a DeviceHealth on every heartbeat.
        h = self.devices.get(device_id)
        if h is None:
            h = self.devices[device_id] = DeviceHealth(device_id)
        return h

    def on_heartbeat(self, hb: Heartbeat | WireHeartbeat, now: float) -> bool:
        """A heartbeat this instance received (verified, fresh by its timestamp); False for a replay:
        its sequence number is not above the highest one known here, and it changed nothing."""
        h = self._get(hb.device)
        before = (h.status, h.battery_pct)
        if not h.heard(
            now,
            hb.seq,
            battery_pct=hb.battery_pct,
            signal_dbm=hb.signal_dbm,
            firmware=hb.firmware,
            uptime_s=hb.uptime_s,
        ):
            return False
        self._dirty.add(hb.device)
        self._heard.add(hb.device)
        if self.leading:
            self._watch.heard(hb.device, h)
        self._announce_if_changed(h, before)
        return True

    def on_status(self, device_id: str, state: str, now: float) -> None:
        """A status message (retained online, or the Last Will's offline) this instance received."""
        h = self._get(device_id)
        before = (h.status, h.battery_pct)
        h.set_status(state, now)
        self._dirty.add(device_id)
        if self.leading:
            self._watch.touch(device_id)
        self._announce_if_changed(h, before)

    def _announce_if_changed(self, h: DeviceHealth, before: tuple[str | None, int | None]) -> None:
        # Only changes: 10,000 devices heartbeating must not flood the console.
        if (h.status, h.battery_pct) != before:
            self._bus.publish(
                "device_status", device_id=h.device_id, status=h.status, battery_pct=h.battery_pct
            )

    async def load(self) -> None:
        """Resume from the stored health (so a restart does not forget silences or flags)."""
        self._watching_since = time.time()
        self._revs.clear()
        self._highest_rev = 0
        rows = await self._store.device_health()
        for start in range(0, len(rows), SLICE):
            if start:
                await asyncio.sleep(0)  # let alerts through
            self._absorb(rows[start : start + SLICE], with_flags=True)
        self._watch.evaluate_all()  # every device, at the next pass (a new watching_since)
        # From here on, read only the rows merged since (see _pull).
        self._revs.append((time.monotonic() - REREAD_S, self._highest_rev))

    async def run(self, *, period_s: float = HEALTH_PASS_S) -> None:
        """One pass every ``period_s`` until cancelled; the lease is given up on the way out."""
        try:
            while True:
                await asyncio.sleep(period_s)
                try:
                    await self.tick()
                except Exception:
                    log.exception("santé des balises : passage en échec ; nouvel essai au prochain passage")
        finally:
            if self.leading:
                await asyncio.shield(self._store.release_lease(LEASE, self._instance_id))

    async def tick(self, now: float | None = None) -> list[HealthChange]:
        """One pass: merge what this instance heard; if it leads, raise and clear flags.

        As of ``now``, or by default as of the moment this instance's
        observations are merged and the others' are about to be read: at
        100,000 devices the merge takes a noticeable part of a second, and
        deciding as of the pass's start would flag a silent device a pass later
        than it could be. (Not later than the read: what another instance
        merges after it is seen only at the next pass.)
        """
        started = time.monotonic()
        await self.flush()
        flushed = time.monotonic()
        self._metrics.health_pass_seconds.labels("flush").observe(flushed - started)
        leading = await self._store.hold_lease(LEASE, self._instance_id, now=time.time(), lease_s=LEASE_S)
        if leading and not self.leading:
            log.info(
                "santé des balises : l'instance %s décide désormais des signalements hors ligne et batterie"
                " faible",
                self._instance_id,
            )
            await self.load()  # the flags the previous leader wrote, and everything merged so far
        self.leading = leading
        if not leading:
            return []  # (nothing was touched: on_heartbeat touches only while leading)
        as_of, pulled = time.time() if now is None else now, time.monotonic()
        await self._pull()
        checked = time.monotonic()
        self._metrics.health_pass_seconds.labels("pull").observe(checked - pulled)
        changes = await self.check(as_of)
        done = time.monotonic()
        self._metrics.health_pass_seconds.labels("check").observe(done - checked)
        self._metrics.health_pass_seconds.labels("pass").observe(done - started)
        return changes

    async def check(self, now: float) -> list[HealthChange]:
        """Raise and clear flags as of ``now`` (the leader's part): operator events, console, metrics."""
        await self._monitor()
        changes = self._watch.due(self.devices, now=now, watching_since=self._watching_since, limit=SLICE)
        while self._watch.backlog:
            await asyncio.sleep(0)  # a new leader's full evaluation: alerts go through between slices
            changes += self._watch.due(
                self.devices, now=now, watching_since=self._watching_since, limit=SLICE
            )
        await self._record(changes)
        flagged = [self.devices[d].flags for d in self._watch.flagged]  # a few among 100,000
        self._metrics.devices_offline.set(sum(OFFLINE in f for f in flagged))
        self._metrics.devices_low_battery.set(sum(LOW_BATTERY in f for f in flagged))
        return changes

    async def _monitor(self) -> None:
        """Watch the active devices of the directory, once per directory snapshot (not every pass).

        Only the devices the new snapshot added or changed are evaluated at the
        next pass; a device first monitored gets its health record here, in slices.
        """
        snapshot, watched = self._cache.current, self._monitored_of
        if watched is snapshot:
            return
        changed = None if watched is None else self._cache.devices_changed(watched, snapshot)
        if changed is not None:  # the cache knows which devices changed: only those are compared
            devices = snapshot.devices
            added = self._watch.watch_changes({d: _monitored_device(devices.get(d)) for d in changed})
        elif watched is not None and _same_devices(watched, snapshot):
            added = []  # an edit elsewhere (a practitioner, a visit): nothing to compare
        else:
            added = self._watch.watch(await asyncio.to_thread(_monitored, snapshot))
        self._monitored_of = snapshot
        for start in range(0, len(added), SLICE):
            if start:
                await asyncio.sleep(0)
            for device_id in added[start : start + SLICE]:
                self._get(device_id)

    async def _record(self, changes: list[HealthChange]) -> None:
        """The pass's flag changes, with their operator events, in one transaction; then announced."""
        if not changes:
            return
        rows = []
        for change in changes:
            kind = change.flag if change.raised else f"{change.flag}_cleared"
            (log.warning if change.raised else log.info)("santé des balises : %s", change.message)
            flags = json.dumps(sorted(self.devices[change.device_id].flags))
            rows.append(FlagChange(change.device_id, flags, kind, change.message))
        try:
            await self._store.record_health_changes(rows)
        except Exception:
            self._undo(changes)  # decided again at the next pass: no operator left untold
            raise
        for change in changes:
            self._bus.publish(
                "device_health", device_id=change.device_id, flag=change.flag, raised=change.raised
            )

    def _undo(self, changes: list[HealthChange]) -> None:
        """Flag changes that could not be stored: back as they were, their devices evaluated again."""
        for change in changes:
            flags = self.devices[change.device_id].flags
            (flags.discard if change.raised else flags.add)(change.flag)
            self._watch.touch(change.device_id)

    async def flush(self) -> None:
        """Merge this instance's new observations into the store, in one transaction."""
        dirty, self._dirty = self._dirty, set()
        heard, self._heard = self._heard, set()
        known = self._cache.current.devices
        me, devices = self._instance_id, self.devices
        rows: list[dict[str, object]] = []
        merged: list[tuple[str, tuple[object, object]]] = []  # what the store holds once they commit
        for d in dirty:
            if d in known:
                h = devices[d]
                seen = _instant(h.last_seen)  # formatted once per row; after a heartbeat, the
                at = seen if h.status_at == h.last_seen else _instant(h.status_at)  # same instant
                rows.append(_row(h, me, seen, at) if d in heard else _status_row(h, me, at))
                merged.append((d, (seen, at)))
        if not rows:
            return
        try:
            refused = await self._store.merge_device_health(rows)
        except Exception:
            self._dirty |= dirty  # merged next pass: merging twice is harmless
            self._heard |= heard
            raise
        # What the store holds now, unless another instance merged later observations.
        self._merged.update(merged)
        for stored in refused:
            self._undo_replay(stored)

    def _undo_replay(self, stored: dict[str, object]) -> None:
        """The store refused a heartbeat of ours: another instance had merged one at least as recent.

        So ours was a replay of a heartbeat that instance received: its effect
        here is replaced by the stored heartbeat part, and it is counted.
        """
        device_id = str(stored["device_id"])
        h, theirs = self._get(device_id), _from_row(stored)
        log.warning(
            "balise %s : heartbeat de seq %s refusé, la base a déjà le seq %s (rejeu, ou fusionné trop tard)",
            device_id,
            h.hb_seq,
            theirs.hb_seq,
        )
        self._metrics.rejected.labels(RejectReason.REPLAY.value).inc()
        h.last_seen, h.hb_seq = theirs.last_seen, theirs.hb_seq
        h.battery_pct, h.signal_dbm = theirs.battery_pct, theirs.signal_dbm
        h.firmware, h.uptime_s = theirs.firmware, theirs.uptime_s
        self._merged.pop(device_id, None)
        if self.leading:
            self._watch.touch(device_id)

    async def _pull(self) -> None:
        """Merge what the other instances merged since the last read (with a margin, see REREAD_S)."""
        now = time.monotonic()
        while len(self._revs) > 1 and self._revs[1][0] <= now - REREAD_S:
            self._revs.popleft()
        after = self._revs[0][1] if self._revs and self._revs[0][0] <= now - REREAD_S else 0
        rows = await self._store.device_health(after_rev=after, not_by=self._instance_id)
        self._absorb(rows, with_flags=False)
        self._revs.append((now, self._highest_rev))

    def _absorb(self, rows: list[dict[str, object]], *, with_flags: bool) -> None:
        for row in rows:
            self._highest_rev = max(self._highest_rev, int(str(row.get("rev") or 0)))
            device_id = str(row["device_id"])
            if not with_flags and self._merged.get(device_id) == (row["last_seen_at"], row["status_at"]):
                # Our own merge read back (each row is re-read for REREAD_S): merging it is a no-op,
                # since merge() takes only strictly later times. Skipped: 3,333 rows a second.
                continue
            h = self._get(device_id)
            merge(h, _from_row(row))
            if with_flags:
                h.flags = set(json.loads(str(row["flags"])))
            self._watch.touch(device_id)


def _same_devices(before: DirectorySnapshot, after: DirectorySnapshot) -> bool:
    """True if ``after`` holds the very device objects of ``before`` (the store reuses a device's
    object while its row is unchanged): checked at C speed, 100,000 devices in milliseconds."""
    old, new = before.devices, after.devices
    if old is new:  # a snapshot patched without device changes shares the very dict
        return True
    if len(old) != len(new) or old.keys() != new.keys():
        return False
    return all(map(operator.is_, old.values(), new.values()))


def _monitored(snapshot: DirectorySnapshot) -> list[Monitored]:
    """The devices of ``snapshot`` to watch: its active ones (built in a thread: 100,000 of them)."""
    return [m for d in snapshot.devices.values() if (m := _monitored_device(d)) is not None]


def _monitored_device(device: Device | None) -> Monitored | None:
    """What the watch is given of one device (as :func:`_monitored`); None if not watched."""
    if device is None or device.state != "active":
        return None
    return Monitored(device.id, device.label, device.heartbeat_interval_s)


@functools.lru_cache(maxsize=1024)  # a batch of heartbeats shares one receipt time: one format each
def _instant(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds") if ts is not None else None


def _epoch(text: object) -> float | None:
    return datetime.fromisoformat(str(text)).timestamp() if text else None


def _row(h: DeviceHealth, instance_id: str, seen: str | None, status_at: str | None) -> dict[str, object]:
    """What to merge for a device with a new heartbeat since the last merge: its status and that
    heartbeat (checked against the store's highest sequence number: it must not be one this
    instance merged already). ``seen`` and ``status_at`` are ``h``'s times as :func:`_instant` text.
    One dict literal: 3,333 of them a second at 100,000 devices."""
    return {
        "device_id": h.device_id,
        "last_seen_at": seen,
        "hb_seq": h.hb_seq,
        "status": h.status,
        "status_at": status_at,
        "battery_pct": h.battery_pct,
        "signal_dbm": h.signal_dbm,
        "firmware": h.firmware,
        "uptime_s": h.uptime_s,
        "merged_by": instance_id,
    }


def _status_row(h: DeviceHealth, instance_id: str, status_at: str | None) -> dict[str, object]:
    """What to merge for a device whose status alone changed: no heartbeat part."""
    return {
        "device_id": h.device_id,
        "last_seen_at": None,
        "hb_seq": None,
        "status": h.status,
        "status_at": status_at,
        "battery_pct": None,
        "signal_dbm": None,
        "firmware": None,
        "uptime_s": None,
        "merged_by": instance_id,
    }


def _from_row(row: dict[str, object]) -> DeviceHealth:
    def num(key: str) -> int | None:
        value = row.get(key)
        return None if value is None else int(str(value))

    return DeviceHealth(
        str(row["device_id"]),
        last_seen=_epoch(row.get("last_seen_at")),
        hb_seq=num("hb_seq"),
        status=None if row.get("status") is None else str(row["status"]),
        status_at=_epoch(row.get("status_at")),
        battery_pct=num("battery_pct"),
        signal_dbm=num("signal_dbm"),
        firmware=None if row.get("firmware") is None else str(row["firmware"]),
        uptime_s=num("uptime_s"),
    )
