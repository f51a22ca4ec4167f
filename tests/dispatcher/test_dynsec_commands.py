"""The dynamic-security commands and the reading of their answers (pure core, fleet/dynsec_commands.py).

What the broker really does with them is tested against Mosquitto in tests/security/test_mqtt_revoke.py
and tests/security/test_mqtt_flood.py; here, the invariants that need no broker.
"""

from __future__ import annotations

import json

from dispatcher.fleet.dynsec_commands import (
    answer_errors,
    cut_commands,
    release_commands,
    request_payload,
    responses_by_correlation,
    revoke_commands,
    tagged,
)


def names(commands: list[dict[str, object]]) -> list[object]:
    return [c["command"] for c in commands]


def test_a_revoked_device_is_never_enabled() -> None:
    every = [cut_commands("b"), release_commands("b", revoked=True), revoke_commands("b")]
    assert all("enableClient" not in names(batch) for batch in every)
    assert names(release_commands("b", revoked=False)) == ["removeClientRole", "enableClient"]
    # A device's revocation registers it if needed; an infrastructure account is never created.
    assert names(revoke_commands("btn-1"))[0] == "createClient"
    assert "createClient" not in names(revoke_commands("vigie-bench-1"))


def test_each_role_is_removed_before_it_is_added() -> None:
    # Mosquitto 2.0.11 answers "Internal error" to an addClientRole the client already has.
    for batch in (cut_commands("b"), revoke_commands("b")):
        n = names(batch)
        assert n.index("removeClientRole") == n.index("addClientRole") - 1


def test_only_a_repeated_create_is_tolerated_and_a_missing_answer_is_an_error() -> None:
    commands = revoke_commands("btn-1")
    answers = [{"command": c["command"]} for c in commands]
    answers[0]["error"] = "Client already exists"
    answers[1]["error"] = "Role already exists"
    assert answer_errors(commands, answers) == []
    answers[-1]["error"] = "Client not found"
    assert answer_errors(commands, answers) == ["disableClient : Client not found"]
    assert answer_errors(commands, answers[:-1]) == ["disableClient : sans réponse"]


def test_answers_are_grouped_by_the_batch_they_answer() -> None:
    batch = tagged(cut_commands("b"), "vigie-x-1")
    assert {c["correlationData"] for c in json.loads(request_payload(batch))["commands"]} == {"vigie-x-1"}
    payload = json.dumps(
        {
            "responses": [
                {"command": "createRole", "correlationData": "vigie-x-1"},
                {"command": "disableClient", "correlationData": "vigie-y-7", "error": "Client not found"},
                {"command": "Unknown command", "error": "Payload not valid JSON"},
            ]
        }
    ).encode()
    grouped = responses_by_correlation(payload)
    assert list(grouped) == ["vigie-x-1", "vigie-y-7"]
    assert responses_by_correlation(b"not json") == responses_by_correlation(b"[1]") == {}
