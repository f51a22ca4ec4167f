"""Prometheus metrics of one dispatcher, in its own registry (no import-time globals).

They are served only to the metrics token or an admin session: an aggressor
who could read them would see a duress (an alert that stays open and keeps
notifying after a "cancel", duress notices, an operator alarm). No choice of
labels makes a public exposition duress-neutral, since a normal cancel closes
the alert and a duress keeps it escalating; so /metrics is not public.
"""

from __future__ import annotations

import hmac

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import SecretStr
from starlette.requests import Request

from dispatcher.web.auth import SESSION_COOKIE

_STAGE_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
)


class Metrics:
    """Counters and histograms the benchmark and operators read from /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ingested = Counter("vigie_ingested_total", "Uplinks accepted, by type", ["type"], registry=r)
        self.rejected = Counter("vigie_rejected_total", "Uplinks refused, by reason", ["reason"], registry=r)
        self.duplicates = Counter("vigie_duplicates_total", "Re-sent alerts already stored", registry=r)
        self.stage_seconds = Histogram(
            "vigie_stage_seconds",
            "Time from MQTT receipt to each stage",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.provider_errors = Counter(
            "vigie_provider_errors_total", "SMS/voice provider failures", ["channel", "outcome"], registry=r
        )
        self.notifications = Counter(
            "vigie_notifications_total",
            "Notifications sent, by channel and purpose",
            ["channel", "purpose"],
            registry=r,
        )
        self.alerts_by_state = Gauge(
            "vigie_alerts_active", "Alerts not yet closed, by state", ["state"], registry=r
        )
        self.store_failures = Counter("vigie_store_failures_total", "Store writes that failed", registry=r)
        self.devices_offline = Gauge("vigie_devices_offline", "Devices flagged offline", registry=r)
        self.devices_low_battery = Gauge(
            "vigie_devices_low_battery", "Devices flagged low battery", registry=r
        )
        self.cancels_refused = Counter(
            "vigie_cancels_refused_total",
            "Cancels refused: wrong_pin, no_pin, rate_limited (never a duress)",
            ["reason"],
            registry=r,
        )
        self.operator_alarms = Counter(
            "vigie_operator_alarms_total", "Operator alarms raised", ["reason"], registry=r
        )
        self.quarantines = Counter(
            "vigie_quarantines_total",
            "Flooding devices cut off at the broker (started) and let back in (ended)",
            ["event"],
            registry=r,
        )
        self.broker_command_failures = Counter(
            "vigie_broker_command_failures_total",
            "Dynamic-security batches (cut, release, revoke) the broker refused or did not answer in time",
            ["action", "reason"],
            registry=r,
        )

        self.health_pass_seconds = Histogram(
            "vigie_health_pass_seconds",
            "Device health passes: merging this instance's observations, reading the others' (leader),"
            " deciding the flags (leader), and the whole pass",
            ["stage"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.alert_takers = Gauge(
            "vigie_alert_taking_instances",
            "Instances taking the devices' alerts (role all, connected to the broker), as this"
            " instance last read them",
            registry=r,
        )
        self.event_relay = Counter(
            "vigie_event_relay_total",
            "Console events relayed between instances (PostgreSQL): sent, received, refused payloads,"
            " connections lost",
            ["outcome"],
            registry=r,
        )
        self.http_refused = Counter(
            "vigie_http_refused_total",
            "HTTP requests refused before reaching the API (body too large, bad JSON, cross-site...)",
            ["reason"],
            registry=r,
        )

    def render(self) -> bytes:
        """Prometheus text exposition."""
        return generate_latest(self.registry)


async def metrics_allowed(request: Request, token: SecretStr | None) -> bool:
    """The metrics token as a bearer, or an admin's session (cookie or bearer) when the API is mounted."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    bearer = presented.strip() if scheme.lower() == "bearer" else ""
    expected = token.get_secret_value().encode() if token is not None else b""
    if expected and bearer and hmac.compare_digest(bearer.encode(), expected):
        return True
    api = getattr(request.app.state, "api", None)
    session = bearer or request.cookies.get(SESSION_COOKIE, "")
    if api is None or not session:
        return False
    user = await api.auth.user_for(session)
    return user is not None and user.role == "admin"
