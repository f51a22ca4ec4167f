"""The routing chain that cannot come up empty: every alert reaches a human on duty.

Pure, like :mod:`dispatcher.alerting.escalation`: the conventions, the resolved
location, ``now`` and the deployment's fallback contact in, a
:class:`RoutingDecision` out. No I/O, no clock.

The chain, in order of trust (docs/lifecycle.md, "Routing"):

1. the convention covering the location, its units competent there (unit
   polygons, then the commune's unit by zone) and its escalation tiers;
2. the convention's departmental fallback units (``fallback_units``, e.g. the
   CIC and the CORG, alerted together) when the zone cannot be determined, or
   when contact hours leave nobody in the convention's tiers;
3. the deployment-wide fallback contact (a required setting, 24/7 by
   definition) when no convention covers the location, the location is
   unknown, or nobody of the convention is on duty.

Invariants (tests/dispatcher/test_fallback.py checks them as properties over
generated directories, locations and times):

* the plan is never empty, and its first tier holds at least one recipient;
* every recipient of every tier is on duty at ``now`` (Europe/Paris contact
  hours), or is the deployment contact: contact hours that empty a tier fall
  through to the next priority or tier, never to silence;
* a decision that used a fallback says why (``reason``, in French, for the
  messages and the operators) and raises an operator alarm.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from dispatcher.alerting.escalation import EscalationPlan, PlanTier, Recipient
from dispatcher.directory.routing import (
    build_convention_plan,
    fallback_units,
    find_convention,
    matching_units,
    on_duty_recipients,
    where,
)
from dispatcher.domain import Channel, Convention, LocationSource, ResolvedLocation, ResponderUnit

__all__ = [
    "DEPLOYMENT_CONTACT_ID",
    "DEPLOYMENT_TIMEOUT_S",
    "Fallback",
    "RoutingDecision",
    "deployment_recipient",
    "position_words",
    "route",
    "watchers_of",
]

#: Contact id of the deployment-wide fallback contact in plans and timelines.
DEPLOYMENT_CONTACT_ID = "vigie-fallback"
#: How long the deployment contact has to acknowledge before the chain repeats.
DEPLOYMENT_TIMEOUT_S = 120


class Fallback(StrEnum):
    """Which fallback routed the alert (None in a decision: the competent unit did)."""

    DEPARTEMENTAL = "departemental"  # the convention's fallback units (CIC, CORG)
    DEPLOYMENT = "deployment"  # the deployment-wide fallback contact


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """The outcome of routing one alert, with human-readable notes for the console.

    ``plan`` is never empty. ``fallback`` and ``reason`` are set when the alert
    did not go to the competent unit: ``reason`` is the French "why" that the
    messages and the operator alarm carry ("zone non déterminée - position GPS ...").
    """

    convention: Convention | None
    units: tuple[ResponderUnit, ...]
    plan: EscalationPlan
    notes: tuple[str, ...]
    fallback: Fallback | None = None
    reason: str | None = None
    watchers: tuple[str, ...] = ()


def watchers_of(
    conventions: Sequence[Convention], decision: RoutingDecision, location: ResolvedLocation
) -> tuple[str, ...]:
    """Names of the conventions whose operators see the alert.

    Routed to the competent unit: its convention. Through a fallback: also every
    convention of the location's département; when none has it (or the
    département is unknown), every convention, i.e. every operator on duty.
    """
    own = (decision.convention.name,) if decision.convention is not None else ()
    if decision.fallback is None:
        return own
    local = tuple(c.name for c in conventions if c.departement == location.departement)
    every = tuple(c.name for c in conventions)
    return tuple(dict.fromkeys((*own, *(local or every))))


def deployment_recipient(name: str, phone: str, channels: Iterable[str]) -> Recipient:
    """The deployment-wide fallback contact as a plan recipient (24/7: no hours)."""
    return Recipient(
        contact_id=DEPLOYMENT_CONTACT_ID,
        name=name,
        phone=phone,
        channels=tuple(dict.fromkeys(Channel(c) for c in channels)),
        unit_name="Contact de secours Vigie",
    )


def position_words(location: ResolvedLocation) -> str:
    """Where the alert is, in a fallback reason: 'position GPS 43.61000, 3.87000 (commune 34172)'."""
    commune = f" (commune {location.insee})" if location.insee else ""
    if location.point is not None and location.source in (LocationSource.GPS, LocationSource.LAST_KNOWN):
        words = "dernière position connue" if location.stale else "position GPS"
        return f"{words} {location.point.lat:.5f}, {location.point.lon:.5f}{commune}"
    if location.source is LocationSource.UNKNOWN:
        return "position inconnue"
    if location.insee or location.departement:
        return f"{location.source.value.replace('_', ' ')}, {where(location)}"
    return "adresse sans commune connue"


def route(
    conventions: Iterable[Convention], location: ResolvedLocation, now: datetime, deployment: Recipient
) -> RoutingDecision:
    """Convention, units and a never-empty plan for an alert at ``location`` at ``now``,
    with the conventions whose operators must see it (:func:`watchers_of`)."""
    conventions = tuple(conventions)
    decision = _route(conventions, location, now, deployment)
    return replace(decision, watchers=watchers_of(conventions, decision, location))


def _route(
    conventions: Sequence[Convention], location: ResolvedLocation, now: datetime, deployment: Recipient
) -> RoutingDecision:
    convention = find_convention(conventions, location)
    if convention is None:
        reason = f"aucune convention SSJ ne couvre cette position — {position_words(location)}"
        if location.source is LocationSource.UNKNOWN:
            reason = "position inconnue (ni GPS, ni visite, ni site) : aucune convention déterminable"
        return _deployment_only(deployment, reason, [])
    competent = matching_units(convention, location)
    if competent:
        plan, notes = build_convention_plan(convention, now, competent)
        if not plan.is_empty:
            return RoutingDecision(convention, tuple(competent), plan, tuple(notes))
        why = f"aucun contact en service dans l'unité compétente — {position_words(location)}"
    else:
        why = f"zone non déterminée — {position_words(location)}"
        notes = [f"Aucune unité compétente ({where(location)}) : unités départementales de secours alertées."]
    return _departemental(convention, now, deployment, why, notes)


def _departemental(
    convention: Convention, now: datetime, deployment: Recipient, reason: str, notes: list[str]
) -> RoutingDecision:
    """Tier 1: the convention's fallback units together; then its tiers, the fallback units
    standing for the competent unit; the deployment contact when nobody of them is on duty."""
    units = fallback_units(convention)
    first = on_duty_recipients(units, now)
    later, tier_notes = build_convention_plan(convention, now, units)
    tiers = [PlanTier(first, convention.tiers[0].ack_timeout_s)] if first else []
    for tier in later.tiers:
        if not tiers or tier.recipients != tiers[-1].recipients:
            tiers.append(tier)
    if not tiers:
        reason = f"aucun contact de la convention {convention.id} en service ; {reason}"
        return _deployment_only(deployment, reason, notes + tier_notes, convention)
    plan = EscalationPlan(tiers=tuple(tiers), repeats=convention.repeats)
    notes = [*notes, *tier_notes]
    return RoutingDecision(convention, tuple(units), plan, tuple(notes), Fallback.DEPARTEMENTAL, reason)


def _deployment_only(
    deployment: Recipient, reason: str, notes: list[str], convention: Convention | None = None
) -> RoutingDecision:
    plan = EscalationPlan(tiers=(PlanTier((deployment,), DEPLOYMENT_TIMEOUT_S),), repeats=1)
    notes = [*notes, f"Contact de secours du déploiement alerté : {reason}."]
    return RoutingDecision(convention, (), plan, tuple(notes), Fallback.DEPLOYMENT, reason)
