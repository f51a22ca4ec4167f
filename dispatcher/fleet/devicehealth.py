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
  instance at a time, the health leader, from the merged view; :class:`Watch`
  calls it only for the devices that may have changed (heard of since the last
  pass, or whose silence deadline has come), not for every device every pass.

Invariants (tested as properties in tests/dispatcher/test_devicehealth.py):

* the heartbeat part of an observation (``last_seen``, ``hb_seq``, readings)
  is the one of the heartbeat with the highest sequence number; a heartbeat
  whose sequence number is not above the highest one known is a replay
  (:meth:`DeviceHealth.is_new_heartbeat`) and changes nothing, on the instance
  that received it and in the store's merge (which refuses it even when another
  instance had received the original);
* ``last_seen`` only moves forward; of two status messages the later one wins,
  and a heartbeat counts as an ``online`` status at its time;
* a device is offline iff its latest status says ``offline``, or it has been
  silent (no heartbeat, no ``online`` status) for more than
  ``missed_intervals`` heartbeat intervals plus :data:`ARRIVAL_GRACE_S`: one
  lost heartbeat (an instance killed with it unmerged) must not flag a device
  whose next one is merely on its way;
* :func:`evaluate` returns a change only for a flag whose value changes, and
  applies it, so a second call at the same time returns nothing: one operator
  event per episode, whatever the number of passes;
* :meth:`Watch.due` returns what :func:`evaluate` over every device would
  return at the same time (a device whose silence deadline has not come and
  that nobody heard of since its last evaluation cannot have changed, nor one
  whose heartbeat, just heard, finds no flag to clear or raise), also
  after the directory changed the monitored devices, and summed over the
  slices of a full evaluation taken with ``limit``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["DeviceHealth", "HealthChange", "Monitored", "Watch", "evaluate", "merge"]

OFFLINE = "offline"
LOW_BATTERY = "low_battery"
#: A heartbeat due exactly at the limit may still be on its way: MQTT transit, the
#: ingest's batching, the 1 s merge of the instance that received it, the 1 s pass.
ARRIVAL_GRACE_S = 2.0


@dataclass
class DeviceHealth:
    """What is known of one device's health (times are epoch seconds)."""

    device_id: str
    last_seen: float | None = None  # of the heartbeat with the highest sequence number
    hb_seq: int | None = None  # that heartbeat's sequence number
    status: str | None = None  # "online" | "offline": the latest status message or heartbeat
    status_at: float | None = None
    battery_pct: int | None = None
    signal_dbm: int | None = None
    firmware: str | None = None
    uptime_s: int | None = None
    flags: set[str] = field(default_factory=set)

    def is_new_heartbeat(self, seq: int) -> bool:
        """True unless ``seq`` is not above the highest heartbeat sequence number known (a replay)."""
        return self.hb_seq is None or seq > self.hb_seq

    def heard(
        self,
        now: float,
        seq: int,
        *,
        battery_pct: int | None = None,
        signal_dbm: int | None = None,
        firmware: str | None = None,
        uptime_s: int | None = None,
    ) -> bool:
        """A heartbeat numbered ``seq`` at ``now``: seen, online, with its readings; False (and
        nothing changed) for a replay."""
        if not self.is_new_heartbeat(seq):
            return False
        self.last_seen = now if self.last_seen is None else max(self.last_seen, now)
        self.hb_seq = seq
        self.set_status("online", now)
        self.battery_pct, self.signal_dbm = battery_pct, signal_dbm
        self.firmware, self.uptime_s = firmware, uptime_s
        return True

    def set_status(self, state: str, at: float) -> None:
        """A status message (retained online, or the Last Will's offline) at ``at``."""
        if self.status_at is None or at >= self.status_at:
            self.status, self.status_at = state, at

    def silent_since(self) -> float | None:
        """When it was last heard of: its latest heartbeat, or a later ``online`` status."""
        online = self.status_at if self.status == "online" else None
        if online is None or (self.last_seen is not None and self.last_seen >= online):
            return self.last_seen
        return online


def merge(mine: DeviceHealth, theirs: DeviceHealth) -> None:
    """Fold ``theirs`` (another instance's observations) into ``mine``; flags are left alone."""
    if theirs.hb_seq is not None and theirs.last_seen is not None and mine.is_new_heartbeat(theirs.hb_seq):
        mine.last_seen = theirs.last_seen if mine.last_seen is None else max(mine.last_seen, theirs.last_seen)
        mine.hb_seq = theirs.hb_seq
        mine.battery_pct, mine.signal_dbm = theirs.battery_pct, theirs.signal_dbm
        mine.firmware, mine.uptime_s = theirs.firmware, theirs.uptime_s
    if theirs.status_at is not None and (mine.status_at is None or theirs.status_at > mine.status_at):
        mine.status, mine.status_at = theirs.status, theirs.status_at


class Monitored(NamedTuple):
    """A device the directory expects to hear from (a tuple: a directory of 100,000 is compared
    with the previous one at each edit)."""

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
    return now > offline_deadline(h, interval_s, missed=missed, watching_since=watching_since)


def offline_deadline(h: DeviceHealth, interval_s: float, *, missed: float, watching_since: float) -> float:
    """The time after which a silent device is offline (if nothing is heard of it by then)."""
    heard = h.silent_since()
    return (watching_since if heard is None else heard) + missed * interval_s + ARRIVAL_GRACE_S


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


