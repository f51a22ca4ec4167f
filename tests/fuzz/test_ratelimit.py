"""The per-device token bucket, on an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.alerting.ratelimit import BucketPolicy, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_five_then_one_every_ten_seconds() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    assert [limiter.allow("d1") for _ in range(6)] == [True] * 5 + [False]
    clock.now += 9.9
    assert not limiter.allow("d1")
    clock.now += 0.2
    assert limiter.allow("d1")
    assert not limiter.allow("d1")


def test_devices_have_separate_buckets() -> None:
    limiter = RateLimiter(clock=Clock())
    for _ in range(10):
        limiter.allow("flooder")
    assert limiter.allow("someone-else")
    assert limiter.tokens("someone-else") == pytest.approx(4)


def test_a_clock_going_backwards_adds_no_token() -> None:
    clock = Clock()
    limiter = RateLimiter(BucketPolicy(burst=1, refill_per_s=1), clock=clock)
    assert limiter.allow("d")
    clock.now -= 1000
    assert not limiter.allow("d")


def test_memory_is_bounded_by_forgetting_full_buckets() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock, max_keys=10)
    for i in range(10):
        limiter.allow(f"d{i}")
    clock.now += 60  # every bucket is full again
    limiter.allow("new")
    assert len(limiter._buckets) == 1


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        BucketPolicy(burst=0)
    with pytest.raises(ValueError):
        BucketPolicy(refill_per_s=0)


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.floats(min_value=0, max_value=30), max_size=80))
def test_never_more_than_burst_plus_refill(gaps: list[float]) -> None:
    clock = Clock()
    policy = BucketPolicy()
    limiter = RateLimiter(policy, clock=clock)
    start = clock.now
    allowed = 0
    for gap in gaps:
        clock.now += gap
        allowed += limiter.allow("d")
    assert allowed <= policy.burst + (clock.now - start) * policy.refill_per_s + 1e-9
