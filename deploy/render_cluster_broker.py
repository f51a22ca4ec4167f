"""Render the broker files of one EMQX or VerneMQ cluster node from deploy/emqx or deploy/vernemq.

Usage (on the provisioning machine, where vigie is installed)::

    python deploy/render_cluster_broker.py emqx --node emqx@10.0.0.11 \\
        --seed emqx@10.0.0.11 --seed emqx@10.0.0.12 --seed emqx@10.0.0.13 \\
        --secrets /srv/vigie/broker-secrets --out /tmp/node1

The templates carry ``@NAME@`` markers (HOCON, Erlang and Lua all use ``${...}``
themselves). The ACL rules are translated from Mosquitto's ``broker_config/acl``,
the one source of truth for who may publish and read what: its patterns (``%u``,
every client) and its dispatcher accounts. The loopback monitoring account has
no counterpart on a cluster (metrics come from each engine's HTTP endpoint) and
any other account is an error, so that none is silently dropped. The cluster
secrets (Erlang cookie, EMQX dashboard password) are generated once into
``--secrets`` and reused for every node: nodes with different cookies cannot
form a cluster.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from broker_config.provision import DISPATCHER_CN
from broker_config.runner import acl_path

HERE = Path(__file__).resolve().parent
# template -> rendered file name, per engine
TEMPLATES = {
    "emqx": {"emqx.conf.in": "emqx.conf", "acl.conf.in": "acl.conf"},
    "vernemq": {
        "vernemq.conf.in": "vernemq.conf",
        "vmq.acl.in": "vmq.acl",
        "vigie_identity.lua": "vigie_identity.lua",
    },
}
DEFAULT_ETC = {"emqx": "/etc/emqx", "vernemq": "/etc/vernemq"}
DEFAULT_DATA = {"emqx": "/var/lib/emqx", "vernemq": "/var/lib/vernemq"}
MARKER = re.compile(r"@[A-Z_]+@")
SECRET_NAMES = ("cookie", "dashboard-password")
MODES = ("read", "write", "readwrite")
# Accounts of broker_config/acl that only exist on Mosquitto's loopback listener.
LOOPBACK_ONLY = ("vigie-monitor",)


class RenderError(ValueError):
    """A template marker without a value, or a value that would break the file."""


@dataclass(frozen=True)
class Node:
    """What differs between deployments (and, for ``name``, between nodes)."""

    engine: str
    name: str
    seeds: tuple[str, ...]
    tls_port: int
    cert_dir: str
    etc_dir: str
    data_dir: str
    cookie: str
    dashboard_password: str


@dataclass(frozen=True)
class Rule:
    """One line of a Mosquitto ACL: ``user`` None for a pattern (every client, ``%u`` = its username)."""

    user: str | None
    read: bool
    write: bool
    topic: str


def mosquitto_rules(text: str) -> list[Rule]:
    """The rules of a Mosquitto ACL file (``topic``/``pattern`` [read|write|readwrite] TOPIC, ``user``)."""
    rules, user = [], None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user" and len(words) == 2:
            user = words[1]
            continue
        mode = words[1] if len(words) == 3 else "readwrite"
        if words[0] not in ("topic", "pattern") or mode not in MODES or len(words) > 3:
            raise RenderError(f"ligne d'ACL non traduite : {line.strip()!r}")
        owner = None if words[0] == "pattern" else user
        rules.append(Rule(owner, mode != "write", mode != "read", words[-1]))
    return rules


def split_rules(rules: list[Rule]) -> tuple[list[Rule], list[str], list[Rule]]:
    """Device patterns, the dispatcher accounts, and the rules they all share (identical, or an error)."""
    patterns = [r for r in rules if r.user is None]
    users = list(dict.fromkeys(r.user for r in rules if r.user is not None and r.user not in LOOPBACK_ONLY))
    strangers = [u for u in users if u != DISPATCHER_CN and not u.startswith(DISPATCHER_CN + "-")]
    if strangers:
        raise RenderError(f"comptes de l'ACL sans équivalent sur un cluster : {', '.join(strangers)}")
    shared = [Rule(None, r.read, r.write, r.topic) for r in rules if r.user == users[0]]
    for user in users:
        if [Rule(None, r.read, r.write, r.topic) for r in rules if r.user == user] != shared:
            raise RenderError(f"les droits de {user} diffèrent de ceux de {users[0]}")
    return patterns, users, shared


def emqx_acl(patterns: list[Rule], users: list[str], shared: list[Rule]) -> dict[str, str]:
    """EMQX file-authorizer rules; it authorizes ``$share/<g>/<filter>`` as ``<filter>``."""

    def topics(rules: list[Rule], want_read: bool) -> str:
        chosen = [r.topic.replace("%u", "${username}") for r in rules if (r.read if want_read else r.write)]
        return ", ".join(f'"{t}"' for t in chosen)

    who = "{'or', [" + ", ".join(f'{{username, "{n}"}}' for n in users) + "]}"
    return {
        "DISPATCHER_RULES": f"{{allow, {who}, subscribe, [{topics(shared, True)}]}}.\n"
        f"{{allow, {who}, publish, [{topics(shared, False)}]}}.",
        "DEVICE_RULES": f"{{allow, all, publish, [{topics(patterns, False)}]}}.\n"
        f"{{allow, all, subscribe, [{topics(patterns, True)}]}}.",
    }


def vernemq_acl(patterns: list[Rule], users: list[str], shared: list[Rule]) -> dict[str, str]:
    """vmq_acl rules: no ``readwrite`` keyword; it checks ``$share/<g>/`` filters as sent."""

    def mode(rule: Rule) -> str:
        return "" if rule.read and rule.write else ("read " if rule.read else "write ")

    lines = []
    for rule in shared:  # the dispatchers read only through share groups
        if rule.read:
            lines.append(f"topic read $share/+/{rule.topic}")
        if rule.write:
            lines.append(f"topic write {rule.topic}")
    return {
        "DEVICE_PATTERNS": "\n".join(f"pattern {mode(r)}{r.topic}" for r in patterns),
        "DISPATCHER_BLOCKS": "\n\n".join("\n".join([f"user {n}", *lines]) for n in users),
    }


def values(node: Node) -> dict[str, str]:
    """The marker values of ``node``'s templates."""
    for what, text in (("nom de nœud", node.name), *(("graine", s) for s in node.seeds)):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+", text):
            raise RenderError(f"{what} {text!r} : attendu nom@hôte (lettres, chiffres, . _ -)")
    parts = split_rules(mosquitto_rules(acl_path().read_text()))
    return (
        emqx_acl(*parts)
        | vernemq_acl(*parts)
        | {
            "NODE_NAME": node.name,
            "SEEDS": ", ".join(f'"{s}"' for s in node.seeds),
            "TLS_PORT": str(node.tls_port),
            "CERT_DIR": node.cert_dir,
            "ETC_DIR": node.etc_dir,
            "DATA_DIR": node.data_dir,
            "COOKIE": node.cookie,
            "DASHBOARD_PASSWORD": node.dashboard_password,
        }
    )


