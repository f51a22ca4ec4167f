"""Quarantine of a flooding device at the broker (issue 13, finding 3); dispatcher/floodwatch.py decides.

At full speed a flood reaches the dispatcher's socket faster than paho reads
it, and another device's alert waits behind up to ~17,000 messages; admission
refuses each in µs, but only after paho has read it (~100 µs). So, as soon as
:class:`~dispatcher.floodwatch.FloodWatch` says a device floods, we ask
Mosquitto's dynamic-security plugin, over the dispatcher's own MQTT session
(``$CONTROL/dynamic-security/v1``, granted in broker_config/acl), to

* give the device's client the role :data:`QUARANTINE_ROLE`, which denies it
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
instance started or ended it). The cut itself is sent from the thread that reads the
MQTT socket (the event loop's, since paho is driven by it), in the same call
that saw the refusal, so that the broker stops relaying the
flood a few ms later; what is stored follows on the event loop. If that store
write fails, the release is kept in memory and still happens.

The broker's answers (``.../response``) are not read: the dispatcher does not
subscribe to them. A broker without the plugin, or a device it does not know,
ignores the commands; admission keeps refusing the flood as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from dispatcher import texts
from dispatcher.floodwatch import FloodPolicy, FloodWatch
from dispatcher.settings import IngestSettings

if TYPE_CHECKING:
    from dispatcher.events import EventBus
    from dispatcher.metrics import Metrics
    from dispatcher.store.base import Store

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"  # broker_config.dynsec.CONTROL_TOPIC
QUARANTINE_ROLE = "vigie-quarantine"
# Above any role of the restricted group: checked first, so its deny wins.
_ROLE_PRIORITY = 100
_DENY_ALL = {"acltype": "publishClientSend", "topic": "#", "priority": 0, "allow": False}


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None: ...


def cut_commands(device_id: str) -> list[dict[str, Any]]:
    """Dynsec commands that stop ``device_id`` at the broker (the role is created if missing)."""
    return [
        {"command": "createRole", "rolename": QUARANTINE_ROLE, "acls": [_DENY_ALL]},
        {
            "command": "addClientRole",
            "username": device_id,
            "rolename": QUARANTINE_ROLE,
            "priority": _ROLE_PRIORITY,
        },
        {"command": "disableClient", "username": device_id},
    ]


def release_commands(device_id: str) -> list[dict[str, Any]]:
    """Dynsec commands that let ``device_id`` back in (harmless if it was not cut)."""
    return [
        {"command": "removeClientRole", "username": device_id, "rolename": QUARANTINE_ROLE},
        {"command": "enableClient", "username": device_id},
    ]


def flood_policy(settings: IngestSettings) -> FloodPolicy:
    return FloodPolicy(threshold=settings.quarantine_refusals, window_s=settings.quarantine_window_s)


class Quarantine:
    """Cuts flooding devices off at the broker, and lets them back in when their time is up."""

    def __init__(self, settings: IngestSettings, *, store: Store, metrics: Metrics, bus: EventBus) -> None:
        self._duration = timedelta(seconds=settings.quarantine_s)
        self._check_s = settings.quarantine_check_s
        self._store = store
        self._metrics = metrics
        self._bus = bus
        self._watch = FloodWatch(flood_policy(settings))
        self._lock = threading.Lock()  # refused() on the MQTT reader's thread, lift on the event loop
        self._broker: Publisher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        self._unstored: dict[str, datetime] = {}  # cut, but the store write failed: released from memory
        self._tasks: set[asyncio.Task[None]] = set()
        self._starting: set[str] = set()  # cut, not stored yet (the MQTT reader adds, the loop removes)

    def attach(self, broker: Publisher) -> None:
        """The MQTT session that carries the commands (the dispatcher's own); call on the event loop,
        before the session starts: a cut must always be recorded, hence released."""
        self._broker = broker
        self._loop = asyncio.get_running_loop()

    def refused(self, device_id: str) -> None:
        """Admission refused a message of ``device_id`` (MQTT reader): cut it off if it floods."""
        with self._lock:
            flooding = self._watch.refused(device_id, time.monotonic())
            if flooding:
                self._starting.add(device_id)
        if not flooding:
            return
        self._send(cut_commands(device_id))  # now, from this thread: every ms lets more flood through
        log.warning("balise %s : inondation, coupée au broker", device_id)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._spawn_begin, device_id)
        else:  # shutting down: kept in memory by no one; the store row is what releases it
            log.error("balise %s coupée au broker pendant l'arrêt : à rétablir à la main", device_id)

    def is_quarantined(self, device_id: str) -> bool:
        with self._lock:
            return self._watch.is_quarantined(device_id)

    async def run(self) -> None:
        """Lift each quarantine once its time is up, forever (any instance; those before a restart too)."""
        self._loop = asyncio.get_running_loop()
        while True:
            delay = self._check_s
            try:
                delay = min(delay, await self._release_due())
            except Exception:
                log.exception("quarantines: could not read or release them; retrying in %.0f s", delay)
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(delay, 0.05))

    async def _release_due(self) -> float:
        """Release what is due; return the seconds until the next end."""
        now = datetime.now(UTC)
        ends = dict(await self._store.quarantines())
        ends.update({d: u for d, u in self._unstored.items() if d not in ends})
        for device_id, until in ends.items():
            if until <= now:
                await self._release(device_id)
        with self._lock:  # lifted by another instance: this one counts the device afresh too
            for device_id in self._watch.quarantined() - ends.keys() - self._starting:
                self._watch.lift(device_id)
        later = [(u - now).total_seconds() for u in ends.values() if u > now]
        return min(later, default=self._check_s)

    def _spawn_begin(self, device_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._begin(device_id))
        self._tasks.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._begun)

    def _begun(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wakeup.set()  # its end is now the nearest, perhaps

    async def _begin(self, device_id: str) -> None:
        until = datetime.now(UTC) + self._duration
        try:
            first = await self._store.begin_quarantine(device_id, until)
        except Exception:
            log.exception("quarantine of %s not stored: released from memory at %s", device_id, until)
            self._unstored[device_id] = until
            first = True
        finally:
            with self._lock:
                self._starting.discard(device_id)
        if first:
            self._metrics.quarantines.labels("started").inc()
            await self._alarm(device_id, texts.quarantine_started(device_id, until), "quarantaine")

    async def _release(self, device_id: str) -> None:
        self._send(release_commands(device_id))  # first: a crash before the row goes only repeats it
        stored = device_id not in self._unstored
        self._unstored.pop(device_id, None)
        ended = await self._store.end_quarantine(device_id) if stored else True
        with self._lock:
            self._watch.lift(device_id)
        if ended:
            self._metrics.quarantines.labels("ended").inc()
            await self._alarm(device_id, texts.quarantine_ended(device_id), "fin de quarantaine")

    async def _alarm(self, device_id: str, reason: str, label: str) -> None:
        self._metrics.operator_alarms.labels(label).inc()
        log.error("ALARME OPÉRATEUR : %s", reason)
        try:
            await self._store.add_operator_event("alarm", reason, device_id=device_id)
        except Exception:
            log.exception("could not store the operator alarm: %s", reason)
        self._bus.publish("operator_alarm", alert_id=None, reason=reason)

    def _send(self, commands: list[dict[str, Any]]) -> None:
        if self._broker is None:
            log.error("quarantine: no broker session to send %s", [c["command"] for c in commands])
            return
        self._broker.publish(CONTROL_TOPIC, json.dumps({"commands": commands}).encode(), qos=1)
