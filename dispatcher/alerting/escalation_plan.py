"""The escalation plan: who is alerted, in which tiers, how long to wait (built by routing).

Pure value objects and their JSON form (persisted inside the escalation
state); :mod:`dispatcher.alerting.escalation` walks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dispatcher.domain import Channel

#: Period of the re-notification of an exhausted chain (DeliverySettings.renotify_s).
DEFAULT_RENOTIFY_S = 300

__all__ = [
    "DEFAULT_RENOTIFY_S",
    "EscalationPlan",
    "PlanTier",
    "Recipient",
    "opt_str",
    "plan_from_json",
    "plan_to_json",
]


@dataclass(frozen=True, slots=True)
class Recipient:
    """One concrete contact to alert, resolved from the SSJ convention."""

    contact_id: str
    name: str
    phone: str
    channels: tuple[Channel, ...]
    unit_id: str | None = None
    unit_name: str | None = None
    priority: int = 1


@dataclass(frozen=True, slots=True)
class PlanTier:
    """Recipients alerted together, and how long to wait for one of them to acknowledge."""

    recipients: tuple[Recipient, ...]
    ack_timeout_s: int


@dataclass(frozen=True, slots=True)
class EscalationPlan:
    """Tiers alerted in order; the whole chain is run ``repeats`` more times if nobody answers.

    Once the chain is run out, the last tier is alerted again every
    ``renotify_s`` seconds until someone acknowledges (an exhausted chain is
    never the end of an open alert).
    """

    tiers: tuple[PlanTier, ...] = ()
    repeats: int = 0
    renotify_s: int = DEFAULT_RENOTIFY_S
    #: The deployment's fallback contact, re-notified with the last tier once the chain is run out.
    renotify_also: Recipient | None = None

    @property
    def is_empty(self) -> bool:
        """True when no tier has any recipient: operators must handle the alert by hand."""
        return not any(t.recipients for t in self.tiers)

    def recipient(self, contact_id: str) -> Recipient | None:
        """The first recipient with this contact id, in any tier."""
        for tier in self.tiers:
            for r in tier.recipients:
                if r.contact_id == contact_id:
                    return r
        return None


def opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def plan_to_json(plan: EscalationPlan) -> dict[str, Any]:
    return {
        "repeats": plan.repeats,
        "renotify_s": plan.renotify_s,
        "renotify_also": _recipient_to_json(plan.renotify_also) if plan.renotify_also else None,
        "tiers": [
            {
                "ack_timeout_s": t.ack_timeout_s,
                "recipients": [
                    {
                        "contact_id": r.contact_id,
                        "name": r.name,
                        "phone": r.phone,
                        "channels": [c.value for c in r.channels],
                        "unit_id": r.unit_id,
                        "unit_name": r.unit_name,
                        "priority": r.priority,
                    }
                    for r in t.recipients
                ],
            }
            for t in plan.tiers
        ],
    }


def plan_from_json(data: dict[str, Any]) -> EscalationPlan:
    return EscalationPlan(
        repeats=int(data["repeats"]),
        # States written before re-notification existed have no period: the default.
        renotify_s=int(data.get("renotify_s", DEFAULT_RENOTIFY_S)),
        renotify_also=_recipient_from_json(data["renotify_also"]) if data.get("renotify_also") else None,
        tiers=tuple(
            PlanTier(
                ack_timeout_s=int(t["ack_timeout_s"]),
                recipients=tuple(
                    Recipient(
                        contact_id=str(r["contact_id"]),
                        name=str(r["name"]),
                        phone=str(r["phone"]),
                        channels=tuple(Channel(c) for c in r["channels"]),
                        unit_id=opt_str(r["unit_id"]),
                        unit_name=opt_str(r["unit_name"]),
                        priority=int(r["priority"]),
                    )
                    for r in t["recipients"]
                ),
            )
            for t in data["tiers"]
        ),
    )


def _recipient_to_json(r: Recipient) -> dict[str, Any]:
    return {
        "contact_id": r.contact_id,
        "name": r.name,
        "phone": r.phone,
        "channels": [c.value for c in r.channels],
        "unit_id": r.unit_id,
        "unit_name": r.unit_name,
        "priority": r.priority,
    }


def _recipient_from_json(r: dict[str, Any]) -> Recipient:
    return Recipient(
        contact_id=str(r["contact_id"]),
        name=str(r["name"]),
        phone=str(r["phone"]),
        channels=tuple(Channel(c) for c in r["channels"]),
        unit_id=opt_str(r["unit_id"]),
        unit_name=opt_str(r["unit_name"]),
        priority=int(r["priority"]),
    )
