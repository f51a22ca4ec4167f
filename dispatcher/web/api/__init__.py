"""The REST API: one router per resource, mounted by :func:`dispatcher.web.app.create_app`."""

from __future__ import annotations

from fastapi import APIRouter


def api_routers() -> list[APIRouter]:
    """Every router of the REST API (imported here, not at package import, to keep it light)."""
    from dispatcher.web.api import (
        alerts,
        audit,
        auth,
        conventions,
        devices,
        escalations,
        operator_events,
        overview,
        practitioners,
        sites,
        stats,
        users,
        visits,
    )

    return [
        auth.router,
        users.router,
        practitioners.router,
        sites.router,
        devices.router,
        operator_events.router,
        visits.router,
        conventions.router,
        alerts.router,
        escalations.router,
        overview.router,
        stats.router,
        audit.router,
    ]
