"""The curl examples of docs/sandbox.md and deploy-server.md, run with bash against a real system.

Each ``sh`` block marked ``<!-- doc-test: NAME -->`` in docs/sandbox.md is taken
from the document, its addresses replaced by the running servers' (the doc's
``SB=http://127.0.0.1:41234``, the dispatcher's ``http://127.0.0.1:8080``),
and run with ``bash -euo pipefail``; the test then checks what it printed and
what it did (an acknowledged alert, a changed person...). An example that
drifts from the API fails here, not in a newcomer's terminal.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from broker_config.runner import DevBroker, free_port
from tests.support.system import System, running_system

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DOC_SB = "http://127.0.0.1:41234"  # the address the examples use for the sandbox
DOC_DISPATCHER = "http://127.0.0.1:8080"
CHEF_DE_POSTE = "+33639980101"  # SMS + voice, first tier of the Montpellier commissariat
OFFICIER_DE_QUART = "+33465710101"  # voice only, first tier

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl missing (make system-deps)")


def doc_blocks(doc: Path) -> dict[str, str]:
    """The ``sh`` blocks of ``doc`` marked ``<!-- doc-test: NAME -->``, by name."""
    found = re.findall(
        r"<!-- doc-test: ([a-z-]+) -->\n```sh\n(.*?)```", doc.read_text(encoding="utf-8"), re.S
    )
    return dict(found)


def json_documents(text: str) -> list[Any]:
    """The JSON documents printed one after the other (curl prints no separator)."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while (at := _skip_space(text, at)) < len(text):
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)
    return docs


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


class Examples:
    """Runs the document's blocks against one running system."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.blocks = doc_blocks(DOCS / "sandbox.md")

    def script(self, name: str) -> str:
        code = self.blocks["address"] + self.blocks[name]
        return code.replace(DOC_SB, self.system.sandbox.base_url).replace(
            DOC_DISPATCHER, self.system.public_url
        )

    async def run(self, name: str) -> list[Any]:
        """Run block ``name`` (after the address block) with bash; its JSON outputs."""
        proc = await asyncio.create_subprocess_exec(
            "bash", "-euo", "pipefail", "-c", self.script(name),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, f"block {name!r} failed: {err.decode()}"
        return json_documents(out.decode())


@pytest.fixture
async def system(broker: DevBroker, tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(broker, tmp_path) as s:
        yield s


def test_every_marked_block_is_exercised() -> None:
    assert set(doc_blocks(DOCS / "sandbox.md")) == {
        "address", "sent", "reply", "press", "hold", "people", "numbers", "provider", "standalone",
    }  # fmt: skip


async def test_the_sandbox_examples_do_what_the_doc_says(system: System) -> None:
    examples = Examples(system)

    # Calls held long enough to press a key by hand.
    (config,) = await examples.run("hold")
    assert config["call_hold_ms"] == 120000 and system.sandbox.config.call_hold_ms == 120000

    device = await system.add_device("btn-doc", practitioner="dr-claire-fabre", site="cabinet-boutonnet")
    alert_id = await asyncio.to_thread(device.alert)
    await system.sandbox.wait_for(
        lambda: (
            bool(system.sent_to(CHEF_DE_POSTE, "message"))
            and any(
                c.to == OFFICIER_DE_QUART and c.status == "in-progress" for c in system.sandbox.calls.values()
            )
        ),
        within=15,
    )

    messages, to_chef, webhooks = await examples.run("sent")
    assert messages and {r["kind"] for r in messages} == {"message"}
    assert any(r["to"] == CHEF_DE_POSTE and "Repondez 1" in r["params"]["Body"] for r in messages)
    assert to_chef and {r["to"] for r in to_chef} == {CHEF_DE_POSTE}
    assert {r["kind"] for r in to_chef} >= {"message", "call"}
    assert all(r["ref"].startswith(f"{alert_id}/") for r in to_chef)
    assert any(w["kind"] == "status" for w in webhooks)

    # A bare "1" from a contact with exactly one open alert takes it.
    (reply,) = await examples.run("reply")
    assert reply["status"] == 200 and any("prise en charge" in s for s in reply["said"]), reply
    assert (await system.store.get_alert(alert_id)).state == "acknowledged"

    # The officer's call is still live (held 120 s): his key press reaches the dispatcher,
    # which tells him the alert was taken meanwhile (by the SMS above).
    (press,) = await examples.run("press")
    assert press["status"] == 200 and press["error"] is None, press
    assert any("déjà prise en charge" in s for s in press["said"]), press
    assert any(w.kind == "gather" and w.params["To"] == OFFICIER_DE_QUART for w in system.sandbox.webhooks)

    people_after_post, people = await examples.run("people")
    assert people_after_post == people
    assert people["+33465710107"]["name"] == "SAMU" and people["+33465710107"]["call_answer"] == 1.0

    unreachable, acknowledging, cleared = await examples.run("numbers")
    assert unreachable["+33639980105"]["call_status"] == "no-answer"
    assert acknowledging["+33639980101"]["ack_after_ms"] == 3000
    assert cleared == {} and system.sandbox.numbers == {}

    before, changed, reset = await examples.run("provider")
    assert set(before) >= {
        "latency_ms",
        "failure_rate",
        "callback_latency_ms",
        "call_hold_ms",
        "sms_webhook_url",
    }
    assert changed["latency_ms"] == 3000 and changed["failure_rate"] == 0.1
    assert reset == {} and system.sandbox.requests == []


async def test_the_standalone_sandbox_starts_as_documented(tmp_path: Path) -> None:
    """The ``vigie-sandbox-twilio`` block: it listens, prints its account, and took every option."""
    port = free_port()
    script = (
        doc_blocks(DOCS / "sandbox.md")["standalone"]
        .replace("--port 8790", f"--port {port}")
        .replace("var/sandbox-requests.jsonl", str(tmp_path / "requests.jsonl"))
    )
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", f"exec 2>&1; {script}", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert re.fullmatch(
            rf"twilio sandbox listening on http://127\.0\.0\.1:{port} \(account AC[0-9a-f]{{32}}\)\n", line
        )
        sb = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{sb}/_sandbox/config") as response:
                config = await response.json()
            async with http.get(f"{sb}/_sandbox/people") as response:
                people = await response.json()
        assert config["sms_webhook_url"] == "http://127.0.0.1:8080/webhooks/twilio/sms"
        assert CHEF_DE_POSTE in people  # --people sandbox/data/demo-people.toml
        assert (tmp_path / "requests.jsonl").exists()  # --log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0


async def test_the_health_check_of_deploy_server_prints_what_the_doc_shows(system: System) -> None:
    text = (DOCS / "deploy-server.md").read_text(encoding="utf-8")
    command, shown = re.findall(
        r"^\s*\$ (curl -s http://127\.0\.0\.1:8080/healthz)\n\s*(\{.*\})$", text, re.M
    )[0]
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", command.replace(DOC_DISPATCHER, system.public_url),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert out.decode().strip() == shown
