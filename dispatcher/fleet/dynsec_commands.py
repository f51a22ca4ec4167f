"""The dynamic-security commands Vigie sends to Mosquitto, and how their answers are read (pure core).

One source for every command that changes a device's standing at the broker:
the dispatcher's quarantine (dispatcher/fleet/quarantine.py) and revocation
(dispatcher/web/api/devices.py), both through dispatcher/fleet/broker_control.py over the
dispatcher's own session, and ``vigie provision`` through the loopback admin
account (broker_config/dynsec.py).

Commands in: the builders below. Answers in: the payloads Mosquitto publishes on
:data:`RESPONSE_TOPIC` (``{"responses": [{"command": ..., "error": ...,
"correlationData": ...}]}``, one per command, in order). Out: the errors that
matter (:func:`answer_errors`).

Invariants:

1. Every builder is idempotent at the broker: running its commands twice leaves
   the same state, and the only errors a repeat can draw are the tolerated
   ``already exists`` of a create (:data:`TOLERATED`). (Mosquitto 2.0.11 answers
   "Internal error" to an ``addClientRole`` the client already has, so each one is
   preceded by the matching ``removeClientRole``, which never fails on a role
   the client lacks; both run in one message, which the broker applies at once.)
2. A revoked device is never enabled: :func:`release_commands` with
   ``revoked=True`` holds no ``enableClient``, and no other builder enables.
3. A batch succeeds only if every command of it was answered without an
   untolerated error: a missing answer is an error too.

No I/O, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
RESTRICTED_GROUP = "vigie-restricted"
MONITOR_USER = "vigie-monitor"
MONITOR_CLIENT_ID = "vigie-monitor"
INFRA_PREFIX = "vigie-"
QUARANTINE_ROLE = "vigie-quarantine"
REVOKED_ROLE = "vigie-revoked"
# Above any role of the restricted group: checked first, so their deny wins.
_ROLE_PRIORITY = 100
# Quarantine: the broker drops what the device publishes (it may still read its downlink).
_DENY_PUBLISH = [{"acltype": "publishClientSend", "topic": "#", "priority": 0, "allow": False}]
# Revocation: nothing in, nothing out, no subscription (the TLS listener lets it log in: 2.0.11
# asks no plugin at CONNECT when the certificate is the identity).
_DENY_ALL = [
    {"acltype": kind, "topic": "#", "priority": 0, "allow": False}
    for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
]
# What a repeated command answers, harmlessly (invariant 1).
TOLERATED = {"createRole": "Role already exists", "createClient": "Client already exists"}
CORRELATION = "correlationData"
# What a batch is for (a label of vigie_broker_command_failures_total).
BrokerAction = Literal["cut", "release", "revoke"]


def restricted_client_id(username: str) -> str | None:
    """The only client id ``username`` may use, or None when it is not a dynsec client.

    Devices (any id outside the reserved ``vigie-`` prefix) use their id; the
    monitor its fixed id; other infrastructure accounts (dispatchers, admin,
    benchmark fleet) are left to the password and ACL files.
    """
    if username == MONITOR_USER:
        return MONITOR_CLIENT_ID
    if username.startswith(INFRA_PREFIX):
        return None
    return username


def create_client_command(username: str) -> dict[str, Any] | None:
    """``createClient``: ``username`` bound to its client id, in the restricted group (None: infra)."""
    client_id = restricted_client_id(username)
    if client_id is None:
        return None
    return {
        "command": "createClient",
        "username": username,
        "clientid": client_id,
        "groups": [{"groupname": RESTRICTED_GROUP, "priority": -1}],
    }


def _give_role(device_id: str, role: str, acls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"command": "createRole", "rolename": role, "acls": acls},
        {"command": "removeClientRole", "username": device_id, "rolename": role},
        {"command": "addClientRole", "username": device_id, "rolename": role, "priority": _ROLE_PRIORITY},
    ]


def cut_commands(device_id: str) -> list[dict[str, Any]]:
    """Quarantine: deny ``device_id`` every publish and disconnect it (password logins refused)."""
    return [*_give_role(device_id, QUARANTINE_ROLE, _DENY_PUBLISH), _disable(device_id)]


def release_commands(device_id: str, *, revoked: bool) -> list[dict[str, Any]]:
    """End a quarantine; a ``revoked`` device stays disabled (invariant 2)."""
    remove = {"command": "removeClientRole", "username": device_id, "rolename": QUARANTINE_ROLE}
    return [remove] if revoked else [remove, {"command": "enableClient", "username": device_id}]


def revoke_commands(device_id: str) -> list[dict[str, Any]]:
    """Revocation, for good: registered if it was not, denied everything, disconnected, logins refused."""
    create = create_client_command(device_id)
    return [
        *([create] if create is not None else []),
        *_give_role(device_id, REVOKED_ROLE, _DENY_ALL),
        _disable(device_id),
    ]


def _disable(device_id: str) -> dict[str, Any]:
    return {"command": "disableClient", "username": device_id}


def tagged(commands: Sequence[Mapping[str, Any]], correlation: str) -> list[dict[str, Any]]:
    """The commands, each carrying ``correlation`` (the broker echoes it in its answer)."""
    return [{**c, CORRELATION: correlation} for c in commands]


def request_payload(commands: Sequence[Mapping[str, Any]]) -> bytes:
    """The message published on :data:`CONTROL_TOPIC`."""
    return json.dumps({"commands": list(commands)}).encode()


def responses_by_correlation(payload: bytes) -> dict[str, list[dict[str, Any]]]:
    """An answer message's responses grouped by correlation id (untagged or unreadable ones left out)."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return {}
    responses = doc.get("responses") if isinstance(doc, dict) else None
    out: dict[str, list[dict[str, Any]]] = {}
    for r in responses if isinstance(responses, list) else []:
        if isinstance(r, dict) and isinstance(r.get(CORRELATION), str):
            out.setdefault(r[CORRELATION], []).append(r)
    return out


def answer_errors(commands: Sequence[Mapping[str, Any]], responses: Sequence[Mapping[str, Any]]) -> list[str]:
    """The untolerated errors of ``commands``' ``responses`` (in order): empty when all went through."""
    errors = []
    for n, command in enumerate(commands):
        name = str(command.get("command"))
        if n >= len(responses):
            errors.append(f"{name} : sans réponse")
            continue
        error = responses[n].get("error")
        if error and error != TOLERATED.get(name):
            errors.append(f"{name} : {error}")
    return errors
