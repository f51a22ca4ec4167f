"""Prometheus metrics of one dispatcher, in its own registry (no import-time globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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

    def render(self) -> bytes:
        """Prometheus text exposition."""
        return generate_latest(self.registry)
