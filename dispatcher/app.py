"""The HTTP side of the dispatcher, built by an app factory (no import-time globals).

Serves the Twilio webhooks, ``/metrics`` and ``/healthz``; the REST API and the
live console are mounted here too as they are added.
"""

from __future__ import annotations

from fastapi import FastAPI, Response

from dispatcher.metrics import Metrics
from dispatcher.settings import DispatcherSettings
from dispatcher.webhooks import TwilioInbox, twilio_webhooks_router


def create_app(
    *, settings: DispatcherSettings, inbox: TwilioInbox, metrics: Metrics, ready: object
) -> FastAPI:
    """Build the FastAPI application around an already-running dispatcher core."""
    app = FastAPI(title="Vigie dispatcher", version="0.1.0")
    app.include_router(
        twilio_webhooks_router(
            auth_token=settings.twilio.auth_token.get_secret_value(),
            public_base_url=settings.twilio.public_base_url,
            inbox=inbox,
        )
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        """Liveness and broker connection, for systemd / load balancers."""
        return {"ok": True, "mqtt_connected": bool(getattr(ready, "is_connected", False))}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app
