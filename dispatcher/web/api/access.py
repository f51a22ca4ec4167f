"""Who may see what: the territorial and personal scope of a user.

* admin: everything;
* operator: alerts routed to one of its conventions, and the sites, devices
  and practitioners located in their territories;
* practitioner: her own alerts, devices and visits.

An alert's territory is the convention it was routed to
(``context.convention_name``), and, for an alert routed through a fallback or
covered by no convention, every convention of its département — or every
convention, i.e. every operator on duty, when none has it
(``context.operator_scope``, decided by
:func:`dispatcher.directory.fallback.watchers_of`). A site's territory is the
convention covering its address; a device's is its site's, or, for a carried
device without a site, that of any site its practitioner's devices are bound to.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from dispatcher.directory.location import departement_of
from dispatcher.directory.routing import find_convention
from dispatcher.directory.snapshot import DirectorySnapshot
from dispatcher.domain import Address, Device, LocationSource, ResolvedLocation, Site
from dispatcher.store.base import AlertFacts, AlertQuery, AlertRecord
from dispatcher.web.auth import Role, User


class Access:
    """Scope checks for one user against one directory snapshot."""

    def __init__(self, user: User, snapshot: DirectorySnapshot) -> None:
        self.user = user
        self.snapshot = snapshot

    @property
    def is_admin(self) -> bool:
        return self.user.role is Role.ADMIN

    @cached_property
    def convention_ids(self) -> frozenset[str]:
        """Conventions this user may see (all of them for an admin)."""
        every = {c.id for c in self.snapshot.conventions}
        if self.is_admin:
            return frozenset(every)
        if self.user.role is Role.OPERATOR:
            return frozenset(every & set(self.user.conventions))
        return frozenset()

    def convention_names(self, ids: frozenset[str]) -> tuple[str, ...]:
        return tuple(c.name for c in self.snapshot.conventions if c.id in ids)

    @cached_property
    def _names_seen(self) -> frozenset[str]:
        """The names of :attr:`convention_ids`: worked out once, not for each alert of a list."""
        return frozenset(self.convention_names(self.convention_ids))

    def alert_query(self, query: AlertQuery, convention_id: str | None = None) -> AlertQuery:
        """``query`` narrowed to this user's scope (and to ``convention_id`` if given)."""
        names: tuple[str, ...] | None = None
        if convention_id is not None:
            names = self.convention_names(self.convention_ids & {convention_id})
        elif self.user.role is Role.OPERATOR:
            names = self.convention_names(self.convention_ids)
        practitioner = query.practitioner_id
        if self.user.role is Role.PRACTITIONER:
            if practitioner not in (None, self.user.practitioner_id):
                names = ()  # another practitioner's alerts: nothing
            practitioner = self.user.practitioner_id or "\x00"
        return AlertQuery(
            states=query.states,
            kinds=query.kinds,
            convention_names=names,
            practitioner_id=practitioner,
            practitioner_ids=query.practitioner_ids,
            device_id=query.device_id,
            since=query.since,
            until=query.until,
            limit=query.limit,
        )

    def sees_alert(self, record: AlertRecord) -> bool:
        if self.is_admin:
            return True
        context: dict[str, Any] = record.context or {}
        practitioner = context.get("practitioner") or {}
        # operator_scope: the conventions of the alert's territory (fallback-routed alerts too).
        scope = context.get("operator_scope") or ()
        return self._sees(context.get("convention_name"), scope, practitioner.get("id"))

    def sees_facts(self, facts: AlertFacts) -> bool:
        """:meth:`sees_alert` for the facts the statistics read instead of the record."""
        return self.is_admin or self._sees(facts.convention_name, facts.operator_scope, facts.practitioner_id)

    def _sees(self, convention_name: str | None, scope: Sequence[str], practitioner_id: str | None) -> bool:
        if self.user.role is Role.PRACTITIONER:
            return bool(self.user.practitioner_id) and practitioner_id == self.user.practitioner_id
        names = self._names_seen
        return convention_name in names or not names.isdisjoint(scope)

    def sees_scope(self, scope: Sequence[str]) -> bool:
        """An event scoped to the conventions named in ``scope`` (a home visit's alarm): their
        operators. No convention at all to name: every operator, lest nobody sees it."""
        if self.is_admin:
            return True
        if self.user.role is not Role.OPERATOR:
            return False
        return not scope or not self._names_seen.isdisjoint(scope)

    def site_convention(self, site: Site) -> str | None:
        """Id of the convention whose territory holds the site, if any."""
        if self.snapshot.sites.get(site.id) is not site:  # a site being created or edited: not memoised
            return self.address_convention(site.address)
        known = self.snapshot.site_conventions
        if site.id not in known:
            known[site.id] = self.address_convention(site.address)
        return known[site.id]

    def address_convention(
        self, address: Address, source: LocationSource = LocationSource.SITE
    ) -> str | None:
        """Id of the convention whose territory holds ``address`` (a site's, a home visit's), if any."""
        location = ResolvedLocation(
            source=source,
            point=address.point,
            address=address,
            description=address.label,
            insee=address.insee,
            departement=departement_of(address.insee) if address.insee else None,
        )
        convention = find_convention(self.snapshot.conventions, location)
        return convention.id if convention else None

    def sees_site(self, site: Site) -> bool:
        if self.is_admin:
            return True
        if self.user.role is Role.OPERATOR:
            return self.site_convention(site) in self.convention_ids
        return any(
            d.site_id == site.id and d.practitioner_id == self.user.practitioner_id
            for d in self.snapshot.devices.values()
        )

    def _device_sites(self, device: Device) -> list[Site]:
        sites = self.snapshot.sites
        if device.site_id:
            site = sites.get(device.site_id)
            return [site] if site else []
        if not device.practitioner_id:
            return []
        return [sites[s] for s in self.snapshot.practitioner_sites.get(device.practitioner_id, ())]

    def sees_device(self, device: Device) -> bool:
        if self.is_admin:
            return True
        if self.user.role is Role.PRACTITIONER:
            return device.practitioner_id is not None and device.practitioner_id == self.user.practitioner_id
        return any(self.site_convention(s) in self.convention_ids for s in self._device_sites(device))

    def sees_practitioner(self, practitioner_id: str) -> bool:
        if self.is_admin:
            return True
        if self.user.role is Role.PRACTITIONER:
            return practitioner_id == self.user.practitioner_id
        return any(self.sees_device(d) for d in self.snapshot.practitioner_devices.get(practitioner_id, ()))

    def sees_convention(self, convention_id: str) -> bool:
        return convention_id in self.convention_ids
