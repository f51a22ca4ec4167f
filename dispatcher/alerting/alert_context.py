"""Who raised an alert, from where, and where she is: the context an alert starts with.

Built from memory only (the directory snapshot, the last fixes, the commune
index), never from the network: it is on the alert's hot path. The context is
fixed at the alert's start and stored with it; what changes later (duress,
who acted) travels with each notification instead.
"""

from __future__ import annotations

from dispatcher.directory.location import LocationPolicy, active_visit, known_places, resolve_location
from dispatcher.directory.snapshot import DirectoryCache
from dispatcher.domain import AlertContext, AlertKind, DeviceKind, Site
from dispatcher.store.base import NewAlert
from protocol.messages import Location


def context_for(alert: NewAlert, cache: DirectoryCache, policy: LocationPolicy) -> AlertContext:
    """The new alert's context; a fix it carries becomes the device's last known one."""
    snap = cache.current
    device = snap.devices[alert.device_id]
    practitioner = snap.practitioners.get(device.practitioner_id or "")
    site = snap.sites.get(device.site_id or "")
    visits = [v for v in snap.visits if practitioner and v.practitioner_id == practitioner.id]
    # A desk button is where it is screwed, whatever visit its owner declared.
    carried = practitioner is not None and device.kind is not DeviceKind.BUTTON
    visit = (
        active_visit(visits, practitioner.id, alert.received_at, overrun_s=policy.visit_overrun_s)
        if (carried and practitioner)
        else None
    )
    fix = Location.model_validate(alert.fix) if alert.fix else None
    last_known = cache.last_fixes.get(alert.device_id)
    location = resolve_location(
        fix=fix,
        now=alert.received_at,
        visit=visit,
        site=site,
        last_known=last_known,
        known_places=known_places(sites=_sites_near(cache, site, fix or last_known), visits=visits),
        policy=policy,
        commune_at=cache.communes.insee_at,
    )
    if fix is not None:
        cache.last_fixes[alert.device_id] = fix
    if site is not None and (site.cancel_pin_hash or site.duress_pin_hash):  # shown to operators
        site = site.model_copy(update={"cancel_pin_hash": None, "duress_pin_hash": None})
    return AlertContext(
        alert_id=alert.id,
        kind=AlertKind(alert.kind),
        received_at=alert.received_at,
        practitioner=practitioner,
        site=site,
        device=device,
        location=location,
    )


def _sites_near(cache: DirectoryCache, own: Site | None, fix: Location | None) -> list[Site]:
    """Her site, and any site close to the fix: a fix is described from the nearest known address."""
    near = cache.current.site_index.near(fix.lat, fix.lon) if fix is not None else []
    return [own, *near] if own is not None else near
