"""Checking the PIN of a cancel sent by a device: normal, duress, or refused (and why).

Whose PINs count: the practitioner's the device belongs to; for a fixed desk
button (or a device tied to a site only) also the site's staff PINs — the
person at the desk may not be the practitioner. A PIN matching *any* duress
PIN is a duress, checked first: when in doubt the escalation goes on.

A wrong PIN is refused — counted, logged, told to the device (``cancel_refused``
downlink) and to the operators — and never taken for a duress. PIN guessing
is rate-limited per device (a token bucket, :mod:`dispatcher.alerting.ratelimit`):
past the limit a cancel is refused without being checked, whatever the PIN,
so the alert stays open (the safe side) and argon2's CPU cost stays bounded.
The service keeps the bucket in the store (:meth:`AccessStore.take_pin_try`),
so that N instances sharing a database allow the rate once, not N times; a
store that fails then raises :class:`StoreUnavailable` and the ingest retries
the cancel (the alert stays open meanwhile). Without a store (unit tests) the
bucket is in memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from dispatcher.alerting.ratelimit import BucketPolicy, Clock, RateLimiter
from dispatcher.directory.loader import verify_pin
from dispatcher.domain import Device, DeviceKind, Practitioner, Site
from dispatcher.hashing import HashPool
from dispatcher.store.base import AccessStore

#: 5 tries at once, then one a minute: enough for a shaking hand, far too few to guess 4 digits.
DEFAULT_PIN_TRIES = BucketPolicy(burst=5.0, refill_per_s=1 / 60)


class Verdict(StrEnum):
    """What a cancel's PIN turned out to be."""

    NORMAL = "normal"
    DURESS = "duress"
    WRONG_PIN = "wrong_pin"
    NO_PIN = "no_pin"  # nobody set a PIN that could cancel this device's alerts
    RATE_LIMITED = "rate_limited"


#: Why a cancel was refused, in the operators' words.
REFUSALS: dict[Verdict, str] = {
    Verdict.WRONG_PIN: "code erroné",
    Verdict.NO_PIN: "aucun code d'annulation n'est défini pour ce bouton",
    Verdict.RATE_LIMITED: "trop d'essais de code sur ce bouton (limite atteinte)",
}


@dataclass(frozen=True, slots=True)
class PinCheck:
    """The PIN hashes that may cancel one device's alerts, and whose they are."""

    cancel: tuple[tuple[str, str], ...]  # (owner, argon2 hash)
    duress: tuple[tuple[str, str], ...]

    @classmethod
    def for_device(
        cls, device: Device | None, practitioner: Practitioner | None, site: Site | None
    ) -> PinCheck:
        """The practitioner's PINs; a desk button's (or site-only device's) site PINs too."""
        cancel: list[tuple[str, str]] = []
        duress: list[tuple[str, str]] = []
        if practitioner is not None:
            _add(cancel, "praticien", practitioner.cancel_pin_hash)
            _add(duress, "praticien", practitioner.duress_pin_hash)
        fixed = device is not None and (device.kind is DeviceKind.BUTTON or device.practitioner_id is None)
        if site is not None and fixed:
            _add(cancel, "site", site.cancel_pin_hash)
            _add(duress, "site", site.duress_pin_hash)
        return cls(tuple(cancel), tuple(duress))

    async def check(self, pin: str, pool: HashPool | None = None) -> tuple[Verdict, str | None]:
        """The verdict and whose PIN it was; argon2 runs on ``pool``'s threads (about 0.2 s each)."""
        if not self.cancel and not self.duress:
            return Verdict.NO_PIN, None
        run = pool.run if pool is not None else asyncio.to_thread
        for owner, pin_hash in self.duress:
            if await run(verify_pin, pin_hash, pin):
                return Verdict.DURESS, owner
        for owner, pin_hash in self.cancel:
            if await run(verify_pin, pin_hash, pin):
                return Verdict.NORMAL, owner
        return Verdict.WRONG_PIN, None


def _add(into: list[tuple[str, str]], owner: str, pin_hash: str | None) -> None:
    if pin_hash is not None:
        into.append((owner, pin_hash))


PIN_THREADS = 2  # a cancel checks at most a few hashes, one after the other


class PinGuard:
    """Per-device PIN tries: a cancel takes a token before its PIN is checked.

    With ``store``, the tokens are the store's (shared by every instance) and
    ``wall_clock`` dates the tries; without, an in-memory bucket on ``clock``.
    """

    def __init__(
        self,
        policy: BucketPolicy = DEFAULT_PIN_TRIES,
        *,
        store: AccessStore | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._policy = policy
        self._store = store
        self._wall_clock = wall_clock
        self._limiter = RateLimiter(policy, clock=clock)
        # Threads of their own: a login flood (argon2 on the login threads) must not delay a duress check.
        self._pool = HashPool(PIN_THREADS, "vigie-pin")

    async def check(self, device_id: str, pins: PinCheck, pin: str) -> tuple[Verdict, str | None]:
        if not await self._take_try(device_id):
            return Verdict.RATE_LIMITED, None
        return await pins.check(pin, self._pool)

    async def _take_try(self, device_id: str) -> bool:
        if self._store is None:
            return self._limiter.allow(device_id)
        return await self._store.take_pin_try(
            device_id,
            burst=self._policy.burst,
            refill_per_s=self._policy.refill_per_s,
            now=self._wall_clock(),
        )
