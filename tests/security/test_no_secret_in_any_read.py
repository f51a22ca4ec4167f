"""No read of the API gives out a secret, whoever asks: every GET route of the published schema.

A 4-digit PIN is found from its argon2 hash in minutes, a device's HMAC key forges its
alerts and cancels, a password hash is attacked offline: none of them may leave the
dispatcher. Each GET route is read anonymously and as each role, its path filled with
real ids (an alert, a device, the MMG whose staff PINs are set, an account), and no
answer may hold a hash, a key or a field named after one. Routes added later are
checked without editing this test.
"""

from __future__ import annotations

import base64
import re

import httpx
import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.attacks

ROLES = ("admin", "op-herault", "op-gard", "dr-fabre")
SECRET_WORDS = re.compile(r"argon2|pin_hash|password_hash|hmac_key|mqtt_password", re.IGNORECASE)


def filled(path: str, ids: dict[str, str]) -> str:
    """``path`` with each ``{name}`` replaced by a real id (or one that exists nowhere)."""
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m[1], "inconnu"), path)


async def test_no_get_route_gives_out_a_hash_or_a_key(api: Api) -> None:
    device, alert_id = await api.alert_from("btn-mmg", "dr-claire-fabre", "mmg-saint-gely")
    key = device.key
    key_forms = {key.hex(), base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode()}
    admin = await api.as_user("admin")
    users = {u["username"]: u["id"] for u in (await admin.get("/api/users")).json()}
    ids = {
        "alert_id": alert_id, "device_id": "btn-mmg", "practitioner_id": "dr-claire-fabre",
        "site_id": "mmg-saint-gely", "convention_id": "ssj-34", "user_id": str(users["op-herault"]),
        "event_id": "1",
    }  # fmt: skip
    schema = (await admin.get("/openapi.json")).json()
    paths = [filled(p, ids) for p, ops in schema["paths"].items() if "get" in ops]
    assert {"/api/sites", f"/api/alerts/{alert_id}", "/api/sites/mmg-saint-gely"} <= set(paths)

    readers: dict[str, httpx.AsyncClient] = {role: await api.as_user(role) for role in ROLES}
    readers["anonyme"] = api.anonymous()
    statuses: set[int] = set()
    for who, client in readers.items():
        for path in paths:
            answer = await client.get(path)
            statuses.add(answer.status_code)
            assert not SECRET_WORDS.search(answer.text), (who, path, SECRET_WORDS.search(answer.text))
            assert not any(k in answer.text for k in key_forms), (who, path, "a device's HMAC key")
    assert {200, 401, 403} <= statuses, "read, refused unsigned, refused by role: each way was tried"
