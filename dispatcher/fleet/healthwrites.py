"""When an instance writes its device-health observations to the store: at the next pass, or deferred.

Every instance merges what it hears into the store (``device_health``) once a
pass (:mod:`dispatcher.health`). For a heartbeat received by an instance that
does not lead, that write is how the leader learns of it, so it cannot wait:
skipping one leaves the stored ``last_seen`` two intervals old just when the
device's next heartbeat arrives, at the limit where it is flagged. The leader,
however, decides from its own memory: what it received itself is written only
for the others (the console's "last seen", a new leader, another instance's
replay check). So the leader writes a device's heartbeats at most once per
``defer_s`` (the latest one then, the others coalesced), which on one instance
removes most of the store's per-heartbeat work (docs/performance.md).

Events in, commands out: :meth:`HealthWrites.heard` and :meth:`HealthWrites.changed`
record observations, :meth:`HealthWrites.due` says which devices to write at a
pass, :meth:`HealthWrites.written` / :meth:`HealthWrites.failed` report the
outcome. :func:`takeover_floor` is what a new leader may assume of the
heartbeats the previous one had not written yet.

Invariants (tested as properties in tests/dispatcher/test_healthwrites.py):

* a status message (online, the Last Will's offline) is written at the next
  pass, whoever received it;
* a heartbeat received while not leading is written at the next pass;
* a heartbeat the leader received is written at the first pass from
  ``defer_s`` after the latest heartbeat of that device known to be in the
  store (loaded, written, or merged by another instance and read back; at
  the next pass if the store has none), or at the first pass after the
  instance stops leading: the latest heartbeat then, the ones in between
  coalesced;
* a failed write is retried at the next pass, whatever the role;
* **takeover**: a device stored as heard at ``s`` cannot have been heard by the
  previous leader later than ``s + defer_s + interval + ARRIVAL_GRACE_S``
  without that heartbeat being written (the device's first heartbeat after
  ``s + defer_s`` is written within a pass), nor later than the takeover
  itself; a device the store has none of, than the takeover;
  :func:`takeover_floor` is the earliest of these, and a new leader
  counts a silence from no earlier than it. So a device whose latest
  heartbeats died unwritten with the previous leader is never flagged early,
  even if one more heartbeat is lost in flight; the cost is a later flag, by at
  most ``defer_s`` + one interval + the grace, for a device already silent at
  the takeover. The floor only delays raising a flag: a stored flag is cleared
  only by something heard (:mod:`dispatcher.devicehealth`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from dispatcher.fleet.devicehealth import ARRIVAL_GRACE_S

__all__ = ["HealthWrites", "Writes", "takeover_floor"]


@dataclass(frozen=True)
class Writes:
    """The rows to write at a pass: ``devices``, of which ``heartbeats`` with their heartbeat part."""

    devices: frozenset[str]
    heartbeats: frozenset[str]


class HealthWrites:
    """One instance's schedule of ``device_health`` writes (see the module docstring)."""

    def __init__(self, *, defer_s: float) -> None:
        self.defer_s = defer_s
        self._now: set[str] = set()  # devices to write at the next pass
        self._heard: set[str] = set()  # devices with a heartbeat not written yet (due now or deferred)
        self._latest: dict[str, float] = {}  # when each device's latest heartbeat was received here
        self._stored: dict[str, float] = {}  # the latest heard time known to be in the store, per device
        self._deferred: list[tuple[float, str]] = []  # (due time, device), a heap
        self._scheduled: set[str] = set()  # devices with an entry in the heap

    @property
    def pending(self) -> int:
        """Devices with something not written yet."""
        return len(self._now | self._heard)

    def stored(self, device_id: str, heard_at: float) -> None:
        """The store holds a heartbeat of ``device_id`` heard at ``heard_at`` (loaded, or merged by
        another instance and read back)."""
        if heard_at > self._stored.get(device_id, heard_at - 1):
            self._stored[device_id] = heard_at

    def heard(self, device_id: str, now: float, *, leading: bool) -> None:
        """A new heartbeat of ``device_id`` received by this instance at ``now``."""
        self._heard.add(device_id)
        self._latest[device_id] = now
        if not leading:
            self._now.add(device_id)
            return
        stored = self._stored.get(device_id)
        if stored is None or stored + self.defer_s <= now:  # (a new device is shown at once)
            self._now.add(device_id)
        elif device_id not in self._scheduled:
            heapq.heappush(self._deferred, (stored + self.defer_s, device_id))
            self._scheduled.add(device_id)

    def changed(self, device_id: str) -> None:
        """A status message of ``device_id`` (online, or the Last Will's offline): written next pass."""
        self._now.add(device_id)

    def due(self, now: float, *, leading: bool) -> Writes:
        """What to write at this pass; handed over, so report it with :meth:`written` or :meth:`failed`."""
        if not leading:  # (also: just stepped down) nothing may wait for a leader's pass any more
            self._now |= self._heard
            self._deferred, self._scheduled = [], set()
        while self._deferred and self._deferred[0][0] <= now:
            _, device_id = heapq.heappop(self._deferred)
            self._scheduled.discard(device_id)
            if device_id in self._heard:  # (else written with a status meanwhile)
                self._now.add(device_id)
        devices, self._now = self._now, set()
        heartbeats = devices & self._heard
        self._heard -= heartbeats
        return Writes(frozenset(devices), frozenset(heartbeats))

    def written(self, writes: Writes) -> None:
        """``writes`` are in the store."""
        for device_id in writes.heartbeats:
            self.stored(device_id, self._latest[device_id])

    def failed(self, writes: Writes) -> None:
        """``writes`` did not reach the store: all of them at the next pass (merging twice is harmless)."""
        self._now |= writes.devices
        self._heard |= writes.heartbeats


def takeover_floor(
    stored_heard: float | None, interval_s: float, *, takeover: float, defer_s: float
) -> float:
    """The earliest a new leader may count a device's silence from, given when the store says it was
    last heard (None: never) and the previous leader's deferral ``defer_s`` (see the module docstring)."""
    if stored_heard is None:
        return takeover
    return min(takeover, stored_heard + defer_s + interval_s + ARRIVAL_GRACE_S)
