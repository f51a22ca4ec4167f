"""Dispatcher configuration, read from ``VIGIE_*`` environment variables.

Every field is documented; secrets have no default so that a production
start without them fails loudly instead of running with a placeholder.
Nested values use ``__``: ``VIGIE_TWILIO__AUTH_TOKEN``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatcher.secretcheck import require_real_optional_secret, require_real_secret
from dispatcher.store import is_postgres

# A refused setting must never be echoed: its value may be (part of) a secret.
_HIDDEN = ConfigDict(hide_input_in_errors=True)


class MqttSettings(BaseModel):
    """Connection of the dispatcher to the broker."""

    model_config = _HIDDEN

    host: str = Field(default="127.0.0.1", description="Broker host")
    port: int = Field(default=1883, description="Broker port (8883 with TLS in production)")
    username: str = Field(default="vigie-dispatcher", description="Account (= certificate CN with TLS)")
    password: SecretStr | None = Field(default=None, description="Password (dev broker only)")
    ca_file: Path | None = Field(default=None, description="CA bundle that signed the broker certificate")
    cert_file: Path | None = Field(default=None, description="Dispatcher client certificate (TLS)")
    key_file: Path | None = Field(default=None, description="Dispatcher client key (TLS)")
    client_id: str = Field(default="vigie-dispatcher-1", description="Unique per instance: keeps its session")
    share_group: str | None = Field(
        default=None,
        min_length=16,
        description="$share group all instances join. Unset (the default): a random name generated once"
        " and kept in the store, so every instance on that store joins the same group and no device login"
        " can guess it (Mosquitto 2.0 lets any client subscribe to any $share group: issue 13). Set it only"
        " to pin a secret of your own (at least 16 characters).",
    )
    keepalive_s: int = Field(default=15, description="MQTT keepalive")
    protocol: Literal["3.1.1", "5"] = Field(
        default="3.1.1",
        description="MQTT version of the dispatcher's own session (devices speak 5 whatever this says)."
        " 3.1.1 (the default) is parsed 2.3x faster by paho: a v5 PUBLISH carries a properties block"
        " paho decodes into an object for every message, and heartbeats are thousands a second"
        " (docs/performance.md). The session is persistent either way; with 3.1.1 its expiry is"
        " the broker's (Mosquitto `persistent_client_expiration`, EMQX `session_expiry_interval`),"
        " with 5 a week, sent by the dispatcher.",
    )
    control_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long the broker has to answer a dynamic-security command (quarantine, revocation)"
        " before the operator is alarmed that it may not have been applied",
    )

    _real_password = field_validator("password")(require_real_optional_secret)


class TwilioSettings(BaseModel):
    """SMS and voice provider (Twilio, or the local sandbox speaking its API)."""

    model_config = _HIDDEN

    account_sid: str = Field(description="Twilio Account SID (ACxxxxxxxx...)")
    auth_token: SecretStr = Field(description="Twilio auth token; also verifies webhook signatures")
    from_number: str = Field(description="Caller id / SMS sender in E.164")
    api_base_url: str = Field(
        default="https://api.twilio.com", description="Twilio REST base; the sandbox's URL in dev and tests"
    )
    public_base_url: str = Field(
        description="Public URL of this dispatcher as Twilio sees it, for status callbacks and webhooks"
    )
    request_timeout_s: float = Field(default=5.0, description="Timeout of every provider HTTP call")
    max_connections: int = Field(
        default=4000,
        ge=1,
        description="Provider connection pool: size it for alert rate x 3 requests x provider latency,"
        " plus retries (100 alerts/s against a 3 s provider keeps ~900 busy; at 1,000 requests queued"
        " for a connection: docs/performance.md). The dispatcher raises its open-file limit to fit.",
    )

    _real_token = field_validator("auth_token")(require_real_secret)


class IngestSettings(BaseModel):
    """Admission control of the MQTT ingest (``VIGIE_INGEST__*``), so that one device cannot delay another.

    A genuine device sends a heartbeat every 30 s and, rarely, an alert re-sent every
    10 s until 'received': far below these bounds. Refused messages are acknowledged
    and counted (``vigie_rejected_total{reason="rate_limited"|"queue_full"|"too_large"}``).
    """

    device_burst: float = Field(default=50.0, ge=1, description="Messages a device may send at once")
    device_rate_per_s: float = Field(default=5.0, gt=0, description="Then this many per second, sustained")
    device_queue: int = Field(
        default=64, ge=1, description="Messages of one device waiting to be processed (at least the burst)"
    )
    max_queued: int = Field(default=20_000, ge=1, description="Messages waiting, all devices together")
    heartbeat_linger_s: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Heartbeats wait up to this long to be processed in a batch (alerts never wait);"
        " 0 processes each at once",
    )
    rejection_log_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="Rejections are logged and stored once per device and reason per interval, then summed",
    )
    quarantine_refusals: int = Field(
        default=200,
        ge=1,
        description="A device refused more than this many times within quarantine_window_s is cut off at"
        " the broker: it sent over 250 messages in a second (40 times the sustained rate admitted, 5 times"
        " the burst). A genuine device never is: heartbeats every 30 s, live positions of an open alert,"
        " and re-sends of its unconfirmed presses (a handful, each a human press) stay within the burst",
    )
    quarantine_window_s: float = Field(default=1.0, gt=0, description="Window of quarantine_refusals")
    quarantine_s: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="How long a flooding device stays cut off (it cannot alert meanwhile: kept short)",
    )
    quarantine_check_s: float = Field(
        default=30.0, gt=0, description="How often expired quarantines are looked for (any instance)"
    )


class DeliverySettings(BaseModel):
    """Sending mechanics (``VIGIE_DELIVERY__*``): provider outages, uncertain sends, exhausted chains.

    docs/lifecycle.md states the rules these numbers tune.
    """

    retry_base_s: float = Field(
        default=0.5, gt=0, description="First wait before re-trying a request the provider never got"
    )
    retry_max_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait between two attempts while the provider is unreachable (capped at 15 s:"
        " the row's lease is renewed on each attempt)",
    )
    notice_retry_s: float = Field(
        default=3600.0,
        description="How long notices (pris en charge, fausse alerte, contrainte) are retried through an"
        " outage; alert notifications are retried while their alert is open and unacknowledged",
    )
    renotify_s: int = Field(
        default=300,
        ge=30,
        description="An exhausted escalation chain re-notifies its last tier this often until someone"
        " acknowledges (applies to alerts received from now on)",
    )
    reconcile_interval_s: float = Field(
        default=5.0, gt=0, description="How often uncertain and stuck notifications are looked up"
    )
    reconcile_settle_s: float = Field(
        default=10.0,
        ge=0,
        description="An uncertain request is looked up in the provider's records only this long after it"
        " left (the provider may still be creating it)",
    )
    stuck_after_s: float = Field(
        default=300.0,
        gt=0,
        description="A queued/sent/ringing/in-progress notification without news for this long is"
        " fetched from the provider",
    )


class GeocoderSettings(BaseModel):
    """BAN-compatible geocoder used when addresses are registered (never on the hot path)."""

    domain: str = Field(
        default="data.geopf.fr/geocodage",
        description="IGN Géoplateforme (the historical api-adresse.data.gouv.fr stopped serving in 2026)",
    )
    scheme: str = Field(default="https", description="'http' for a local test server")
    timeout_s: float = Field(default=5.0, description="Per-request timeout")


class FallbackContactSettings(BaseModel):
    """The deployment-wide fallback contact (``VIGIE_FALLBACK__*``): the last tier of trust.

    Alerted, 24/7, when no SSJ convention covers an alert's location, when the
    location is unknown, or when every unit of the convention is off duty. A
    desk that always answers (e.g. the regional police command centre, or the
    on-call security referent of the URPS). Required: no default, the
    dispatcher refuses to start without it.
    """

    name: str = Field(min_length=1, description="Who answers, as the timeline shows it")
    phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164 number, e.g. +33465710190")
    channels: list[Literal["sms", "voice"]] = Field(
        default=["sms", "voice"], min_length=1, description="Default both"
    )


class GeoApiSettings(BaseModel):
    """The French geo API (``VIGIE_GEO_API__*``), read by ``vigie load-communes --fetch`` only.

    Never on the alert path: contours are loaded ahead of time, then routing
    reads them from memory.
    """

    base_url: str = Field(
        default="https://geo.api.gouv.fr",
        description="Serves /communes?codeDepartement=34&format=geojson&geometry=contour;"
        " the project's sandbox (python -m sandbox.ban_server) in dev and tests",
    )
    timeout_s: float = Field(default=60.0, description="Per request: a département is a few MB")


class ApiSettings(BaseModel):
    """REST API, console sessions and login throttling (``VIGIE_API__*``)."""

    model_config = _HIDDEN

    cookie_secure: bool = Field(
        default=True,
        description="Secure flag of the session cookie; False only for plain-HTTP development",
    )
    session_ttl_hours: float = Field(default=12.0, description="A login lasts this long (one shift)")
    login_max_failures: int = Field(default=5, description="Failed logins per user+IP before HTTP 429")
    login_window_s: int = Field(default=300, description="Window in which failed logins are counted")
    retention_interval_s: float = Field(default=3600.0, description="Period of the RGPD purge task")
    stats_min_count: int = Field(
        default=5,
        ge=1,
        description='Statistics cells counting fewer than this are exported as "<N" (1: no suppression)',
    )
    console_recent_alerts: int = Field(
        default=200,
        ge=1,
        le=5000,
        description="Alerts of any state the console's list opens with (most recent first); every open"
        " alert in the operator's scope is listed as well",
    )
    tile_url: str = Field(
        default="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="Map tiles for the console; '' shows coordinates and address only",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (IPs or CIDRs) whose X-Forwarded-For/-Proto are believed (uvicorn's"
        " forwarded_allow_ips); empty: none — the TCP peer is the client, whatever the headers say",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (https://host[:port]) allowed to change state besides the Host the browser"
        " used; set the public URL when the reverse proxy does not pass the Host header through",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body (413 above)")
    max_auth_body_bytes: int = Field(
        default=8192, ge=512, description="Largest body under /api/auth/ (a login is a few hundred bytes)"
    )
    login_inflight_per_key: int = Field(
        default=2,
        ge=1,
        description="Password checks running at once for one username, and for one client address;"
        " more concurrent attempts get 429 without being checked",
    )
    login_hash_threads: int = Field(
        default=2, ge=1, description="Threads hashing login passwords (PIN checks have their own)"
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token Prometheus sends to /metrics (admins' sessions work too); unset:"
        " /metrics answers only admin sessions",
    )

    _real_metrics_token = field_validator("metrics_token")(require_real_optional_secret)


class VisitSettings(BaseModel):
    """Home-visit timers (``VIGIE_VISITS__*``, docs/practitioner.md)."""

    grace_s: int = Field(
        default=300, ge=1, le=3600, description="Time she has to answer 'Tout va bien ?' before the alert"
    )
    min_duration_s: int = Field(default=300, ge=1, description="Shortest expected duration accepted")
    max_duration_s: int = Field(default=12 * 3600, ge=60, description="Longest expected duration accepted")
    max_extension_s: int = Field(default=4 * 3600, ge=60, description="Longest single extension accepted")
    ok_words: list[str] = Field(
        default_factory=lambda: ["ok", "oui", "sortie"],
        description="Answers to the check that close the visit (case and accents ignored)",
    )
    duress_words: list[str] = Field(
        default_factory=list,
        description="Answers that look like an OK but raise a duress alert; her duress PIN always does",
    )
    poll_s: float = Field(default=1.0, gt=0, description="Longest sleep of the visit timer loop")


class ResponderSettings(BaseModel):
    """The responder page behind every alert SMS's link (``VIGIE_RESPONDER__*``, docs/responder.md)."""

    link_grace_s: float = Field(
        default=1800.0,
        ge=0,
        description="A responder link still opens this long after its alert closed (30 min: the patrol"
        " on its way keeps the address and door code); then 404",
    )
    poll_s: float = Field(default=3.0, gt=0, le=60, description="How often the open page refreshes")
    requests_burst: float = Field(
        default=60.0, ge=1, description="Requests under /r/ a client address may make at once (429 above)"
    )
    requests_per_s: float = Field(default=2.0, gt=0, description="Then this many per second, sustained")
    misses_burst: float = Field(
        default=10.0, ge=1, description="Unknown, expired or malformed links a client address may try at once"
    )
    misses_refill_s: float = Field(
        default=60.0, gt=0, description="Then one more every this many seconds; meanwhile every /r/ is 429"
    )


