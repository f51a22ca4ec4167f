"""The HTTP side of the dispatcher, built by an app factory (no import-time globals).

Serves the Twilio webhooks, ``/metrics`` and ``/healthz``; given the running
dispatcher's parts (``dispatcher=``), also the REST API under ``/api`` and the
live operator console under ``/console/`` (see docs/console.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response, status
from fastapi.responses import JSONResponse

from dispatcher.alerting.webhooks import TwilioInbox, TwilioWebhooks
from dispatcher.metrics import Metrics, metrics_allowed
from dispatcher.settings import DispatcherSettings
from dispatcher.store.base import AlreadyExists, Conflict, NotFound, StoreUnavailable
from dispatcher.web.apidocs import mount_docs
from dispatcher.web.bodylimit import BodyLimit
from dispatcher.web.csrf import OriginCheck

if TYPE_CHECKING:
    from dispatcher.directory.geocoding import AddressGeocoder
    from dispatcher.web.api.deps import DispatcherParts

_STORE_ERRORS: dict[type[Exception], tuple[int, str]] = {
    NotFound: (status.HTTP_404_NOT_FOUND, "introuvable"),
    AlreadyExists: (status.HTTP_409_CONFLICT, "existe déjà"),
    Conflict: (status.HTTP_409_CONFLICT, "modifié entre-temps, réessayez"),
    StoreUnavailable: (status.HTTP_503_SERVICE_UNAVAILABLE, "base de données indisponible"),
}


def create_app(
    *,
    settings: DispatcherSettings,
    inbox: TwilioInbox,
    metrics: Metrics,
    ready: object,
    dispatcher: DispatcherParts | None = None,
    geocoder: AddressGeocoder | None = None,
) -> FastAPI:
    """Build the FastAPI application around an already-running dispatcher core.

    Without ``dispatcher`` only the webhooks, /metrics and /healthz are served.
    """
    app = FastAPI(
        title="Vigie dispatcher",
        version="0.1.0",
        description="Alertes discrètes des soignants : API REST, console opérateur, webhooks Twilio.",
        docs_url=None,  # served from vendored assets by mount_docs, never from a CDN
        redoc_url=None,
        # FastAPI's native OpenTelemetry is unused here (no provider is configured), but asking
        # whether it is enabled costs every request a look-up of the global providers and of
        # environment variables: 11 µs against 0.3 µs (timeit), 3 % of py-spy's samples of the
        # dispatcher at 100 alerts/s (600 signed status callbacks/s).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    mount_docs(app)
    app.add_middleware(
        TwilioWebhooks,
        auth_token=settings.twilio.auth_token.get_secret_value(),
        public_base_url=settings.twilio.public_base_url,
        inbox=inbox,
        visit_replies=dispatcher.visits if dispatcher is not None else None,
    )
    _guard(app, settings, metrics)

    @app.get("/healthz")
    async def healthz(response: Response) -> dict[str, object]:
        """Liveness (503 once a background loop such as the ingest died) and broker connection."""
        dead_tasks = getattr(dispatcher, "dead_tasks", None)  # a running Dispatcher has it
        dead: list[str] = dead_tasks() if callable(dead_tasks) else []
        if dead:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        mqtt_connected = bool(getattr(ready, "is_connected", False))
        return {"ok": not dead, "dead_tasks": dead, "mqtt_connected": mqtt_connected}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        """Prometheus exposition, for the metrics token or an admin session only (docs/console.md)."""
        if not await metrics_allowed(request, settings.api.metrics_token):
            return JSONResponse(
                {"detail": "authentification requise"},
                status_code=status.HTTP_401_UNAUTHORIZED,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    if dispatcher is not None:
        _mount_api(app, dispatcher, geocoder, metrics)
    return app


def _guard(app: FastAPI, settings: DispatcherSettings, metrics: Metrics) -> None:
    """Checks in front of everything (added last = outermost): cross-site requests, body sizes, 422s."""
    from fastapi.exceptions import RequestValidationError

    from dispatcher.web.api.errors import validation_handler

    def refused(reason: str) -> None:
        metrics.http_refused.labels(reason).inc()

    api = settings.api
    app.add_middleware(
        OriginCheck, allowed_origins=api.allowed_origins, exempt_prefixes=("/webhooks/",), on_refused=refused
    )
    app.add_middleware(
        BodyLimit,
        max_bytes=api.max_body_bytes,
        prefix_limits=(("/api/auth/", api.max_auth_body_bytes),),
        on_refused=refused,
    )
    app.add_exception_handler(RequestValidationError, validation_handler(refused))


def _mount_api(
    app: FastAPI, dispatcher: DispatcherParts, geocoder: AddressGeocoder | None, metrics: Metrics
) -> None:
    from dispatcher.web.admin.page import mount_admin_page
    from dispatcher.web.api import api_routers
    from dispatcher.web.api.deps import ApiContext
    from dispatcher.web.common import mount_common_static
    from dispatcher.web.console.routes import mount_console
    from dispatcher.web.practitioner import practitioner_routers
    from dispatcher.web.practitioner.page import mount_practitioner_page
    from dispatcher.web.responder import mount_responder

    ctx = ApiContext.of(dispatcher, geocoder)
    app.state.api = ctx
    for router in api_routers() + practitioner_routers():
        app.include_router(router)
    mount_common_static(app)
    mount_console(app, ctx)
    mount_practitioner_page(app)
    mount_admin_page(app, ctx)
    mount_responder(app, ctx, metrics)

    async def store_error(_request: Request, exc: Exception) -> JSONResponse:
        code, text = next(v for k, v in _STORE_ERRORS.items() if isinstance(exc, k))
        return JSONResponse({"detail": text}, status_code=code)

    for exc_type in _STORE_ERRORS:
        app.add_exception_handler(exc_type, store_error)
