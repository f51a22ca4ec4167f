"""The provider gate: one prober while the provider is down, the most urgent released first."""

from __future__ import annotations

import asyncio

from dispatcher.alerting.outage import ProviderGate, backoff_s
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
    assert await gate.turn(prober, timeout_s=1) and gate.unreachable()
    assert not gate.unreachable()  # one outage, one alarm
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
    assert await gate.turn(prober, timeout_s=1) and gate.unreachable()
    assert await gate.turn(prober, timeout_s=1)  # its retry: it probes
    assert not await gate.turn(row(2), timeout_s=0.05)  # the caller may then try by itself
    pause = asyncio.create_task(gate.pause(10 * HANG_S))
    await asyncio.sleep(0.01)
    gate.reached()
    await asyncio.wait_for(pause, HANG_S)  # not the whole backoff
    gate.leave(prober)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    waits = [backoff_s(a, base_s=0.5, cap_s=10) for a in range(1, 10)]
    assert 0.25 <= waits[0] <= 0.5 and all(5 <= w <= 10 for w in waits[6:])
