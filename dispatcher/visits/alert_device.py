"""Which of her devices a home-visit alert is filed under: a pure choice.

An alert row names one device. A visit's alert (a missed check-in, or her
duress answer) is raised by the server, not by a device, so the runner
(:mod:`dispatcher.visits.runner`) picks one of hers with :func:`alert_device`:
her devices and when each was last heard in, the device out. No I/O, no clock.

The device only identifies the alert: it is routed and escalated like any
other whatever the device's state (a downlink to a revoked device is refused
by the broker), so the choice is a preference, never a reason not to alert.

Ranking, best first:

1. an ACTIVE device (her devices may have been revoked since she declared);
2. a carried one (bracelet, pocket button) before a fixed button: downlinks
   reach her;
3. the most recently heard; a device never heard comes after every heard one;
4. the smallest id, so that equals always give the same answer.

Invariants (tests/dispatcher/test_visit_alert_device.py checks them as
properties over generated devices and last-seen times):

* the result is one of ``devices``, and None only when ``devices`` is empty;
* when any of them is ACTIVE, the result is ACTIVE;
* it is a carried device when a carried one of the same standing exists;
* with the same standing and kind, none of the others was heard later, and
  a never-heard device is chosen only if no device of that standing and kind
  was heard;
* it depends only on the set of devices and their last-seen times, not on
  their order, nor on last-seen times of devices that are not hers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from dispatcher.domain import Device, DeviceKind, DeviceState

__all__ = ["alert_device", "is_carried"]


def is_carried(device: Device) -> bool:
    """Worn or pocketed by her (a downlink reaches her), unlike a button fixed under a desk."""
    return device.kind is not DeviceKind.BUTTON


def alert_device(devices: Iterable[Device], last_seen: Mapping[str, datetime]) -> Device | None:
    """The device her visit's alert is filed under (see the module's ranking); None if she has none.

    ``last_seen`` maps device ids to the (timezone-aware) instant each was last
    heard; a device missing from it was never heard.
    """
    return min(devices, key=lambda d: _rank(d, last_seen.get(d.id)), default=None)


def _rank(device: Device, seen: datetime | None) -> tuple[bool, bool, bool, float, str]:
    # Smaller is better: active, carried, heard, the latest heard (negated), then the id.
    return (
        device.state is not DeviceState.ACTIVE,
        not is_carried(device),
        seen is None,
        -seen.timestamp() if seen is not None else 0.0,
        device.id,
    )
