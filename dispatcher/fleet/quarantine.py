"""Quarantine of a flooding device at the broker (issue 13, finding 3); fleet/floodwatch.py decides.

At full speed a flood reaches the dispatcher's socket faster than paho reads
it, and another device's alert waits behind up to ~17,000 messages; admission
refuses each in µs, but only after paho has read it (~100 µs). So, as soon as
:class:`~dispatcher.fleet.floodwatch.FloodWatch` says a device floods, we ask
Mosquitto's dynamic-security plugin, over the dispatcher's own MQTT session
(``$CONTROL/dynamic-security/v1``, granted in broker_config/acl), to

* give the device's client the role ``vigie-quarantine``, which denies it
  every publish: the broker drops its messages instead of relaying them, on
  every listener (the TLS listener asks the plugin for every ACL decision);
* disable the client: the broker disconnects it at once, and refuses its
  password logins until it is enabled again. On the TLS listener Mosquitto
  2.0.11 asks no plugin at CONNECT (``use_identity_as_username``): the device
  reconnects there, but everything it publishes is dropped by the role.

A quarantined device cannot alert (invariant 1): the quarantine is therefore
stored with its end (``quarantine_s``, 5 minutes by default) and lifted by any
instance once past, including after a restart; the operator gets an alarm, in
French, when it starts and when it ends (one per episode: the store says which
instance started or ended it). The cut itself is sent in the very call that
saw the refusal (paho reads the socket on the event loop: dispatcher/alerting/mqtt.py,
so everything here runs on the loop and needs no lock), so that the broker stops
relaying the flood a few ms later; what is stored follows. If that store write
fails, the release is kept in memory and still happens, once the store can say
that the device is not revoked (while it cannot, no alert could be stored either).

The broker's answers are read (dispatcher/fleet/broker_control.py): the "coupée"
alarm is raised only once the broker confirmed the cut; a cut or a release it
refuses or leaves unanswered raises one alarm saying so instead (a broker
without the plugin, a device it does not know), and admission keeps refusing
the flood as before. The episode is stored and released all the same: part of
a refused batch may have been applied.

A revoked device is never let back in (invariant 2 of
dispatcher/fleet/dynsec_commands.py): the release reads the store's state first and
then leaves the client disabled; and if the device was revoked while the
release was on its way, its revocation is sent again once the broker confirmed
the release (the revocation may have reached the broker before it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dispatcher.alerting import broker_logs, texts
from dispatcher.domain import DeviceState
from dispatcher.fleet.dynsec_commands import (  # the commands: one source for every sender
    cut_commands,
    release_commands,
    revoke_commands,
)
from dispatcher.fleet.floodwatch import FloodPolicy, FloodWatch
from dispatcher.settings import IngestSettings
from dispatcher.store.base import NotFound

if TYPE_CHECKING:
    from dispatcher.fleet.broker_control import BrokerControl, Sent
    from dispatcher.metrics import Metrics
    from dispatcher.store.base import Store

log = logging.getLogger(__name__)


def flood_policy(settings: IngestSettings) -> FloodPolicy:
    return FloodPolicy(threshold=settings.quarantine_refusals, window_s=settings.quarantine_window_s)


class Quarantine:
    """Cuts flooding devices off at the broker, and lets them back in when their time is up."""

    def __init__(
        self, settings: IngestSettings, *, store: Store, metrics: Metrics, control: BrokerControl
    ) -> None:
        self._duration = timedelta(seconds=settings.quarantine_s)
        self._check_s = settings.quarantine_check_s
        self._store = store
        self._metrics = metrics
        self._control = control
        self._watch = FloodWatch(flood_policy(settings))
        self._wakeup = asyncio.Event()
        self._unstored: dict[str, datetime] = {}  # cut, but the store write failed: released from memory
        self._tasks: set[asyncio.Task[None]] = set()
        self._starting: set[str] = set()  # cut, not stored yet

    def refused(self, device_id: str) -> None:
        """Admission refused a message of ``device_id`` (on the event loop, reading MQTT): cut it off if
        it floods."""
        if not self._watch.refused(device_id, time.monotonic()):
            return
        self._starting.add(device_id)
        sent = self._control.send(cut_commands(device_id))  # now: every ms lets more flood through
        log.warning(broker_logs.FLOOD_CUT, device_id)
        task = asyncio.get_running_loop().create_task(self._begin(device_id, sent))
        self._tasks.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._begun)

    def is_quarantined(self, device_id: str) -> bool:
        return self._watch.is_quarantined(device_id)

    async def run(self) -> None:
        """Lift each quarantine once its time is up, forever (any instance; those before a restart too)."""
        while True:
            delay = self._check_s
            try:
                delay = min(delay, await self._release_due())
            except Exception:
                log.exception(broker_logs.QUARANTINE_PASS_FAILED, delay)
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.05)):  # not wait_for (see Engine's timer loop)
                    await self._wakeup.wait()

    async def _release_due(self) -> float:
        """Release what is due; return the seconds until the next end."""
        now = datetime.now(UTC)
        ends = dict(await self._store.quarantines())
        ends.update({d: u for d, u in self._unstored.items() if d not in ends})
        for device_id, until in ends.items():
            if until <= now:
                await self._release(device_id)
        # Lifted by another instance: this one counts the device afresh too.
        for device_id in self._watch.quarantined() - ends.keys() - self._starting:
            self._watch.lift(device_id)
        later = [(u - now).total_seconds() for u in ends.values() if u > now]
        return min(later, default=self._check_s)

    def _begun(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wakeup.set()  # its end is now the nearest, perhaps

    async def _begin(self, device_id: str, sent: Sent) -> None:
        until = datetime.now(UTC) + self._duration
        try:
            first = await self._store.begin_quarantine(device_id, until)
        except Exception:
            log.exception(broker_logs.QUARANTINE_NOT_STORED, device_id, texts.local_time(until))
            self._unstored[device_id] = until
            first = True
        finally:
            self._starting.discard(device_id)
        # Refused or unanswered: BrokerControl raised the alarm that says so, not "coupée".
        if await self._control.confirm(sent, action="cut", device_id=device_id) and first:
            self._metrics.quarantines.labels("started").inc()
            await self._control.alarm(device_id, texts.quarantine_started(device_id, until), "quarantaine")

    async def _release(self, device_id: str) -> None:
        revoked = await self._revoked(device_id)  # a store error: not released now, retried
        # Sent first: a crash before the row goes only repeats it.
        released = await self._control.apply(
            release_commands(device_id, revoked=revoked), action="release", device_id=device_id
        )
        if released and not revoked and await self._revoked(device_id):
            # Revoked meanwhile: its disable may have reached the broker before our enable.
            await self._control.apply(revoke_commands(device_id), action="revoke", device_id=device_id)
            revoked = True
        stored = device_id not in self._unstored
        self._unstored.pop(device_id, None)
        ended = await self._store.end_quarantine(device_id) if stored else True
        self._watch.lift(device_id)
        if ended and released:
            self._metrics.quarantines.labels("ended").inc()
            if not revoked:  # a revoked one stays out: nothing changes for the operator
                await self._control.alarm(device_id, texts.quarantine_ended(device_id), "fin de quarantaine")

    async def _revoked(self, device_id: str) -> bool:
        try:
            return (await self._store.get_device(device_id)).state is DeviceState.REVOKED
        except NotFound:  # not one of ours (its messages were refused as unknown): nothing to keep out
            return False
