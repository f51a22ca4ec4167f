"""The state the escalation keeps for one alert, and its JSON form (persisted by the store).

Pure, like :mod:`dispatcher.alerting.escalation`, which moves it from event to event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from dispatcher.alerting.escalation_plan import EscalationPlan, opt_str, plan_from_json, plan_to_json
from dispatcher.domain import AlertKind, AlertState, Channel

__all__ = ["CHAIN_KINDS", "ESCALATING_STATES", "TERMINAL_STATES", "Delivery", "EscalationState"]

#: States in which nothing is ever sent to a responder again.
TERMINAL_STATES = frozenset({AlertState.RESOLVED, AlertState.CANCELLED, AlertState.FALSE_ALARM})
#: States in which the escalation may still be running.
ESCALATING_STATES = frozenset({AlertState.NOTIFYING, AlertState.DURESS})
#: Kinds that run the responders' chain: a drill runs it too, announced as a drill.
CHAIN_KINDS = frozenset({AlertKind.ALERT, AlertKind.DRILL})


_JSON_SCHEMA = 1


Delivery: TypeAlias = tuple[str, Channel]  # (contact id, channel)


@dataclass(frozen=True, slots=True)
class EscalationState:
    """Everything the machine knows about one alert; persisted as JSON by the store.

    ``notified``: contact ids that received the alert, in order, without
    duplicates (the audience of later notices). ``sent``/``failed``: alert
    deliveries of the *current* position only, for the delivery fallback.
    ``exhausted``: the planned chain is run out (alarm raised once); the
    last tier is being re-notified on a timer.
    ``version``: +1 on every step that changes the state; unchanged states are
    returned as the very same object and need not be written.
    ``alarm``: an operator alarm (duress, exhausted escalation, nobody to
    alert) that no human has taken in hand yet: the console rings for it
    whatever the state. ``cover``: under duress, the state a normal cancel
    would have left at that moment — what is shown where the aggressor may
    look (the practitioner's own views) until an operator resolved the alert.
    """

    alert_id: str
    kind: AlertKind
    state: AlertState
    plan: EscalationPlan
    duress: bool = False
    tier: int = 0
    round: int = 0
    notified: tuple[str, ...] = ()
    acked_by: str | None = None
    acked_via: str | None = None
    closed_by: str | None = None
    taken_over_by: str | None = None
    exhausted: bool = False
    sent: tuple[Delivery, ...] = ()
    failed: tuple[Delivery, ...] = ()
    version: int = 1
    alarm: str | None = None
    cover: EscalationState | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def escalating(self) -> bool:
        """True while timers and delivery failures may still move the escalation."""
        return (
            self.kind in CHAIN_KINDS
            and self.state in ESCALATING_STATES
            and self.acked_by is None
            and self.taken_over_by is None
            and not self.plan.is_empty
        )

    @property
    def renotifying(self) -> bool:
        """True once the chain ran out and the last tier is re-alerted on a timer."""
        return self.round > self.plan.repeats

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict; :meth:`from_json` gives back an equal state."""
        return {
            "schema": _JSON_SCHEMA,
            "alert_id": self.alert_id,
            "kind": self.kind.value,
            "state": self.state.value,
            "plan": plan_to_json(self.plan),
            "duress": self.duress,
            "tier": self.tier,
            "round": self.round,
            "notified": list(self.notified),
            "acked_by": self.acked_by,
            "acked_via": self.acked_via,
            "closed_by": self.closed_by,
            "taken_over_by": self.taken_over_by,
            "exhausted": self.exhausted,
            "sent": [[c, ch.value] for c, ch in self.sent],
            "failed": [[c, ch.value] for c, ch in self.failed],
            "version": self.version,
            "alarm": self.alarm,
            "cover": self.cover.to_json() if self.cover is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EscalationState:
        """Rebuild a state written by :meth:`to_json`; raises ValueError/KeyError on bad data."""
        if data.get("schema") != _JSON_SCHEMA:
            raise ValueError(f"unsupported escalation state schema: {data.get('schema')!r}")
        return cls(
            alert_id=str(data["alert_id"]),
            kind=AlertKind(data["kind"]),
            state=AlertState(data["state"]),
            plan=plan_from_json(data["plan"]),
            duress=bool(data["duress"]),
            tier=int(data["tier"]),
            round=int(data["round"]),
            notified=tuple(str(c) for c in data["notified"]),
            acked_by=opt_str(data["acked_by"]),
            acked_via=opt_str(data["acked_via"]),
            closed_by=opt_str(data["closed_by"]),
            taken_over_by=opt_str(data["taken_over_by"]),
            exhausted=bool(data["exhausted"]),
            sent=tuple((str(c), Channel(ch)) for c, ch in data["sent"]),
            failed=tuple((str(c), Channel(ch)) for c, ch in data["failed"]),
            version=int(data["version"]),
            alarm=opt_str(data.get("alarm")),  # absent from states written before it existed
            cover=cls.from_json(data["cover"]) if data.get("cover") else None,
        )
