"""Role and scope changes through the API the user screen uses (in-process app, real system)."""

from __future__ import annotations

from dispatcher.store.base import NewUser
from tests.api.conftest import Api, api

__all__ = ["api"]


async def _id(harness: Api, username: str) -> int:
    return next(u.id for u in await harness.system.store.list_users() if u.username == username)


async def test_a_role_change_needs_its_scope_and_ends_the_sessions(api: Api) -> None:
    admin = await api.as_user("admin")
    operator = await api.as_user("op-herault")
    assert (await operator.get("/api/alerts")).status_code == 200
    op_id = await _id(api, "op-herault")

    refused = await admin.patch(f"/api/users/{op_id}", json={"role": "practitioner"})
    assert refused.status_code == 422 and "praticien" in refused.json()["detail"]
    assert (await api.system.store.get_user(op_id)).role == "operator"

    moved = await admin.patch(
        f"/api/users/{op_id}",
        json={"role": "practitioner", "practitioner_id": "dr-claire-fabre", "conventions": []},
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["role"], moved.json()["practitioner_id"]) == ("practitioner", "dr-claire-fabre")
    assert (await operator.get("/api/alerts")).status_code == 401, "the old role's session is over"


async def test_an_account_without_its_scope_can_still_be_disabled(api: Api) -> None:
    record = await api.system.store.add_user(NewUser("op-ancien", "Ancien compte", "x", "operator"))
    admin = await api.as_user("admin")
    answer = await admin.patch(f"/api/users/{record.id}", json={"disabled": True})
    assert answer.status_code == 200, answer.text
    assert (await api.system.store.get_user(record.id)).disabled