class Watch:
    """The leader's schedule: which devices a pass must evaluate.

    Evaluating and rescheduling a device costs a few µs (a third of a second
    for 100,000), almost all of it on devices that cannot have changed. A device's
    flags can change only when something is heard of it (the shell calls
    :meth:`touch`) or when its silence deadline passes; each monitored device
    that is not offline has one entry in a heap ordered by that deadline (taken
    when it was last evaluated: a deadline only moves later, so an entry that
    comes due early merely costs one evaluation and is pushed back). A
    directory edit makes only the devices it changed due; a full evaluation (a
    new leader) can be taken in slices, so that it never holds the event loop
    for long.
    """

    def __init__(self, *, missed_intervals: float, low_battery_pct: int) -> None:
        self._missed = missed_intervals
        self._low_battery = low_battery_pct
        self._devices: dict[str, Monitored] = {}
        self._heap: list[tuple[float, str]] = []
        self._scheduled: set[str] = set()  # devices with an entry in the heap
        self._touched: set[str] = set()
        self._everything = True
        self._backlog: list[str] = []  # of a full evaluation, the devices not evaluated yet
        self.flagged: set[str] = set()  # devices with a flag, for the gauges

    def watch(self, devices: Iterable[Monitored]) -> list[str]:
        """Monitor these devices (the directory's active ones); returns those not monitored before.

        A new device, or one whose label or interval changed, is evaluated at
        the next pass; the others keep their schedule, so that a directory
        edit costs a pass the devices it changed, not the whole fleet.
        """
        old, self._devices = self._devices, {d.device_id: d for d in devices}
        added = [d for d in self._devices if d not in old]
        if not self._everything:
            for device_id, device in self._devices.items():
                if old.get(device_id) != device:
                    # Its deadline may now be earlier than its entry's: a new entry is pushed.
                    self._scheduled.discard(device_id)
                    self._touched.add(device_id)
        self.flagged = {d for d in self.flagged if d in self._devices}
        return added

    def watch_changes(self, changes: Mapping[str, Monitored | None]) -> list[str]:
        """Like :meth:`watch` given the directory's devices with these changed (None: no longer
        monitored), at the cost of the changes only; returns those not monitored before."""
        added = []
        for device_id, device in changes.items():
            old = self._devices.get(device_id)
            if device is None:
                self._devices.pop(device_id, None)
                self.flagged.discard(device_id)
                continue
            if old is None:
                added.append(device_id)
            if old != device:
                self._devices[device_id] = device
                if not self._everything:
                    self._scheduled.discard(device_id)
                    self._touched.add(device_id)
        return added

    def evaluate_all(self) -> None:
        """Evaluate every monitored device afresh (a new leader, whose flags came from the store)."""
        self._everything = True

    @property
    def backlog(self) -> int:
        """Devices of a full evaluation still to evaluate (see ``limit`` in :meth:`due`)."""
        return len(self._backlog)

    def touch(self, device_id: str) -> None:
        """Something was heard of ``device_id`` (or merged from another instance)."""
        self._touched.add(device_id)

    def heard(self, device_id: str, h: DeviceHealth) -> None:
        """A heartbeat of ``device_id`` was just applied to ``h``: a touch, if it can change a flag.

        Heard this instant, the device is not silent, so the heartbeat can
        only clear a flag it holds or raise low battery. A device without a
        flag and with a battery above the threshold is left to what already
        makes it due: its entry in the heap (a deadline that comes early costs
        one evaluation, see the class), or, without one, a touch or a full
        evaluation still to come. So a device heard every interval, flagged
        after two missed, is evaluated every other heartbeat, not after each.
        """
        low = h.battery_pct is not None and h.battery_pct < self._low_battery
        if h.flags or low:
            self._touched.add(device_id)

    def due(
        self,
        health: Mapping[str, DeviceHealth],
        *,
        now: float,
        watching_since: float,
        limit: int | None = None,
    ) -> list[HealthChange]:
        """The flag changes at ``now``, as :func:`evaluate` over every monitored device would give them.

        With ``limit``, a full evaluation (the first pass, or after
        :meth:`evaluate_all`) takes at most ``limit`` devices of it per call,
        besides those touched or due: the caller calls again, as of the same
        ``now``, until :attr:`backlog` is 0, and may let other work run between
        calls. The changes of all those calls are what one call without a limit
        would return.
        """
        if self._everything:
            self._backlog = list(self._devices)
            self._heap, self._scheduled, self._everything = [], set(), False
        while self._heap and self._heap[0][0] < now:
            _, device_id = heapq.heappop(self._heap)
            self._scheduled.discard(device_id)
            self._touched.add(device_id)
        ids, self._touched = self._touched, set()
        keep = 0 if limit is None else max(0, len(self._backlog) - limit)
        ids.update(self._backlog[keep:])
        del self._backlog[keep:]
        monitored = [self._devices[d] for d in ids if d in self._devices]
        changes = evaluate(
            monitored,
            health,
            now=now,
            watching_since=watching_since,
            missed_intervals=self._missed,
            low_battery_pct=self._low_battery,
        )
        for device in monitored:
            self._reschedule(device, health[device.device_id], watching_since)
        return changes

    def _reschedule(self, device: Monitored, h: DeviceHealth, watching_since: float) -> None:
        if h.flags:
            self.flagged.add(device.device_id)
        else:
            self.flagged.discard(device.device_id)
        if OFFLINE in h.flags or device.device_id in self._scheduled:
            return  # offline: only something heard of it can change that (a touch)
        deadline = offline_deadline(
            h, device.heartbeat_interval_s, missed=self._missed, watching_since=watching_since
        )
        heapq.heappush(self._heap, (deadline, device.device_id))
        self._scheduled.add(device.device_id)
