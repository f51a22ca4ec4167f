"""A provider outage, as the sending side sees it: one prober, everybody else queued by priority.

When the provider cannot be reached (connection refused, timeouts, HTTP 5xx
or 429), hammering it with every pending request helps nobody and, when it
comes back, decides the order in which police contacts are reached by chance.
So while it is down a single request — the *prober* — keeps retrying with
backoff; every other request waits here. The first answer from the provider
ends the outage and releases the waiting requests in priority order: alerts
of the first tier of the first round first (see :func:`priority`), so the
people who should have been reached first are reached first.

Released together, the requests then get ready at their own pace (a lease
renewed in the store, the alert's context, a responder link), so the order in
which they *resume* is not the order in which they reach the provider. The
gate therefore keeps every request the outage held in one line until it
leaves for the provider (:meth:`ProviderGate.departure`): once the provider
is back, a request goes only when no more urgent one of that line is still
getting ready, or after ``ORDER_WAIT_S``. Less urgent contacts are reached
after the more urgent ones, never held back for long by one that is stuck.
A request leaves the line (:meth:`ProviderGate.departed`) once it holds its
connection to the provider, not when it starts: two requests started one after
the other otherwise race for their connections (a new one against one free in
the pool), and the provider may receive the second first (stop 28's CI). It
leaves after ``CONNECT_WAIT_S`` in any case: a slow handshake (TLS to a
distant provider) must not make a large backlog leave one by one.

While the provider is down, requests that probe by themselves (tired of
waiting behind the prober) still leave one at a time, the most urgent first,
each after the answer to the one before (:meth:`ProviderGate.answered`), or
after ``ORDER_WAIT_S`` behind a probe that hangs. Otherwise a handful of them,
started together while it was down, reach the provider together as it comes
back, ahead of the more urgent requests it held (seen in the fault test when
the second tier's requests all tired at once): only the probe that finds the
provider back may precede the line.

Invariants: while up, no request waits here unless a more urgent one the
outage held is still on its way (and never longer than ``ORDER_WAIT_S``);
while down, at most one request is in flight, unless one has hung past
``ORDER_WAIT_S``; every wait ends when the provider is found back.

Nothing here touches the network or the store; :mod:`dispatcher.alerting.delivery`
drives it and reports the outage to operators.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import time
from dataclasses import dataclass, field

from dispatcher.store.base import NotificationRecord

Priority = tuple[int, int, int, int]

#: The longest a request waits at its departure for a more urgent one the outage held.
ORDER_WAIT_S = 5.0
#: The longest a departed request keeps the next in line waiting for its connection.
CONNECT_WAIT_S = 0.05


def priority(n: NotificationRecord) -> Priority:
    """Lower goes first: alerts before notices, then (round, tier), then creation order."""
    return (0 if n.purpose == "alert" else 1, n.round, n.tier, n.id)


def backoff_s(attempt: int, *, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter on the upper half: attempt 1 waits ~``base_s``.

    Jitter keeps several instances (and several probers after a restart) from
    hitting a recovering provider in lock-step.
    """
    ceiling = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    draw = rng.random() if rng is not None else random.random()
    return ceiling * (0.5 + 0.5 * draw)


