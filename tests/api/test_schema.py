"""schemathesis against the published OpenAPI schema, as an authenticated operator: no 500s."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import httpx

from tests.api.conftest import PASSWORD, Served


async def test_no_server_errors_for_generated_requests(served: Served, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        schema = (await client.get("/openapi.json")).json()
        token = (
            await client.post("/api/auth/token", data={"username": "op-herault", "password": PASSWORD})
        ).json()
    assert {"/api/alerts", "/api/alerts/{alert_id}", "/api/visits", "/api/stats"} <= set(schema["paths"])
    st = Path(sys.executable).with_name("st")
    process = await asyncio.create_subprocess_exec(
        str(st), "run", f"{served.url}/openapi.json",
        "--checks", "not_a_server_error",
        "--max-examples", "6",
        "--generation-deterministic",
        "--request-timeout", "10",
        "--exclude-path", "/api/auth/logout",  # would end the session being used
        "--header", f"Authorization: Bearer {token['access_token']}",
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # schemathesis keeps its example database in the working directory
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 90)
    text = output.decode()
    assert process.returncode == 0, text[-4000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", text)
    assert summary is not None and int(summary[1]) > 100 and summary[1] == summary[2], text[-2000:]
