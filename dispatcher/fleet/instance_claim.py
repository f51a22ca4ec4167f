"""One running process per instance id: a second one started with the same ``VIGIE_INSTANCE_ID`` stops.

What an instance leases in the store — the notifications it sends, the
escalation and visit timers it fires, its side texts — it leases in its
instance id's name, and a restarted instance takes its own leases back at once
(a crash must not leave the police's texts waiting for a lease to run out).
Two live processes with one id (a copied env file) would both take them: two
texts for one alert, a visit timer fired twice. So each process holds the lease
``instance/<id>`` in the name of its own run (``<id>/<random>``):

* at start, before anything is taken back or the broker is joined, it takes
  that lease. One held by another run is waited for: a crashed run's runs out
  within ``lease_s``; one still renewed after that belongs to a live process,
  and this one stops with :class:`InstanceIdInUse`, having taken nothing;
* while it runs it renews the lease every ``lease_s / 3``; a store that cannot
  be reached is retried (the lease lasts meanwhile). A renewal that finds the
  lease held by another run (this one could not renew for ``lease_s`` and a
  process with the same id started meanwhile) ends the claim with
  :class:`InstanceIdInUse`, and the service stops this process as on SIGTERM
  (``dispatcher/service.py``): the other one runs under the id;
* it gives the lease up last on a clean stop, so that a restart takes it at once.

Only instances sharing a PostgreSQL store claim their id: the one dispatcher of
a SQLite store shares it with nobody.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from dispatcher.store.base import Store

log = logging.getLogger(__name__)

PREFIX = "instance/"
#: How long a run's claim outlives its last renewal: how long a restart after a crash waits.
LEASE_S = 10.0


class InstanceIdInUse(RuntimeError):
    """A live process holds this instance id: this one must not run under it."""


class InstanceClaim:
    """This process's claim on its instance id, in the shared store."""

    def __init__(self, store: Store, instance_id: str, *, lease_s: float = LEASE_S) -> None:
        self._store = store
        self._instance_id = instance_id
        self._name = PREFIX + instance_id
        self.run_id = f"{instance_id}/{secrets.token_hex(6)}"
        self._lease_s = lease_s
        self._renew_s = lease_s / 3

    async def take(self) -> None:
        """Hold the id's lease, a crashed run's waited out; :class:`InstanceIdInUse` if a live run has it."""
        give_up_at: float | None = None
        while not await self._hold():
            now = time.monotonic()
            if give_up_at is None:
                give_up_at = now + self._lease_s + self._renew_s
                log.warning(
                    "instance %s : une autre exécution détient encore son bail (arrêt brutal, ou un"
                    " second processus) ; attente de %.0f s au plus avant de démarrer",
                    self._instance_id,
                    self._lease_s + self._renew_s,
                )
            elif now >= give_up_at:
                raise InstanceIdInUse(self._in_use() + " Ce processus s'arrête sans rien reprendre.")
            await asyncio.sleep(self._renew_s)
        log.info("instance %s : identité prise par l'exécution %s", self._instance_id, self.run_id)

    async def keep(self) -> None:
        """Renew the lease until cancelled; :class:`InstanceIdInUse` once another run holds it."""
        while True:
            await asyncio.sleep(self._renew_s)
            try:
                held = await self._hold()
            except Exception:
                log.exception("instance %s : bail non renouvelé ; nouvel essai", self._instance_id)
                continue
            if not held:
                raise InstanceIdInUse(self._in_use() + " Ce processus s'arrête.")

    async def release(self) -> None:
        """Give the lease up (a clean stop): the next start under this id takes it at once."""
        try:
            await self._store.release_lease(self._name, self.run_id)
        except Exception:
            log.warning("instance %s : bail non rendu (il expire seul)", self._instance_id)

    async def _hold(self) -> bool:
        return await self._store.hold_lease(self._name, self.run_id, now=time.time(), lease_s=self._lease_s)

    def _in_use(self) -> str:
        return (
            f"VIGIE_INSTANCE_ID={self._instance_id} est déjà celui d'un autre processus en marche"
            " (son bail dans la base est renouvelé) : chaque instance doit avoir le sien."
        )
