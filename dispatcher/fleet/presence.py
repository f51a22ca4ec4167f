"""Which instances take alerts: each says so in the store; one of them watches for none.

The I/O shell around :mod:`dispatcher.fleet.alert_takers`. Every pass:

* an instance of role ``all`` whose MQTT session is up holds its lease
  ``alert-taker/<instance id>`` (a web-only instance, or one cut from the
  broker, holds none, and gives its own up at once on the way);
* every instance reads the running ``alert-taker/`` leases, for its gauge
  ``vigie_alert_taking_instances``;
* the instance holding the ``alert-takers-watch`` lease (one at a time, any
  role) feeds them to a :class:`TakerWatch` and raises or clears the operator
  alarm: an operator event, a critical log line, the console told at once.

A dead instance's lease runs out within :data:`PRESENCE_LEASE_S`; the alarm
follows ``VIGIE_NO_ALERT_TAKER_ALARM_S`` later. The only instance on a SQLite
store watches its own MQTT session the same way, with no lease written (every
write there is a disk sync the alerts' commits would queue behind).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from dispatcher.events import EventBus
from dispatcher.fleet.alert_takers import (
    NO_TAKER,
    ClearNoTaker,
    Command,
    RaiseNoTaker,
    TakerWatch,
    takers_back_text,
)
from dispatcher.metrics import Metrics
from dispatcher.store.base import Store

log = logging.getLogger(__name__)

PRESENCE = "alert-taker/"
WATCH_LEASE = "alert-takers-watch"
# Names this alarm among the consoles' system alarms (cleared by its end).
TOPIC = "alert_takers"
PASS_S = 2.0
# Renewed every pass: a dead instance stops counting within this.
PRESENCE_LEASE_S = 10.0


class AlertTakerPresence:
    """Says whether this instance takes alerts; when it holds the watch, alarms when none does."""

    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        metrics: Metrics,
        instance_id: str,
        takes_alerts: Callable[[], bool],
        grace_s: float,
        shared: bool = True,
    ) -> None:
        self._store = store
        self._bus = bus
        self._metrics = metrics
        self._instance_id = instance_id
        self._takes_alerts = takes_alerts
        self._grace_s = grace_s
        # False: the only instance on its store (SQLite), which watches its own session, with no lease.
        self._shared = shared
        self._present = False  # this instance's presence lease is held
        self.watch: TakerWatch | None = None  # while this instance holds the watch

    async def run(self, *, period_s: float = PASS_S) -> None:
        """One pass every ``period_s`` until cancelled; both leases are given up on the way out."""
        try:
            while True:
                try:
                    await self.tick()
                except Exception:
                    log.exception("présence des instances : passage en échec ; nouvel essai au prochain")
                await asyncio.sleep(period_s)
        finally:
            await asyncio.shield(self._give_up())

    async def tick(self, now: float | None = None) -> list[Command]:
        """One pass: this instance's presence, the gauge, and the watch's decision if it holds it."""
        now = time.time() if now is None else now
        try:
            watching, takers = await self._read_takers(now)
        except Exception:
            if self.watch is not None:
                self.watch.unknown(now)
            raise
        self._metrics.alert_takers.set(len(takers))
        if not watching:
            self.watch = None  # another instance watches; a new watch starts its grace afresh
            return []
        if self.watch is None:  # taking over: an alarm its previous watcher raised stays one episode
            self.watch = TakerWatch(
                grace_s=self._grace_s, started_at=now, raised=TOPIC in self._bus.system_alarms
            )
        commands = self.watch.observe(takers, now)
        for command in commands:
            await self._carry_out(command)
        return commands

    async def _read_takers(self, now: float) -> tuple[bool, list[str]]:
        """Whether this instance watches, and the instances taking alerts at ``now``."""
        if not self._shared:
            return True, [self._instance_id] if self._takes_alerts() else []
        await self._say_present(now)
        watching = await self._store.hold_lease(
            WATCH_LEASE, self._instance_id, now=now, lease_s=PRESENCE_LEASE_S
        )
        return watching, await self._store.lease_holders(PRESENCE, now=now)

    async def _say_present(self, now: float) -> None:
        name = PRESENCE + self._instance_id
        if self._takes_alerts():
            self._present = await self._store.hold_lease(
                name, self._instance_id, now=now, lease_s=PRESENCE_LEASE_S
            )
        elif self._present:
            await self._store.release_lease(name, self._instance_id)
            self._present = False

    async def _carry_out(self, command: Command) -> None:
        match command:
            case RaiseNoTaker(silent_s=silent):
                text = NO_TAKER
                log.critical("présence des instances : %s (aucune présence lue depuis %.0f s)", text, silent)
                self._metrics.operator_alarms.labels(text[:40]).inc()
                try:
                    await self._store.add_operator_event("alarm", text, topic=TOPIC)
                finally:  # after, so that the consoles re-read it; even if the store is what fails
                    self._bus.publish("operator_alarm", alert_id=None, reason=text, topic=TOPIC)
            case ClearNoTaker(takers=takers):
                text = takers_back_text(takers)
                log.warning("présence des instances : %s", text)
                try:
                    await self._store.add_operator_event("alert_takers", text, topic=TOPIC)
                finally:
                    self._bus.publish("system", topic=TOPIC, cleared=text)

    async def _give_up(self) -> None:
        if not self._shared:
            return
        for name in (PRESENCE + self._instance_id, WATCH_LEASE):
            try:
                await self._store.release_lease(name, self._instance_id)
            except Exception:
                log.warning("présence des instances : bail %s non rendu (il expire seul)", name)
