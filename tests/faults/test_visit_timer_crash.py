"""A visit timer survives ``kill -9`` of the dispatcher: the row and its due time are in the store.

Real processes: Mosquitto, the Twilio sandbox (JSONL log), the BAN sandbox and
``vigie serve``. She declares a visit through the REST API, the dispatcher is
killed before the visit ends, a new one resumes it (check SMS); killed again
during the check, the next one raises the alert when the grace period ends.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from bench.cluster import Process, python_module
from broker_config.runner import free_port, wait_for_port
from dispatcher.store import open_store
from dispatcher.store.base import NewUser
from dispatcher.web.auth import hash_password
from tests.faults.conftest import MakeCluster, provider_log
from tests.faults.harness import provider_requests, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]
FABRE_PHONE = "+33639980150"
PASSWORD = "correct horse battery staple"


def bodies(log: Path, ref_prefix: str, to: str | None = None) -> list[str]:
    return [
        str(r["params"].get("Body", "")) if isinstance(r["params"], dict) else ""
        for r in provider_requests(log)
        if str(r.get("ref") or "").startswith(ref_prefix) and r["kind"] == "message" and to in (None, r["to"])
    ]


async def add_practitioner_account(url: str) -> None:
    store = await open_store(url)
    try:
        await store.add_user(
            NewUser("dr-fabre", "Claire Fabre", hash_password(PASSWORD), "practitioner", "dr-claire-fabre")
        )
    finally:
        await store.close()


def test_a_visit_timer_survives_kill9_before_its_end_and_during_its_check(
    make_cluster: MakeCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ban_port = free_port()
    ban = Process("ban", python_module("sandbox.ban_server", "--port", str(ban_port)), tmp_path / "ban.log")
    ban.start()
    try:
        wait_for_port("127.0.0.1", ban_port, 20, ban.proc)
        monkeypatch.setenv("VIGIE_GEOCODER__DOMAIN", f"127.0.0.1:{ban_port}")
        monkeypatch.setenv("VIGIE_GEOCODER__SCHEME", "http")
        monkeypatch.setenv("VIGIE_VISITS__MIN_DURATION_S", "1")
        monkeypatch.setenv("VIGIE_VISITS__GRACE_S", "12")
        cluster = make_cluster(devices=1)
        asyncio.run(add_practitioner_account(cluster.store_url))
        log = provider_log(cluster)

        with httpx.Client(base_url=cluster.public_url, timeout=10) as http:
            token = http.post("/api/auth/token", data={"username": "dr-fabre", "password": PASSWORD})
            assert token.status_code == 200, token.text
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            body = {
                "label": "8 Rue de la Croix de Lavit, 34090 Montpellier",
                "floor": "3e étage gauche",
                "access_code": "4712B",
                "duration_s": 3,
            }
            declared = http.post("/api/me/visits", json=body, headers=headers)
            assert declared.status_code == 201, declared.text
        visit_id = declared.json()["id"]

        # Killed before the visit's end: nobody holds the timer in memory any more.
        assert cluster.dispatcher is not None
        cluster.dispatcher.stop(signal.SIGKILL)
        assert bodies(log, visit_id) == []
        cluster.start_dispatcher()
        assert wait_until(lambda: bodies(log, f"{visit_id}-check", FABRE_PHONE) != [], 30), "no check SMS"
        assert "tout va bien" in bodies(log, f"{visit_id}-check")[0]

        # Killed again during the check: the grace period's deadline is a row too.
        cluster.restart_dispatcher(signal.SIGKILL)
        assert wait_until(lambda: bodies(log, f"{visit_id}-alerte") != [], 40), "no alert after the grace"
        alert = bodies(log, f"{visit_id}-alerte")
        assert all("visite non clotur" in b and "4712B" in b and "3e étage gauche" in b for b in alert), alert
        assert len(bodies(log, f"{visit_id}-check")) == 1, "the check was sent once"
    finally:
        ban.stop()
