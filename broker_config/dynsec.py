"""Mosquitto's dynamic-security plugin: the broker refuses a device's SUBSCRIBE to a share group.

Mosquitto 2.0.11's ACL file never checks a SUBSCRIBE, so a device login could
join the dispatchers' ``$share/...`` group and swallow alerts (issue 13). The
dynamic-security plugin does check subscriptions, and is asked before the ACL
file. We use it for that one thing, plus binding client ids:

- every **device** account and the **monitor** account is a dynsec *client*
  in the group :data:`RESTRICTED_GROUP`, whose role denies the subscription
  pattern ``$share/#``: Mosquitto answers such a SUBSCRIBE with "not
  authorized" in the SUBACK. The client carries its own client id
  (device id, :data:`MONITOR_CLIENT_ID`): on a password listener any other id
  is refused at CONNECT, so a device or the monitor can no longer take over
  the dispatcher's session (on the TLS listener ``use_username_as_clientid``
  already does this);
- no dynsec role grants publish or read rights, and the default access for
  publishing and receiving is *false*: the plugin then defers to the ACL file
  (``broker_config/acl``), which keeps deciding every publish and read;
- the **dispatcher** accounts are *not* dynsec clients: the plugin defers for
  them and the ACL file grants their shared subscriptions as before;
- the **admin** account (:data:`ADMIN_USER`, loopback only, password in the
  broker's password file) may use ``$CONTROL/dynamic-security/v1``: devices
  provisioned while the broker runs are registered through it.

Fail-open, stated plainly: an account the plugin does not know (a device
provisioned without registering it) falls through to the ACL file, which
grants any SUBSCRIBE, as before; so does every account if the plugin could
not read its file (Mosquitto then only logs :data:`LOAD_ERROR` and starts: our
runners refuse such a start, and registering a device then fails loudly).
Register every device (``vigie provision register``, without ids: all, is
idempotent). The secret share-group name stays as a second
line of defence.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from dispatcher.fleet.dynsec_commands import (
    CONTROL_TOPIC,
    RESPONSE_TOPIC,
    RESTRICTED_GROUP,
    answer_errors,
    create_client_command,
    restricted_client_id,
    revoke_commands,
)

ADMIN_USER = "vigie-admin"
DISPATCHER_PREFIX = "vigie-dispatcher"
NO_SHARE_ROLE = "vigie-no-share"
ADMIN_ROLE = "vigie-dynsec-admin"
# What Mosquitto 2.0.11 logs, and then starts anyway, when the plugin cannot read its file.
LOAD_ERROR = "Error loading Dynamic security plugin config"
# A createClient command is ~150 bytes of JSON (ids are at most 64 characters): 30 stay
# well under the brokers' max_packet_size of 8 KiB, requests and responses alike.
COMMANDS_PER_MESSAGE = 30
# Debian's package "mosquitto" ships the plugin in its multiarch library directory.
PLUGIN_GLOBS = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/*/mosquitto_dynamic_security.so",
)


class DynsecError(RuntimeError):
    """The plugin is missing, or the broker refused or did not answer a dynsec command."""


def plugin_path() -> Path:
    """Path of ``mosquitto_dynamic_security.so``; a clear error if it is not installed."""
    for pattern in PLUGIN_GLOBS:
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        if found:
            return found[0]
    raise DynsecError(
        "greffon mosquitto_dynamic_security.so introuvable (paquet Debian « mosquitto » ≥ 2.0) : "
        "apt-get install mosquitto"
    )


def config(usernames: Iterable[str], *, disabled: Iterable[str] = ()) -> dict[str, Any]:
    """The plugin's JSON document: roles, the restricted group, the admin and ``usernames``' clients.

    The file format lists group members in the group (``clients``), not in the client.
    """
    off = set(disabled)
    restricted = {u: c for u in sorted(set(usernames)) if (c := restricted_client_id(u)) is not None}
    clients: list[dict[str, Any]] = [
        {"username": ADMIN_USER, "roles": [{"rolename": ADMIN_ROLE, "priority": -1}]}
    ]
    clients += [
        {"username": u, "clientid": c, "roles": []} | ({"disabled": True} if u in off else {})
        for u, c in restricted.items()
    ]
    control = CONTROL_TOPIC.rsplit("/", 1)[0] + "/#"
    return {
        # False = "no opinion": the plugin defers to the ACL file, which decides publishes and reads.
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [
            {
                "groupname": RESTRICTED_GROUP,
                "roles": [{"rolename": NO_SHARE_ROLE, "priority": -1}],
                "clients": [{"username": u, "priority": -1} for u in restricted],
            }
        ],
        "roles": [
            {
                "rolename": NO_SHARE_ROLE,
                "acls": [{"acltype": "subscribePattern", "topic": "$share/#", "priority": 0, "allow": False}],
            },
            {
                "rolename": ADMIN_ROLE,
                "acls": [
                    {"acltype": kind, "topic": control, "priority": 0, "allow": True}
                    for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
                ],
            },
        ],
    }


def write_config(path: Path, usernames: Iterable[str], *, disabled: Iterable[str] = ()) -> None:
    """Write the plugin's file before the broker starts (it rewrites it itself afterwards)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config(usernames, disabled=disabled), out, indent=2)
    os.replace(tmp, path)


