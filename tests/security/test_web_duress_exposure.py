"""Finding 7 (web side): a duress must not be detectable from an unauthenticated endpoint.

Before the fix anyone reaching the dispatcher read
``vigie_alerts_active{state="duress"}`` and
``vigie_operator_alarms_total{reason="annulation sous contrainte"}`` on
``/metrics`` right after the practitioner's "cancel".
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from protocol.topics import UplinkKind
from tests.api.conftest import Served
from tests.security.web import logged_in, raise_alert, state_is
from tests.support.system import METRICS_HEADERS

pytestmark = pytest.mark.attacks

# The responder page without its token (a guessed one): the same 404 before and after.
PUBLIC = ("/healthz", "/console/config", "/console/", "/openapi.json", "/r/Zk3q9_Xb2LmN0pQrS7tUvA/etat")


async def _public_view(http: httpx.AsyncClient) -> dict[str, tuple[int, str]]:
    return {path: ((r := await http.get(path)).status_code, r.text) for path in (*PUBLIC, "/metrics")}


async def test_unauthenticated_endpoints_say_nothing_of_a_duress(served: Served) -> None:
    system = served.system
    device, alert_id = await raise_alert(system, "btn-boutonnet")
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        before = await _public_view(anonymous)
        await asyncio.to_thread(device.send, UplinkKind.CANCEL, alert_id=alert_id, pin="1357")
        await asyncio.to_thread(device.wait_downlink, "cancelled", alert_id)
        await state_is(system, alert_id, "duress")
        after = await _public_view(anonymous)
        assert after == before  # byte for byte: nothing moved where an aggressor can look
        assert after["/metrics"][0] == 401
        for status, text in after.values():
            assert "contrainte" not in text and 'state="duress"' not in text, status

    # A practitioner's session does not open /metrics either.
    async with logged_in(served.url, "dr-fabre") as practitioner:
        assert (await practitioner.get("/metrics")).status_code == 401

    # Legitimate readers still get everything: Prometheus with the token, an admin's session.
    async with httpx.AsyncClient(base_url=served.url) as prometheus:
        scraped = await prometheus.get("/metrics", headers=METRICS_HEADERS)
        assert scraped.status_code == 200
        assert 'vigie_alerts_active{state="duress"} 1.0' in scraped.text
    async with logged_in(served.url, "admin") as admin:
        assert (await admin.get("/metrics")).status_code == 200
