"""Per-device token buckets: a device flooding alerts cannot starve the others.

Pure: the clock is injected and nothing here does I/O, so the ingest can ask
"may this device send one more?" on the hot path for the price of a dict
lookup. The defaults are deliberately generous (a burst of 5, then one every
10 s): a practitioner pressing again and again in real distress is never
refused, only a broken or hostile device that sends dozens per second.
Re-sends of an already stored alert are not counted (the ingest checks them
first), so store-and-forward after an outage never trips the limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class BucketPolicy:
    """``burst`` tokens at most, refilled at ``refill_per_s`` tokens per second."""

    burst: float = 5.0
    refill_per_s: float = 0.1

    def __post_init__(self) -> None:
        if self.burst < 1 or self.refill_per_s <= 0:
            raise ValueError("a bucket needs burst >= 1 and a positive refill rate")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """One token bucket per key (a device id), created full on first use."""

    def __init__(
        self, policy: BucketPolicy | None = None, *, clock: Clock = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.policy = policy or BucketPolicy()
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False (and nothing taken) when its bucket is empty."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room()
            bucket = self._buckets[key] = _Bucket(self.policy.burst, now)
        else:
            elapsed = max(0.0, now - bucket.updated)  # a clock going back never adds tokens
            bucket.tokens = min(self.policy.burst, bucket.tokens + elapsed * self.policy.refill_per_s)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def tokens(self, key: str) -> float:
        """Tokens ``key`` would have now (a full bucket for an unseen key); for tests and logs."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.policy.burst
        elapsed = max(0.0, self._clock() - bucket.updated)
        return min(self.policy.burst, bucket.tokens + elapsed * self.policy.refill_per_s)

    def _make_room(self) -> None:
        """Bound memory against a flood of invented keys: drop buckets that are full again."""
        if len(self._buckets) < self._max_keys:
            return
        now = self._clock()
        refill = self.policy.refill_per_s
        burst = self.policy.burst
        self._buckets = {
            k: b for k, b in self._buckets.items() if b.tokens + (now - b.updated) * refill < burst
        }