@dataclass(order=True)
class _Waiter:
    key: Priority
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class ProviderGate:
    """Tells each send when it may go to the provider."""

    def __init__(self, *, connect_wait_s: float = CONNECT_WAIT_S) -> None:
        self._connect_wait_s = connect_wait_s
        self.down_since: float | None = None  # time.time() of the first failure of this outage
        self._prober: int | None = None  # notification id of the request probing the provider
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._up = asyncio.Event()
        self._up.set()
        self._back_at = -1.0  # time.monotonic() when the last outage ended
        # The line of requests the outage held, until each leaves for the provider:
        # their priorities, a heap of them (stale entries skipped), and the futures of
        # those already waiting at their departure.
        self._held: dict[int, Priority] = {}
        self._line: list[tuple[Priority, int]] = []
        self._ready: dict[int, asyncio.Future[None]] = {}
        self._connecting: dict[int, asyncio.TimerHandle] = {}  # departed, not yet connected
        # While down: the request in flight to the provider, and those waiting to probe after it.
        self._probing: int | None = None
        self._probes: list[_Waiter] = []

    @property
    def down(self) -> bool:
        return self.down_since is not None

    async def turn(self, n: NotificationRecord, *, timeout_s: float) -> bool:
        """True when ``n`` may be sent now: at once while the provider is up, else as the prober.

        False after ``timeout_s`` still waiting behind the prober (the caller
        decides whether to try anyway).
        """
        if self.down and self._prober not in (None, n.id):
            waiter = _Waiter(priority(n), next(self._seq), asyncio.get_running_loop().create_future())
            heapq.heappush(self._waiters, waiter)
            try:
                await asyncio.wait_for(asyncio.shield(waiter.future), timeout_s)
            except TimeoutError:
                waiter.future.cancel()  # skipped when released; it queues again with the same key
                return False
        if self.down:
            if self._prober not in (None, n.id):
                return False  # released to probe, but another request took the turn first
            self._prober = n.id
        return True

    def unreachable(self, attempted_at: float) -> bool:
        """A request sent at ``attempted_at`` (monotonic) could not reach the provider.

        True when this starts an outage. A request that left before the
        provider was last found back says nothing new: it starts none (no
        second alarm for the outage that just ended; it is simply tried again).
        """
        if self.down or attempted_at < self._back_at:
            return False
        self.down_since = time.time()
        self._up.clear()
        return True

    async def pause(self, seconds: float) -> None:
        """The prober's backoff: ``seconds``, or less if another request finds the provider back."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), seconds)

    def reached(self) -> bool:
        """The provider answered (whatever it said); True when this ends an outage.

        Every waiting request is released, in priority order: they resume in
        the order their futures are resolved.
        """
        if not self.down:
            return False
        self.down_since = None
        self._back_at = time.monotonic()
        self._prober = None
        self._up.set()  # the prober (usually the first, most urgent request) resumes first
        while self._waiters:
            waiter = heapq.heappop(self._waiters)
            if not waiter.future.done():
                waiter.future.set_result(None)
        self._probing = None
        while self._probes:  # into the line, which they leave in priority order
            waiter = heapq.heappop(self._probes)
            if not waiter.future.done():
                waiter.future.set_result(None)
        self._wake_first_in_line()
        return True

    def hold(self, n: NotificationRecord) -> None:
        """``n`` is held back by the outage: it joins the line that leaves in priority order."""
        if n.id in self._held:
            return
        key = priority(n)
        self._held[n.id] = key
        heapq.heappush(self._line, (key, n.id))
        if len(self._line) > 2 * len(self._held) + 64:
            # Entries of requests that left (each retry of a long outage adds one): rebuilt
            # from the requests still held, so the line stays the size of the backlog.
            self._line = [(k, i) for i, k in self._held.items()]
            heapq.heapify(self._line)

    async def departure(self, n: NotificationRecord, *, timeout_s: float = ORDER_WAIT_S) -> None:
        """Return when ``n`` may leave for the provider: after every more urgent request held.

        While the provider is down nothing waits here (the prober probes). Once
        it is back, a request finding a more urgent one of the line still on
        its way joins the line and waits its turn, at most ``timeout_s``. It
        stays first in line until :meth:`departed`, at most ``CONNECT_WAIT_S``.
        While it is down, a request probes only once the probe before it is
        :meth:`answered` (the most urgent waiting goes next), at most ``timeout_s``.
        """
        if self.down:
            await self._probe_turn(n, timeout_s)
        if not self.down and self._held:
            self.hold(n)
            if self._first_in_line() != n.id:
                ready = asyncio.get_running_loop().create_future()
                self._ready[n.id] = ready
                try:
                    await asyncio.wait_for(ready, timeout_s)
                except TimeoutError:
                    pass  # a more urgent request is stuck getting ready: go anyway
                finally:
                    self._ready.pop(n.id, None)
        if not self.down and n.id in self._held and n.id not in self._connecting:
            # (While down, a probe is refused at once or told when it connects: no timer.)
            later = asyncio.get_running_loop().call_later(self._connect_wait_s, self.departed, n)
            self._connecting[n.id] = later

    async def _probe_turn(self, n: NotificationRecord, timeout_s: float) -> None:
        """While down: return when no other probe is in flight, or the provider is back."""
        deadline = time.monotonic() + timeout_s
        while self.down and self._probing not in (None, n.id):
            waiter = _Waiter(priority(n), next(self._seq), asyncio.get_running_loop().create_future())
            heapq.heappush(self._probes, waiter)
            try:
                await asyncio.wait_for(asyncio.shield(waiter.future), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                self._give_up_probe_turn(waiter)
                return  # the probe before it hangs: go anyway, unaccounted
            except asyncio.CancelledError:
                self._give_up_probe_turn(waiter)
                raise
        if self.down:
            self._probing = n.id

    def _give_up_probe_turn(self, waiter: _Waiter) -> None:
        if not waiter.future.cancel():  # woken meanwhile: the turn goes to the next one
            self._wake_next_probe()

    def answered(self, n: NotificationRecord) -> None:
        """``n``'s request is over (answered, refused, timed out): while down, the next probe may go."""
        if self._probing != n.id:
            return
        self._probing = None
        self._wake_next_probe()

    def _wake_next_probe(self) -> None:
        while self._probes:
            waiter = heapq.heappop(self._probes)
            if not waiter.future.done():
                waiter.future.set_result(None)
                return

    def departed(self, n: NotificationRecord) -> None:
        """``n`` holds its connection to the provider (or failed before): the next may go."""
        later = self._connecting.pop(n.id, None)
        if later is not None:
            later.cancel()
        self._leave_line(n)

    def _first_in_line(self) -> int | None:
        while self._line and self._held.get(self._line[0][1]) != self._line[0][0]:
            heapq.heappop(self._line)
        return self._line[0][1] if self._line else None

    def _leave_line(self, n: NotificationRecord) -> None:
        if self._held.pop(n.id, None) is not None:
            self._wake_first_in_line()

    def _wake_first_in_line(self) -> None:
        first = self._first_in_line()
        ready = self._ready.get(first) if first is not None else None
        if ready is not None and not ready.done():
            ready.set_result(None)

    def leave(self, n: NotificationRecord) -> None:
        """``n`` is done (sent, failed, or no longer wanted): if it was probing, the next in line probes."""
        self.departed(n)
        self.answered(n)
        if self._prober != n.id:
            return
        self._prober = None
        while self._waiters:
            waiter = heapq.heappop(self._waiters)
            if not waiter.future.done():
                waiter.future.set_result(None)
                return
