"""A visit timer survives ``kill -9`` of the dispatcher: the row and its due time are in the store.

Real processes: Mosquitto, the Twilio sandbox (JSONL log), the BAN sandbox and
``vigie serve``. She declares a visit through the REST API, the dispatcher is
killed before the visit ends, a new one resumes it (check SMS); killed again
during the check, the next one raises the alert when the grace period ends.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bench.cluster import Cluster, Process, python_module, read_db
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


@contextmanager
def visit_cluster(
    make_cluster: MakeCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, grace_s: int
) -> Iterator[Cluster]:
    """A cluster whose visits may last a second, with the BAN sandbox to geocode them."""
    ban_port = free_port()
    ban = Process("ban", python_module("sandbox.ban_server", "--port", str(ban_port)), tmp_path / "ban.log")
    ban.start()
    try:
        wait_for_port("127.0.0.1", ban_port, 20, ban.proc)
        monkeypatch.setenv("VIGIE_GEOCODER__DOMAIN", f"127.0.0.1:{ban_port}")
        monkeypatch.setenv("VIGIE_GEOCODER__SCHEME", "http")
        monkeypatch.setenv("VIGIE_VISITS__MIN_DURATION_S", "1")
        monkeypatch.setenv("VIGIE_VISITS__GRACE_S", str(grace_s))
        cluster = make_cluster(devices=1)
        asyncio.run(add_practitioner_account(cluster.store_url))
        yield cluster
    finally:
        ban.stop()


def declare_visit(cluster: Cluster, duration_s: int = 3) -> str:
    """Dr Fabre declares a visit through the REST API, as her page does; its id."""
    with httpx.Client(base_url=cluster.public_url, timeout=10) as http:
        token = http.post("/api/auth/token", data={"username": "dr-fabre", "password": PASSWORD})
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        body = {
            "label": "8 Rue de la Croix de Lavit, 34090 Montpellier",
            "floor": "3e étage gauche",
            "access_code": "4712B",
            "duration_s": duration_s,
        }
        declared = http.post("/api/me/visits", json=body, headers=headers)
        assert declared.status_code == 201, declared.text
    return str(declared.json()["id"])


def test_a_visit_timer_survives_kill9_before_its_end_and_during_its_check(
    make_cluster: MakeCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with visit_cluster(make_cluster, monkeypatch, tmp_path, grace_s=12) as cluster:
        log = provider_log(cluster)
        visit_id = declare_visit(cluster)

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


def test_a_check_sms_the_provider_refused_is_sent_by_the_next_start_after_a_kill9(
    make_cluster: MakeCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The check SMS is a row of the outbox, written with the timer's step: a dispatcher
    killed while it waits for the provider to come back does not take it along."""
    with visit_cluster(make_cluster, monkeypatch, tmp_path, grace_s=90) as cluster:
        log = provider_log(cluster)
        assert cluster.dispatcher is not None and cluster.sandbox is not None
        dispatcher_log = cluster.dispatcher.log_path
        visit_id = declare_visit(cluster)
        cluster.sandbox.stop()  # the provider is down when the check is due
        retrying = "SMS de vérification : fournisseur injoignable (tentative 1), nouvel essai"
        assert wait_until(lambda: retrying in dispatcher_log.read_text(), 30), "the check was never tried"

        cluster.dispatcher.stop(signal.SIGKILL)  # in its backoff: the text lived only in memory before
        cluster.start_sandbox()
        assert bodies(log, f"{visit_id}-check") == []
        cluster.start_dispatcher()
        assert wait_until(lambda: bodies(log, f"{visit_id}-check", FABRE_PHONE) != [], 30), "check lost"
        assert "tout va bien" in bodies(log, f"{visit_id}-check")[0]
        assert "SMS de vérification : repris après un arrêt" in dispatcher_log.read_text()
        assert wait_until(lambda: read_db(cluster.db, "SELECT key FROM side_texts") == [], 10), (
            "left in the outbox"
        )
        assert len(bodies(log, f"{visit_id}-check")) == 1, "sent once"