def register_commands(usernames: Iterable[str]) -> list[dict[str, Any]]:
    """``createClient`` commands that make ``usernames`` restricted dynsec clients."""
    commands = []
    for username in usernames:
        command = create_client_command(username)
        if command is None:
            raise DynsecError(f"{username!r} est un compte d'infrastructure, pas une balise")
        commands.append(command)
    return commands


@dataclass(frozen=True)
class DynsecAdmin:
    """The admin account on a loopback listener, to change the plugin's state while the broker runs."""

    host: str
    port: int
    password: str
    username: str = ADMIN_USER

    def __post_init__(self) -> None:
        if not self.password:
            raise DynsecError(f"mot de passe vide pour le compte {self.username!r} du broker")

    def send(self, commands: Sequence[dict[str, Any]], timeout: float = 10.0) -> list[dict[str, Any]]:
        """Send ``commands`` over one connection; return the broker's responses (one per command).

        They go in control messages of at most :data:`COMMANDS_PER_MESSAGE`
        commands, each answered before the next: the broker disconnects a
        client whose packet exceeds its ``max_packet_size`` (8 KiB).
        """
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{self.username}-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        client.username_pw_set(self.username, self.password)
        ready, answered = threading.Event(), threading.Event()
        outcome: list[str] = []
        responses: list[dict[str, Any]] = []

        def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            if rc.is_failure:
                outcome.append(f"connexion refusée : {rc}")
                ready.set()
            else:
                client.subscribe(RESPONSE_TOPIC, qos=1)

        def on_subscribe(_c: Any, _u: Any, _m: Any, codes: Any, _p: Any) -> None:
            if any(c.is_failure for c in codes):
                outcome.append("abonnement aux réponses refusé (rôle d'administration absent ?)")
            ready.set()

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            responses.extend(json.loads(msg.payload).get("responses", []))
            answered.set()

        def on_publish(_c: Any, _u: Any, _mid: Any, rc: Any, _p: Any) -> None:
            if rc.is_failure:  # the plugin does not know the admin: its state file was not loaded
                outcome.append(f"commande refusée ({rc}) : état du greffon non chargé par le broker ?")
                answered.set()

        client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
        client.on_publish = on_publish
        try:
            client.connect(self.host, self.port)
        except OSError as exc:
            raise DynsecError(f"broker injoignable à {self.host}:{self.port} : {exc}") from None
        client.loop_start()
        try:
            if not ready.wait(timeout) or outcome:
                raise DynsecError(outcome[0] if outcome else "le broker n'a pas répondu à la connexion")
            for start in range(0, len(commands), COMMANDS_PER_MESSAGE):
                batch = list(commands[start : start + COMMANDS_PER_MESSAGE])
                answered.clear()
                client.publish(CONTROL_TOPIC, json.dumps({"commands": batch}), qos=1)
                if not answered.wait(timeout) or outcome:
                    raise DynsecError(outcome[0] if outcome else "le broker n'a pas répondu à la commande")
        finally:
            client.disconnect()
            client.loop_stop()
        return responses

    def register(self, usernames: Iterable[str]) -> None:
        """Make ``usernames`` restricted clients; an already registered one is left as it is."""
        commands = register_commands(usernames)
        if commands:
            self._apply(commands)

    def disable(self, username: str) -> None:
        """Revoke ``username`` at the broker (registered first if needed): what the dispatcher's
        revocation sends too (dispatcher/fleet/dynsec_commands.py).

        The broker disconnects it, refuses its password logins and, through the
        role ``vigie-revoked``, everything it would publish, read or subscribe to
        on any listener; certificate logins themselves are refused by the CRL
        (the TLS listener asks no plugin at CONNECT).
        """
        if create_client_command(username) is None:
            raise DynsecError(f"{username!r} est un compte d'infrastructure, pas une balise")
        self._apply(revoke_commands(username))

    def _apply(self, commands: list[dict[str, Any]]) -> None:
        errors = answer_errors(commands, self.send(commands))
        if errors:
            raise DynsecError("le broker a refusé : " + "; ".join(errors))
