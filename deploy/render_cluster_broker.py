"""Render the broker files of one EMQX or VerneMQ cluster node from deploy/emqx or deploy/vernemq.

Usage (on the provisioning machine, where vigie is installed)::

    python deploy/render_cluster_broker.py emqx --node emqx@10.0.0.11 \\
        --seed emqx@10.0.0.11 --seed emqx@10.0.0.12 --seed emqx@10.0.0.13 \\
        --secrets /srv/vigie/broker-secrets --out /tmp/node1

The templates carry ``@NAME@`` markers (HOCON, Erlang and Lua all use ``${...}``
themselves). The dispatcher identities come from broker_config.provision (one
CN per instance, as in broker_config/acl). The cluster secrets (Erlang cookie,
EMQX dashboard password) are generated once into ``--secrets`` and reused for
every node: nodes with different cookies cannot form a cluster.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from broker_config.provision import MAX_DISPATCHER_INSTANCES, dispatcher_cn

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
    instances: int
    cookie: str
    dashboard_password: str


def dispatcher_names(instances: int) -> list[str]:
    """The dispatcher CNs the ACL grants (``vigie-dispatcher``, ``vigie-dispatcher-2``...)."""
    return [dispatcher_cn(n) for n in range(1, instances + 1)]


def emqx_dispatchers(names: Sequence[str]) -> str:
    """An EMQX ACL 'who' term matching exactly these usernames."""
    return "{'or', [" + ", ".join(f'{{username, "{n}"}}' for n in names) + "]}"


def vernemq_dispatcher_blocks(names: Sequence[str]) -> str:
    """vmq_acl ``user`` blocks, identical for every instance."""
    lines = [
        "topic read $share/+/vigie/v1/dev/+/up/+",
        "topic read $share/+/vigie/v1/dev/+/status",
        "topic write vigie/v1/dev/+/down",
    ]
    return "\n\n".join("\n".join([f"user {n}", *lines]) for n in names)


def values(node: Node) -> dict[str, str]:
    """The marker values of ``node``'s templates."""
    for what, text in (("nom de nœud", node.name), *(("graine", s) for s in node.seeds)):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+", text):
            raise RenderError(f"{what} {text!r} : attendu nom@hôte (lettres, chiffres, . _ -)")
    names = dispatcher_names(node.instances)
    return {
        "NODE_NAME": node.name,
        "SEEDS": ", ".join(f'"{s}"' for s in node.seeds),
        "TLS_PORT": str(node.tls_port),
        "CERT_DIR": node.cert_dir,
        "ETC_DIR": node.etc_dir,
        "DATA_DIR": node.data_dir,
        "COOKIE": node.cookie,
        "DASHBOARD_PASSWORD": node.dashboard_password,
        "DISPATCHERS": emqx_dispatchers(names),
        "DISPATCHER_BLOCKS": vernemq_dispatcher_blocks(names),
    }


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
    parser.add_argument("--instances", type=int, default=MAX_DISPATCHER_INSTANCES, help="dispatchers")
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
        instances=args.instances,
        cookie=found["cookie"],
        dashboard_password=found["dashboard-password"],
    )
    try:
        written = render(node, args.out)
    except (RenderError, RuntimeError) as exc:  # RuntimeError: ProvisionError (too many instances)
        print(f"render_cluster_broker : {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"écrit : {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
