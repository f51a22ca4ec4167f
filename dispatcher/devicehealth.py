"""Device health as pure data: observations merged from any instance, flags decided by one.

Every dispatcher instance sees only part of each device's traffic (the shared
subscription spreads heartbeats and Last Wills across instances), so health is
split in two:

* **observations** - when a device was last heard of, its last status message
  and battery - are recorded by whichever instance received them and merged in
  the store with :func:`merge`, which is commutative, associative and
  idempotent: the merged view does not depend on which instance saw what, in
  which order, or how often a snapshot was written;
* **flags** (offline, low battery) are decided by :func:`evaluate` on one
  instance at a time, the health leader, from the merged view.

Invariants (tested as properties in tests/dispatcher/test_devicehealth.py):

* ``last_seen`` only moves forward; of two status messages the later one wins,
  and a heartbeat counts as an ``online`` status at its time;
* a device is offline iff its latest status says ``offline``, or it has been
  silent for more than ``missed_intervals`` heartbeat intervals plus
  :data:`ARRIVAL_GRACE_S`: one lost heartbeat (an instance killed with it
  unmerged) must not flag a device whose next one is merely on its way;
* :func:`evaluate` returns a change only for a flag whose value changes, and
  applies it, so a second call at the same time returns nothing: one operator
  event per episode, whatever the number of passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["DeviceHealth", "HealthChange", "Monitored", "evaluate", "merge"]

OFFLINE = "offline"
LOW_BATTERY = "low_battery"
#: A heartbeat due exactly at the limit may still be on its way: MQTT transit, the
#: ingest's batching, the 1 s merge of the instance that received it, the 1 s pass.
ARRIVAL_GRACE_S = 2.0


@dataclass
class DeviceHealth:
    """What is known of one device's health (times are epoch seconds)."""

    device_id: str
    last_seen: float | None = None
    status: str | None = None  # "online" | "offline": the latest status message or heartbeat
    status_at: float | None = None
    battery_pct: int | None = None
    signal_dbm: int | None = None
    firmware: str | None = None
    uptime_s: int | None = None
    flags: set[str] = field(default_factory=set)

    def heard(
        self,
        now: float,
        *,
        battery_pct: int | None = None,
        signal_dbm: int | None = None,
        firmware: str | None = None,
        uptime_s: int | None = None,
    ) -> None:
        """A heartbeat at ``now``: seen, online, with its readings."""
        self.last_seen = now if self.last_seen is None else max(self.last_seen, now)
        self.set_status("online", now)
        self.battery_pct, self.signal_dbm = battery_pct, signal_dbm
        self.firmware, self.uptime_s = firmware, uptime_s

    def set_status(self, state: str, at: float) -> None:
        """A status message (retained online, or the Last Will's offline) at ``at``."""
        if self.status_at is None or at >= self.status_at:
            self.status, self.status_at = state, at
        if state == "online":
            self.last_seen = at if self.last_seen is None else max(self.last_seen, at)


def merge(mine: DeviceHealth, theirs: DeviceHealth) -> None:
    """Fold ``theirs`` (another instance's observations) into ``mine``; flags are left alone."""
    if theirs.last_seen is not None and (mine.last_seen is None or theirs.last_seen > mine.last_seen):
        mine.last_seen = theirs.last_seen
        mine.battery_pct, mine.signal_dbm = theirs.battery_pct, theirs.signal_dbm
        mine.firmware, mine.uptime_s = theirs.firmware, theirs.uptime_s
    if theirs.status_at is not None and (mine.status_at is None or theirs.status_at > mine.status_at):
        mine.status, mine.status_at = theirs.status, theirs.status_at


@dataclass(frozen=True)
class Monitored:
    """A device the directory expects to hear from."""

    device_id: str
    label: str
    heartbeat_interval_s: float


@dataclass(frozen=True)
class HealthChange:
    """A flag raised or cleared on a device, with the operator's message (French)."""

    device_id: str
    flag: str  # "offline" | "low_battery"
    raised: bool
    message: str


def is_offline(
    h: DeviceHealth, interval_s: float, *, missed: float, now: float, watching_since: float
) -> bool:
    """Offline by its Last Will, or silent for more than ``missed`` intervals (and the arrival grace)."""
    if h.status == OFFLINE:
        return True
    silent_since = h.last_seen if h.last_seen is not None else watching_since
    return now - silent_since > missed * interval_s + ARRIVAL_GRACE_S


def evaluate(
    devices: Iterable[Monitored],
    health: Mapping[str, DeviceHealth],
    *,
    now: float,
    watching_since: float,
    missed_intervals: float,
    low_battery_pct: int,
) -> list[HealthChange]:
    """The flags to raise or clear at ``now``, applied to ``health`` (which must hold every device).

    ``watching_since`` stands for the last heartbeat of a device never heard
    of: the leader gives it the same grace as a device heard at that moment.
    """
    changes: list[HealthChange] = []
    for device in devices:
        h = health[device.device_id]
        offline = is_offline(
            h, device.heartbeat_interval_s, missed=missed_intervals, now=now, watching_since=watching_since
        )
        if offline != (OFFLINE in h.flags):
            name = (
                f"balise {device.device_id} ({device.label})"
                if device.label
                else f"balise {device.device_id}"
            )
            changes.append(_flip(h, OFFLINE, offline, f"{name} hors ligne"))
        low = h.battery_pct is not None and h.battery_pct < low_battery_pct
        if low != (LOW_BATTERY in h.flags):
            changes.append(
                _flip(h, LOW_BATTERY, low, f"batterie faible ({h.battery_pct} %) sur {device.device_id}")
            )
    return changes


def _flip(h: DeviceHealth, flag: str, active: bool, message: str) -> HealthChange:
    """Raise or clear ``flag`` (the caller checked that it changes)."""
    if active:
        h.flags.add(flag)
        return HealthChange(h.device_id, flag, True, message)
    h.flags.discard(flag)
    return HealthChange(h.device_id, flag, False, f"fin : {message}")
