"""The provider gate: one prober while the provider is down, the most urgent released first."""

from __future__ import annotations

import asyncio
import time

from dispatcher.alerting.outage import ProviderGate, backoff_s, priority
from dispatcher.store.base import NotificationRecord

# A safety net against a hang, not a timing goal: a released request resumes within a few
# turns of the event loop, which a loaded machine slows but does not stop.
HANG_S = 30.0


def row(nid: int, *, tier: int = 0, round_: int = 0, purpose: str = "alert") -> NotificationRecord:
    return NotificationRecord(
        nid, f"a{nid}", "c", "C", "+33639980100", "sms", purpose, tier, round_, "sending", None, None, 1
    )


async def test_while_down_one_probes_and_the_others_leave_in_priority_order() -> None:
    gate = ProviderGate()
    prober = row(1, tier=1)
    assert await gate.turn(prober, timeout_s=1) and gate.unreachable(time.monotonic())
    assert not gate.unreachable(time.monotonic())  # one outage, one alarm
    assert await gate.turn(prober, timeout_s=1)  # the prober keeps its turn
    released: list[int] = []

    async def wait(n: NotificationRecord) -> None:
        assert await gate.turn(n, timeout_s=HANG_S)
        released.append(n.id)

    waiting = [row(2, purpose="ack_notice"), row(3, tier=2), row(4), row(5, round_=1)]
    tasks = [asyncio.create_task(wait(n)) for n in waiting]
    await asyncio.sleep(0.05)
    assert released == []  # nobody but the prober while the provider is down
    assert gate.reached() and not gate.down
    await asyncio.gather(*tasks)
    assert released == [4, 3, 5, 2]  # alerts before notices, then by round and tier


async def test_a_waiter_probes_too_after_its_timeout_and_the_prober_wakes_when_the_provider_is_back() -> None:
    gate = ProviderGate()
    prober = row(1)
    assert await gate.turn(prober, timeout_s=1) and gate.unreachable(time.monotonic())
    assert await gate.turn(prober, timeout_s=1)  # its retry: it probes
    assert not await gate.turn(row(2), timeout_s=0.05)  # the caller may then try by itself
    pause = asyncio.create_task(gate.pause(10 * HANG_S))
    await asyncio.sleep(0.01)
    gate.reached()
    await asyncio.wait_for(pause, HANG_S)  # not the whole backoff
    gate.leave(prober)


async def test_once_back_the_requests_the_outage_held_leave_in_priority_order_whatever_their_pace() -> None:
    """The CI failure of stop 17: a first-tier request still getting ready (woken from its
    backoff, renewing its lease) while second-tier ones released at once were already
    leaving; the provider received them first."""
    gate = ProviderGate()
    first_tier, second_tier = row(1), [row(4, tier=1), row(5, tier=1)]
    assert await gate.turn(first_tier, timeout_s=1) and gate.unreachable(time.monotonic())
    for n in (first_tier, *second_tier):
        gate.hold(n)
    assert gate.reached()
    left: list[int] = []

    async def leave_for_provider(n: NotificationRecord) -> None:
        await gate.departure(n, timeout_s=HANG_S)
        left.append(n.id)
        gate.departed(n)  # holds its connection to the provider

    newcomer = row(6, tier=2)  # created after the outage, less urgent than the backlog
    tasks = [asyncio.create_task(leave_for_provider(n)) for n in (newcomer, *reversed(second_tier))]
    await asyncio.sleep(0.05)
    assert left == []  # the first tier is still getting ready: nobody overtakes it
    await leave_for_provider(first_tier)
    await asyncio.wait_for(asyncio.gather(*tasks), HANG_S)
    assert left == [1, 4, 5, 6]


def _back_after_holding(gate: ProviderGate, *held: NotificationRecord) -> ProviderGate:
    """``gate`` after an outage that held ``held``, once the provider answered again."""
    assert gate.unreachable(time.monotonic())
    for n in held:
        gate.hold(n)
    assert gate.reached()
    return gate


async def test_the_next_in_line_goes_only_once_the_one_before_holds_its_connection() -> None:
    """Stop 28's CI failure: a first-tier request and a second-tier one started a millisecond
    apart raced for their connections, and the provider received the second-tier one first."""
    first_tier, second_tier = row(1), row(4, tier=1)
    gate = _back_after_holding(ProviderGate(connect_wait_s=HANG_S), first_tier, second_tier)
    await asyncio.wait_for(gate.departure(first_tier, timeout_s=HANG_S), HANG_S)
    waiting = asyncio.create_task(gate.departure(second_tier, timeout_s=HANG_S))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "the first-tier request has started, not yet connected"
    gate.departed(first_tier)
    await asyncio.wait_for(waiting, HANG_S)


async def test_a_request_slow_to_connect_holds_the_next_in_line_only_for_a_while() -> None:
    slow, next_one = row(1), row(4, tier=1)
    gate = _back_after_holding(ProviderGate(connect_wait_s=0.01), slow, next_one)
    await asyncio.wait_for(gate.departure(slow, timeout_s=HANG_S), HANG_S)
    # Never told it connected (a TLS handshake taking its time): the next goes all the same.
    await asyncio.wait_for(gate.departure(next_one, timeout_s=HANG_S), HANG_S / 3)