def fill(template: str, vals: dict[str, str]) -> str:
    """Replace every ``@NAME@`` marker; a marker without a value is an error."""

    def one(match: re.Match[str]) -> str:
        key = match.group(0).strip("@")
        if key not in vals:
            raise RenderError(f"pas de valeur pour {match.group(0)}")
        return vals[key]

    return MARKER.sub(one, template)


def render(node: Node, out: Path) -> list[Path]:
    """Write ``node``'s files into ``out``; return their paths."""
    vals = values(node)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for template, name in TEMPLATES[node.engine].items():
        target = out / name
        target.write_text(fill((HERE / node.engine / template).read_text(), vals))
        target.chmod(0o600 if name.endswith(".conf") else 0o644)  # the .conf files hold the cookie
        written.append(target)
    return written


def load_secrets(folder: Path) -> dict[str, str]:
    """The cluster's secrets, generated on first use (mode 0600) and reused for every node."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    found = {}
    for name in SECRET_NAMES:
        path = folder / name
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32) + "\n")
        found[name] = path.read_text().strip()
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fichiers du broker EMQX ou VerneMQ d'un nœud Vigie.")
    parser.add_argument("engine", choices=sorted(TEMPLATES))
    parser.add_argument("--node", required=True, help="nom du nœud : emqx@hôte ou VerneMQ@hôte")
    parser.add_argument("--seed", action="append", default=[], help="nœud du cluster (EMQX, répétable)")
    parser.add_argument("--tls-port", type=int, default=8883)
    parser.add_argument("--cert-dir", default=None, help="ca.pem, server.pem, server.key, crl.pem (nœud)")
    parser.add_argument("--etc-dir", default=None, help="où le nœud lit acl.conf / vmq.acl / le script Lua")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--secrets", type=Path, required=True, help="dossier des secrets du cluster (créé)")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    etc = args.etc_dir or DEFAULT_ETC[args.engine]
    found = load_secrets(args.secrets)
    node = Node(
        engine=args.engine,
        name=args.node,
        seeds=tuple(args.seed or [args.node]),
        tls_port=args.tls_port,
        cert_dir=args.cert_dir or f"{etc}/certs",
        etc_dir=etc,
        data_dir=args.data_dir or DEFAULT_DATA[args.engine],
        cookie=found["cookie"],
        dashboard_password=found["dashboard-password"],
    )
    try:
        written = render(node, args.out)
    except RenderError as exc:
        print(f"render_cluster_broker : {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"écrit : {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