class AdminSettings(BaseSettings):
    """What administration commands need: the store and the geocoder."""

    model_config = SettingsConfigDict(
        env_prefix="VIGIE_", env_nested_delimiter="__", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = Field(
        default="sqlite:///var/vigie.db",
        description="sqlite:///relative/path, sqlite:////absolute/path, or postgresql://... DSN",
    )
    geocoder: GeocoderSettings = Field(default_factory=GeocoderSettings)
    geo_api: GeoApiSettings = Field(default_factory=GeoApiSettings)


class DispatcherSettings(AdminSettings):
    """Top-level settings of the dispatcher service."""

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    twilio: TwilioSettings
    fallback: FallbackContactSettings = Field(
        description="Deployment-wide fallback contact (VIGIE_FALLBACK__NAME, VIGIE_FALLBACK__PHONE): required"
    )
    http_host: str = Field(default="127.0.0.1", description="Where the REST API and console listen")
    http_port: int = Field(default=8080, description="REST API / console / webhooks port")
    instance_id: str = Field(default="dispatcher-1", description="Names this instance in leases and logs")
    instance_lease_s: float = Field(
        default=10.0,
        gt=0,
        description="On PostgreSQL, one running process per instance id: a second process started with"
        " the same id stops, and a restart after a crash waits at most this long for the dead run's"
        " claim to run out (dispatcher/fleet/instance_claim.py)",
    )
    role: Literal["all", "web"] = Field(
        default="all",
        description="all: takes the devices' alerts from the broker and serves the web side; web: serves"
        " the console, API and provider callbacks and sends notifications, but takes no alert (several"
        ' instances on PostgreSQL only, at least one of role all; docs/architecture.md, "Roles")',
    )
    no_alert_taker_alarm_s: float = Field(
        default=15.0,
        gt=0,
        description="Operator alarm when no instance of role all has been connected to the broker for"
        " this long (alerts wait there unseen)",
    )
    gil_switch_interval_s: float = Field(
        default=0.001,
        gt=0,
        le=0.1,
        description="How long a worker thread (an import's parsing, the store's) may hold the GIL while"
        " the event loop waits for it (Python's default: 0.005; docs/performance.md)",
    )
    location_retention_days: int = Field(default=90, description="RGPD: purge location data after this")
    inbound_sid_retention_days: int = Field(
        default=365,
        ge=1,
        description="Ids of received SMS are remembered this long against replayed webhooks (then purged)",
    )
    max_fix_age_s: int = Field(default=120, description="A GPS fix older than this is not 'fresh'")
    max_fix_accuracy_m: float = Field(default=150.0, description="A GPS fix less accurate is not trusted")
    cancel_pin_tries: int = Field(default=5, ge=1, description="PIN tries a device may make at once")
    cancel_pin_refill_s: float = Field(
        default=60.0, gt=0, description="One more PIN try per device every this many seconds (guessing limit)"
    )
    api: ApiSettings = Field(default_factory=ApiSettings)
    visits: VisitSettings = Field(default_factory=VisitSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    responder: ResponderSettings = Field(default_factory=ResponderSettings)

    @field_validator("role")
    @classmethod
    def _web_role_needs_a_shared_store(cls, role: str, info: ValidationInfo) -> str:
        # On SQLite the dispatcher is alone: a web-only one would leave every alert at the broker.
        if role == "web" and not is_postgres(str(info.data.get("database_url", ""))):
            raise ValueError(
                "une instance de rôle web ne reçoit pas les alertes : elle suppose d'autres instances"
                " (rôle all) sur la même base PostgreSQL ; avec SQLite, laissez VIGIE_ROLE=all"
            )
        return role


class RetentionSettings(AdminSettings):
    """What ``vigie purge`` needs: the store and the retention period (same variable as the service)."""

    location_retention_days: int = Field(default=90, description="RGPD: purge location data after this")
    inbound_sid_retention_days: int = Field(
        default=365,
        ge=1,
        description="Ids of received SMS are remembered this long against replayed webhooks (then purged)",
    )
