"""Device health: heartbeats and Last Will tracked in memory, flagged, flushed.

A device silent for ``missed_intervals`` heartbeat intervals, one whose Last
Will said ``offline``, or one with a low battery raises an operator-visible
event, once per episode; coming back clears the flag (and says so).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dispatcher.events import EventBus
from dispatcher.metrics import Metrics
from dispatcher.snapshot import DirectoryCache
from dispatcher.store.base import Store
from protocol.messages import Heartbeat

log = logging.getLogger(__name__)

# A silent device is flagged at most one pass after its missed intervals; a pass
# over 10,000 devices costs ~5 ms of the event loop (docs/performance.md).
HEALTH_PASS_S = 1.0
# Snapshots (last seen, battery...) survive a restart up to this old.
FLUSH_EVERY_S = 5.0


@dataclass
class DeviceHealth:
    """What we know of one device's health."""

    device_id: str
    last_seen: float | None = None
    status: str | None = None
    battery_pct: int | None = None
    signal_dbm: int | None = None
    firmware: str | None = None
    uptime_s: int | None = None
    flags: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class HealthChange:
    """A flag raised or cleared on a device."""

    device_id: str
    flag: str  # "offline" | "low_battery"
    raised: bool
    message: str


class HealthMonitor:
    """Tracks every device; :meth:`evaluate` is pure given the tracked data and ``now``."""

    def __init__(
        self,
        *,
        store: Store,
        cache: DirectoryCache,
        bus: EventBus,
        metrics: Metrics,
        missed_intervals: float = 2.0,
        low_battery_pct: int = 20,
    ) -> None:
        self._store = store
        self._cache = cache
        self._bus = bus
        self._metrics = metrics
        self._missed = missed_intervals
        self._low_battery = low_battery_pct
        self._started = time.time()
        self.devices: dict[str, DeviceHealth] = {}
        self._dirty: set[str] = set()

    def _get(self, device_id: str) -> DeviceHealth:
        # Not setdefault(): it would build a DeviceHealth on every heartbeat and
        # for every device on every health pass, only to throw it away.
        h = self.devices.get(device_id)
        if h is None:
            h = self.devices[device_id] = DeviceHealth(device_id)
        return h

    def on_heartbeat(self, hb: Heartbeat, now: float) -> None:
        h = self._get(hb.device)
        before = (h.status, h.battery_pct)
        h.last_seen, h.status = now, "online"
        h.battery_pct, h.signal_dbm = hb.battery_pct, hb.signal_dbm
        h.firmware, h.uptime_s = hb.firmware, hb.uptime_s
        self._dirty.add(hb.device)
        self._announce_if_changed(h, before)

    def on_status(self, device_id: str, state: str, now: float) -> None:
        h = self._get(device_id)
        before = (h.status, h.battery_pct)
        h.status = state
        if state == "online":
            h.last_seen = now
        self._dirty.add(device_id)
        self._announce_if_changed(h, before)

    def _announce_if_changed(self, h: DeviceHealth, before: tuple[str | None, int | None]) -> None:
        # Only changes: 10,000 devices heartbeating must not flood the console.
        if (h.status, h.battery_pct) != before:
            self._bus.publish(
                "device_status", device_id=h.device_id, status=h.status, battery_pct=h.battery_pct
            )

    def evaluate(self, now: float) -> list[HealthChange]:
        """Flags to raise or clear at ``now``.

        Runs on the event loop over every device (10,000 in the benchmark):
        the common case - nothing changed - builds no message and no list.
        """
        changes: list[HealthChange] = []
        for device in self._cache.current.devices.values():
            if device.state != "active":
                continue
            h = self._get(device.id)
            silent_since = h.last_seen if h.last_seen is not None else self._started
            offline = h.status == "offline" or now - silent_since > self._missed * device.heartbeat_interval_s
            if offline != ("offline" in h.flags):
                changes.append(
                    self._flip(h, "offline", offline, f"balise {device.id} ({device.label}) hors ligne")
                )
            low = h.battery_pct is not None and h.battery_pct < self._low_battery
            if low != ("low_battery" in h.flags):
                message = f"batterie faible ({h.battery_pct} %) sur {device.id}"
                changes.append(self._flip(h, "low_battery", low, message))
        return changes

    @staticmethod
    def _flip(h: DeviceHealth, flag: str, active: bool, message: str) -> HealthChange:
        """Raise or clear ``flag`` (the caller checked that it changes)."""
        if active:
            h.flags.add(flag)
            return HealthChange(h.device_id, flag, True, message)
        h.flags.discard(flag)
        return HealthChange(h.device_id, flag, False, f"fin : {message}")

    async def load(self) -> None:
        """Resume from the last flushed snapshot (so a restart does not forget silences)."""
        for row in await self._store.device_health():
            h = self._get(row["device_id"])
            h.last_seen = (
                datetime.fromisoformat(row["last_seen_at"]).timestamp() if row["last_seen_at"] else None
            )
            h.status, h.battery_pct, h.firmware = row["status"], row["battery_pct"], row["firmware"]
            h.flags = set(json.loads(row["flags"]))

    async def run(self, *, period_s: float = HEALTH_PASS_S, flush_every_s: float = FLUSH_EVERY_S) -> None:
        """Raise and clear flags every ``period_s``; flush snapshots every ``flush_every_s``."""
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(period_s)
            try:
                await self.check(time.time())
                if time.monotonic() - last_flush >= flush_every_s:
                    last_flush = time.monotonic()
                    await self.flush()
            except Exception:
                log.exception("health pass failed")

    async def tick(self, now: float) -> list[HealthChange]:
        """One whole pass: :meth:`check`, then :meth:`flush`."""
        changes = await self.check(now)
        await self.flush()
        return changes

    async def check(self, now: float) -> list[HealthChange]:
        """Raise and clear flags as of ``now``: operator events, console, metrics."""
        changes = self.evaluate(now)
        for change in changes:
            kind = change.flag if change.raised else f"{change.flag}_cleared"
            (log.warning if change.raised else log.info)("device health: %s", change.message)
            await self._store.add_operator_event(kind, change.message, device_id=change.device_id)
            self._bus.publish(
                "device_health", device_id=change.device_id, flag=change.flag, raised=change.raised
            )
            self._dirty.add(change.device_id)
        self._metrics.devices_offline.set(sum("offline" in h.flags for h in self.devices.values()))
        self._metrics.devices_low_battery.set(sum("low_battery" in h.flags for h in self.devices.values()))
        return changes

    async def flush(self) -> None:
        """Write the changed snapshots in one transaction."""
        dirty, self._dirty = self._dirty, set()
        rows = [self._row(self.devices[d]) for d in dirty if d in self._cache.current.devices]
        if rows:
            await self._store.save_device_health(rows)

    @staticmethod
    def _row(h: DeviceHealth) -> dict[str, object]:
        seen = datetime.fromtimestamp(h.last_seen, UTC).isoformat() if h.last_seen else None
        return {
            "device_id": h.device_id,
            "last_seen_at": seen,
            "status": h.status,
            "battery_pct": h.battery_pct,
            "signal_dbm": h.signal_dbm,
            "firmware": h.firmware,
            "uptime_s": h.uptime_s,
            "flags": json.dumps(sorted(h.flags)),
        }
