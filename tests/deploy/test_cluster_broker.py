"""deploy/render_cluster_broker.py: the EMQX and VerneMQ files it writes parse, and keep Vigie's guarantees.

Neither engine can run here, so these check what can be checked without one
(docs/national-broker.md says which parts were never run): the EMQX file is
parsed as HOCON (pyhocon) and its ACL with Erlang's ``file:consult`` — what
EMQX's file authorizer calls — and the VerneMQ Lua hook with ``luac -p``; the
settings Vigie's safety depends on are asserted one by one.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pyhocon import ConfigFactory

from broker_config.provision import MAX_DISPATCHER_INSTANCES, dispatcher_cn

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "render_cluster_broker.py"
DISPATCHERS = [dispatcher_cn(n) for n in range(1, MAX_DISPATCHER_INSTANCES + 1)]


def renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_cluster_broker", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def render(tmp_path: Path, engine: str, node: str, *extra: str) -> Path:
    out = tmp_path / engine
    done = run(engine, "--node", node, "--secrets", tmp_path / "secrets", "--out", out, *extra)
    assert done.returncode == 0, done.stderr
    return out


def test_emqx_node_parses_and_binds_identity_to_the_certificate(tmp_path: Path) -> None:
    out = render(tmp_path, "emqx", "emqx@10.0.0.11", "--seed", "emqx@10.0.0.11", "--seed", "emqx@10.0.0.12")
    conf = ConfigFactory.parse_file(str(out / "emqx.conf"))
    assert conf["cluster.static.seeds"] == ["emqx@10.0.0.11", "emqx@10.0.0.12"]
    # Only the mutual-TLS listener; the CN is both the username and the client id.
    assert [conf[f"listeners.{kind}.default.enable"] for kind in ("tcp", "ws", "wss")] == [False] * 3
    tls = conf["listeners.ssl.default.ssl_options"]
    assert (tls["verify"], tls["fail_if_no_peer_cert"]) == ("verify_peer", True)
    assert tls["cacertfile"] == "/etc/emqx/certs/ca.pem"
    assert (conf["mqtt.peer_cert_as_username"], conf["mqtt.peer_cert_as_clientid"]) == ("cn", "cn")
    # 8 KiB packets; QoS 1 never dropped for an offline dispatcher; QoS 0 never queued.
    assert conf["mqtt.max_packet_size"] == "8KB"
    assert (conf["mqtt.max_mqueue_len"], conf["mqtt.mqueue_store_qos0"]) == ("infinity", False)
    authz = conf["authorization"]
    assert (authz["no_match"], authz["deny_action"]) == ("deny", "disconnect")
    assert [s["path"] for s in authz["sources"]] == ["/etc/emqx/acl.conf"]
    assert conf["dashboard.listeners.http.bind"].startswith("127.0.0.1:")


@pytest.mark.skipif(shutil.which("erl") is None, reason="erl manquant (paquet Debian erlang-base)")
def test_emqx_acl_is_read_by_erlang_as_emqx_reads_it(tmp_path: Path) -> None:
    out = render(tmp_path, "emqx", "emqx@10.0.0.11")
    script = 'io:format("~p", [file:consult("acl.conf")]), halt().'
    done = subprocess.run(["erl", "-noshell", "-eval", script], cwd=out, capture_output=True, text=True)
    terms = "".join(done.stdout.split())  # erl's pretty-printer breaks lines where it likes
    assert terms.startswith("{ok,["), done.stdout + done.stderr
    for name in DISPATCHERS:  # every dispatcher CN of broker_config/acl, and no other account
        assert terms.count(f'{{username,"{name}"}}') == 2
    assert terms.count("{username,") == 2 * len(DISPATCHERS)
    own = "vigie/v1/dev/${username}"
    assert f'{{allow,all,publish,["{own}/up/+","{own}/status"]}}' in terms
    assert f'{{allow,all,subscribe,["{own}/status","{own}/down"]}}' in terms
    assert terms.endswith("{deny,all}]}")


def test_vernemq_node_settings_and_acl(tmp_path: Path) -> None:
    out = render(tmp_path, "vernemq", "VerneMQ@10.0.0.21", "--tls-port", "8884")
    lines = (out / "vernemq.conf").read_text().splitlines()
    settings = dict(line.split(" = ", 1) for line in lines if line and line[0] != "#")
    assert settings["listener.ssl.default"] == "0.0.0.0:8884"
    wanted = {
        "allow_anonymous": "off",
        "plugins.vmq_passwd": "off",
        "listener.ssl.require_certificate": "on",
        "listener.ssl.use_identity_as_username": "on",
        "vmq_diversity.vigie_identity.file": "/etc/vernemq/vigie_identity.lua",
        "vmq_acl.acl_file": "/etc/vernemq/vmq.acl",
        "max_message_size": "8192",
        "max_offline_messages": "-1",
        "max_online_messages": "-1",
        "shared_subscription_timeout_action": "requeue",
    }
    assert {k: settings.get(k) for k in wanted} == wanted
    rules = [line.split() for line in (out / "vmq.acl").read_text().splitlines() if line and line[0] != "#"]
    assert all(r[1] != "readwrite" for r in rules if r[0] != "user")  # vmq_acl would read it as a topic name
    by_user: dict[str, list[list[str]]] = {"": []}
    user = ""
    for rule in rules:
        if rule[0] == "user":
            user = rule[1]
            by_user[user] = []
        else:
            by_user[user].append(rule)
    assert list(by_user) == ["", *DISPATCHERS]  # the device patterns, then every dispatcher CN
    assert by_user[""] == [
        ["pattern", "write", "vigie/v1/dev/%u/up/+"],
        ["pattern", "vigie/v1/dev/%u/status"],
        ["pattern", "read", "vigie/v1/dev/%u/down"],
    ]
    assert all(by_user[name] == by_user[DISPATCHERS[0]] for name in DISPATCHERS)  # identical rights
    assert all(topic.startswith("$share/+/") for _, mode, topic in by_user[DISPATCHERS[0]] if mode == "read")


@pytest.mark.skipif(shutil.which("luac5.4") is None, reason="luac5.4 manquant (paquet Debian lua5.4)")
def test_vernemq_identity_hook_is_valid_lua(tmp_path: Path) -> None:
    out = render(tmp_path, "vernemq", "VerneMQ@10.0.0.21")
    done = subprocess.run(["luac5.4", "-p", str(out / "vigie_identity.lua")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_node_of_a_cluster_gets_the_same_cookie_kept_secret(tmp_path: Path) -> None:
    one = render(tmp_path / "1", "emqx", "emqx@10.0.0.11")
    (tmp_path / "2").mkdir()
    shutil.copytree(tmp_path / "1" / "secrets", tmp_path / "2" / "secrets")
    two = render(tmp_path / "2", "emqx", "emqx@10.0.0.12")
    cookies = [ConfigFactory.parse_file(str(d / "emqx.conf"))["node.cookie"] for d in (one, two)]
    assert cookies[0] == cookies[1] and len(cookies[0]) >= 32
    assert (one / "emqx.conf").stat().st_mode & 0o077 == 0
    assert (tmp_path / "1" / "secrets" / "cookie").stat().st_mode & 0o077 == 0


def test_a_bad_node_name_is_refused_in_french(tmp_path: Path) -> None:
    done = run("emqx", "--node", "emqx 10.0.0.11", "--secrets", tmp_path / "s", "--out", tmp_path / "out")
    assert done.returncode == 2 and "attendu nom@hôte" in done.stderr
    assert not (tmp_path / "out" / "emqx.conf").exists()


MOSQUITTO_ACL = """
pattern write vigie/v1/dev/%u/up/+
pattern readwrite vigie/v1/dev/%u/status
user vigie-dispatcher
topic read vigie/v1/dev/+/up/+
topic write vigie/v1/dev/+/down
user vigie-dispatcher-2
topic read vigie/v1/dev/+/up/+
topic write vigie/v1/dev/+/down
user vigie-monitor
topic read $SYS/#
"""


def test_the_mosquitto_acl_is_translated_rule_for_rule() -> None:
    r = renderer()
    parts = r.split_rules(r.mosquitto_rules(MOSQUITTO_ACL))
    assert parts[1] == ["vigie-dispatcher", "vigie-dispatcher-2"]  # the loopback monitor has no counterpart
    vmq = r.vernemq_acl(*parts)
    assert vmq["DEVICE_PATTERNS"] == "pattern write vigie/v1/dev/%u/up/+\npattern vigie/v1/dev/%u/status"
    assert vmq["DISPATCHER_BLOCKS"].split("\n\n")[1].splitlines() == [
        "user vigie-dispatcher-2",
        "topic read $share/+/vigie/v1/dev/+/up/+",
        "topic write vigie/v1/dev/+/down",
    ]
    emqx = r.emqx_acl(*parts)
    assert emqx["DEVICE_RULES"].splitlines() == [
        '{allow, all, publish, ["vigie/v1/dev/${username}/up/+", "vigie/v1/dev/${username}/status"]}.',
        '{allow, all, subscribe, ["vigie/v1/dev/${username}/status"]}.',
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("user btn-special\ntopic read vigie/#\n", "sans équivalent sur un cluster : btn-special"),
        ("user vigie-dispatcher-3\ntopic read vigie/#\n", "les droits de vigie-dispatcher-3 diffèrent"),
        ("topic deny vigie/#\n", "ligne d'ACL non traduite"),
    ],
)
def test_an_acl_the_clusters_cannot_express_is_refused(extra: str, message: str) -> None:
    r = renderer()
    with pytest.raises(r.RenderError, match=message):
        r.split_rules(r.mosquitto_rules(MOSQUITTO_ACL + extra))
