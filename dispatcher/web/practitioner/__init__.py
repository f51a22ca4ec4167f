"""The practitioner's phone: her page (``/moi/``) and the ``/api/me/...`` routes behind it.

One router per resource (visits, devices, alerts and reports), sharing the
console's login, session cookie and audit log; docs/practitioner.md.
"""

from __future__ import annotations

from fastapi import APIRouter


def practitioner_routers() -> list[APIRouter]:
    """Every router of the practitioner's API, plus the operators' view of open visits."""
    from dispatcher.web.practitioner.alerts import router as alerts
    from dispatcher.web.practitioner.devices import router as devices
    from dispatcher.web.practitioner.visits import operators_router
    from dispatcher.web.practitioner.visits import router as visits

    return [visits, operators_router, devices, alerts]