async def test_a_held_request_that_never_gets_ready_holds_the_others_back_only_for_a_while() -> None:
    gate = ProviderGate()
    stuck, waiting = row(1), row(4, tier=1)
    assert gate.unreachable(time.monotonic())
    gate.hold(stuck)
    gate.hold(waiting)
    gate.reached()
    await asyncio.wait_for(gate.departure(waiting, timeout_s=0.05), HANG_S)


async def test_a_lone_probe_leaves_at_once_while_down_and_a_request_done_lets_the_next_go() -> None:
    gate = ProviderGate()
    assert gate.unreachable(time.monotonic())
    gate.hold(row(1))
    await asyncio.wait_for(gate.departure(row(4, tier=1)), HANG_S)  # a probe, while down
    gate.answered(row(4, tier=1))
    gate.hold(row(4, tier=1))
    gate.reached()
    second = asyncio.create_task(gate.departure(row(4, tier=1), timeout_s=HANG_S))
    await asyncio.sleep(0.05)
    assert not second.done()
    gate.leave(row(1))  # no longer wanted (the alert was acknowledged): it never leaves
    await asyncio.wait_for(second, HANG_S)


async def test_a_long_outage_with_many_retries_keeps_the_line_the_size_of_its_backlog() -> None:
    gate = ProviderGate()
    assert gate.unreachable(time.monotonic())
    backlog = [row(i, tier=i % 3) for i in range(1, 11)]
    for _ in range(1_000):  # every request probing again and again for an hour
        for n in backlog:
            gate.hold(n)
            await gate.departure(n)  # while down: a probe leaves at once
            gate.departed(n)
            gate.answered(n)  # refused
    for n in backlog:
        gate.hold(n)
    assert len(gate._line) <= 2 * len(backlog) + 64
    gate.reached()
    left: list[int] = []

    async def leave_for_provider(n: NotificationRecord) -> None:
        await gate.departure(n, timeout_s=HANG_S)
        left.append(n.id)
        gate.departed(n)  # holds its connection to the provider

    # Ready in the worst order, the most urgent last: they still leave in priority order.
    tasks = [asyncio.create_task(leave_for_provider(n)) for n in reversed(backlog)]
    await asyncio.wait_for(asyncio.gather(*tasks), HANG_S)
    assert left == [n.id for n in sorted(backlog, key=priority)]
    await asyncio.wait_for(gate.departure(row(99, tier=5), timeout_s=HANG_S), HANG_S)  # nobody left held


async def test_a_request_sent_before_the_provider_came_back_does_not_start_another_outage() -> None:
    gate = ProviderGate()
    assert gate.unreachable(time.monotonic())
    in_flight_since = time.monotonic()  # left while the provider was still down
    assert gate.reached()
    assert not gate.unreachable(in_flight_since) and not gate.down  # no second alarm
    assert gate.unreachable(time.monotonic()) and gate.down  # a request sent now: down again


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    waits = [backoff_s(a, base_s=0.5, cap_s=10) for a in range(1, 10)]
    assert 0.25 <= waits[0] <= 0.5 and all(5 <= w <= 10 for w in waits[6:])


async def test_while_down_the_probes_leave_one_at_a_time_the_most_urgent_first() -> None:
    """The second tier's requests, tired of waiting behind the prober all at once, must not
    reach a provider coming back together, ahead of the first tier it held."""
    gate = ProviderGate()
    assert gate.unreachable(time.monotonic())
    in_flight, later, urgent = row(4, tier=1), row(9, tier=2), row(5, tier=1)
    await asyncio.wait_for(gate.departure(in_flight, timeout_s=HANG_S), HANG_S)
    left: list[int] = []

    async def probe(n: NotificationRecord) -> None:
        await gate.departure(n, timeout_s=HANG_S)
        left.append(n.id)

    tasks = [asyncio.create_task(probe(n)) for n in (later, urgent)]
    await asyncio.sleep(0.05)
    assert left == []  # one request in flight while the provider is down
    gate.answered(in_flight)  # refused
    await asyncio.sleep(0.05)
    assert left == [5]
    gate.answered(urgent)
    await asyncio.wait_for(asyncio.gather(*tasks), HANG_S)
    assert left == [5, 9]


async def test_probes_waiting_when_the_provider_comes_back_leave_behind_the_more_urgent_held() -> None:
    gate = ProviderGate()
    assert gate.unreachable(time.monotonic())
    first_tier, finder, tired = row(1), row(4, tier=1), row(5, tier=1)
    for n in (first_tier, finder, tired):
        gate.hold(n)  # the first tier in its backoff, the second tier probing by itself
    await asyncio.wait_for(gate.departure(finder, timeout_s=HANG_S), HANG_S)
    waiting = asyncio.create_task(gate.departure(tired, timeout_s=HANG_S))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert gate.reached()  # the probe in flight found the provider back
    gate.answered(finder)
    gate.departed(finder)
    await asyncio.sleep(0.05)
    assert not waiting.done(), "the first tier, still in its backoff, goes first"
    await asyncio.wait_for(gate.departure(first_tier, timeout_s=HANG_S), HANG_S)
    gate.departed(first_tier)
    await asyncio.wait_for(waiting, HANG_S)


async def test_a_probe_that_hangs_holds_the_next_only_for_a_while() -> None:
    gate = ProviderGate()
    assert gate.unreachable(time.monotonic())
    await asyncio.wait_for(gate.departure(row(4, tier=1), timeout_s=HANG_S), HANG_S)  # never answered
    await asyncio.wait_for(gate.departure(row(5, tier=1), timeout_s=0.05), HANG_S)
