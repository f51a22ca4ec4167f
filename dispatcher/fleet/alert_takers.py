"""Is some instance taking the devices' alerts? The pure decision behind one operator alarm.

With ``VIGIE_ROLE=web`` an instance serves the console, the API and the
provider's callbacks, and sends notifications, but takes no uplink from the
broker: alerts reach only the instances of role ``all`` (docs/architecture.md,
"Roles"). If none of those is connected to the broker, every alert waits
there, unseen, while the consoles look quiet. This core turns what the
instances report into one alarm per such episode; ``dispatcher/fleet/presence.py``
does the reporting and raising.

Events in: :meth:`TakerWatch.observe` — the instances taking alerts right now
(those whose presence lease runs, renewed only while their MQTT session is
up), at a monotonic time — and :meth:`TakerWatch.unknown` (the store could not
be read). Output: the commands to carry out, :class:`RaiseNoTaker` or
:class:`ClearNoTaker`.

Invariants:

1. No false alarm: :class:`RaiseNoTaker` only after ``grace_s`` seconds in which
   every observation found no taker, counted from the last observation that
   found one, or from the start (instances starting together take a moment
   to connect).
2. Once per episode: after a raise, no other raise until a clear; a clear only
   after a raise, at the first observation that finds a taker again. A watch
   taking over an open alarm (``raised=True``) raises nothing and clears it.
3. An unreadable store decides nothing: it neither raises (the store going
   away already has its own alarms) nor clears, and does not count as a
   moment with no taker: the silence is counted again from it.

No clock, no I/O, not thread-safe: the caller serialises calls and passes the time.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RaiseNoTaker:
    """No instance has taken alerts for ``silent_s`` seconds: tell the operators."""

    silent_s: float


@dataclass(frozen=True, slots=True)
class ClearNoTaker:
    """Alerts are taken again, by ``takers`` (instance ids, sorted)."""

    takers: tuple[str, ...]


Command = RaiseNoTaker | ClearNoTaker


class TakerWatch:
    """Follows the instances taking alerts; says when to raise and clear the alarm."""

    def __init__(self, *, grace_s: float, started_at: float, raised: bool = False) -> None:
        """``raised``: the alarm is open already (raised by a previous watcher, now gone)."""
        if grace_s <= 0:
            raise ValueError("grace_s must be positive")
        self.grace_s = grace_s
        self._last_taken = started_at  # the last moment some instance was known to take alerts
        self.raised = raised

    def observe(self, takers: Collection[str], now: float) -> list[Command]:
        """``takers`` were taking alerts at ``now``: what to do."""
        if takers:
            self._last_taken = max(self._last_taken, now)
            if self.raised:
                self.raised = False
                return [ClearNoTaker(tuple(sorted(takers)))]
            return []
        silent = now - self._last_taken
        if not self.raised and silent >= self.grace_s:
            self.raised = True
            return [RaiseNoTaker(silent)]
        return []

    def unknown(self, now: float) -> list[Command]:
        """The takers could not be read at ``now``: nothing is decided (invariant 3).

        The silence is counted again from here: the takers renew their
        presence in the same store, and may not have done so yet when it
        answers again.
        """
        self._last_taken = max(self._last_taken, now)
        return []


#: The operators' alarm: alerts are waiting at the broker, unseen. (Since when cannot be said
#: truthfully: a dead instance is known only once its presence ran out.)
NO_TAKER = (
    "aucune instance du dispatcher ne reçoit plus les alertes des balises : elles attendent chez le"
    " broker MQTT. Vérifiez les instances de rôle « all » et leur connexion au broker."
)


def takers_back_text(takers: Collection[str]) -> str:
    """The alarm cleared: which instances take alerts again."""
    return f"alertes des balises de nouveau reçues (instance(s) {', '.join(sorted(takers))})"
