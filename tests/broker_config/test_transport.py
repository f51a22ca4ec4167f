"""Transport security of the production broker configuration, against a real Mosquitto."""

from __future__ import annotations

import datetime as dt
import signal
import ssl
import threading
import time
from pathlib import Path

import pytest

from broker_config import pki as pkimod
from broker_config import provision
from broker_config.dynsec import ADMIN_USER
from broker_config.provision import BrokerAccount
from broker_config.runner import DevBroker
from broker_config.tls_runner import TlsBroker
from dispatcher.domain import DeviceState
from protocol.topics import UplinkKind, downlink_topic, shared_uplink_filter, uplink_topic
from tests.broker_config.helpers import Identity, Pki, Refused, connect, connected, run_with_store


@pytest.mark.broker_process("démarre son propre broker de développement")
def test_dev_config_loads(tmp_path: Path) -> None:
    with DevBroker(tmp_path / "dev") as broker:
        assert broker.proc is not None and broker.proc.poll() is None


@pytest.mark.broker_process("lit le journal du processus Mosquitto")
def test_prod_config_loads(tls_broker: TlsBroker) -> None:
    assert tls_broker.proc is not None and tls_broker.proc.poll() is None
    assert "Error" not in tls_broker.log_text()


def test_device_uplinks_reach_dispatcher_share(pki: Pki, tls_broker: TlsBroker) -> None:
    pki.provision("btn-001")
    with (
        connected(tls_broker, pki.dispatcher) as dispatcher,
        connected(tls_broker, pki.device("btn-001")) as dev,
    ):
        dispatcher.subscribe(shared_uplink_filter())
        for kind in UplinkKind:  # every leaf, the live position's included
            dev.publish(uplink_topic("btn-001", kind), kind.value.encode())
        got = dispatcher.wait_for(lambda m: len(m) >= len(UplinkKind))
        assert [(m.topic, m.payload) for m in got] == [
            (uplink_topic("btn-001", kind), kind.value.encode()) for kind in UplinkKind
        ]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_12_and_13_accepted(pki: Pki, tls_broker: TlsBroker, version: ssl.TLSVersion) -> None:
    pki.provision("btn-001")
    with connected(tls_broker, pki.device("btn-001"), max_version=version) as dev:
        assert dev.client.is_connected()


def test_no_client_certificate_refused(pki: Pki, tls_broker: TlsBroker) -> None:
    with pytest.raises(Refused):
        connect(tls_broker, Identity(pki.dispatcher.ca, None, None))


def test_certificate_from_another_ca_refused(pki: Pki, tls_broker: TlsBroker, tmp_path: Path) -> None:
    rogue = pkimod.CertificateAuthority.create("Rogue CA")
    cert, key = rogue.issue("btn-001", validity=pkimod.Validity.days(30), client=True)
    pkimod.write_public(tmp_path / "rogue.pem", pkimod.cert_pem(cert))
    pkimod.write_secret(tmp_path / "rogue.key", pkimod.key_pem(key))
    with pytest.raises(Refused):
        connect(tls_broker, Identity(pki.dispatcher.ca, tmp_path / "rogue.pem", tmp_path / "rogue.key"))


def test_expired_certificate_refused(pki: Pki, tls_broker: TlsBroker) -> None:
    now = pkimod.utcnow()
    expired = pkimod.Validity(now - dt.timedelta(days=30), now - dt.timedelta(days=1))
    pki.provision("btn-old", validity=expired)
    with pytest.raises(Refused):
        connect(tls_broker, pki.device("btn-old"))


def test_server_certificate_cannot_log_in_as_client(pki: Pki, tls_broker: TlsBroker) -> None:
    ident = Identity(pki.dispatcher.ca, pki.server_dir / "server.pem", pki.server_dir / "server.key")
    with pytest.raises(Refused):
        connect(tls_broker, ident)


def test_plain_mqtt_on_tls_port_refused(tls_broker: TlsBroker) -> None:
    with pytest.raises(Refused):
        connect(tls_broker, None)


@pytest.mark.broker_process("utilise l'écouteur local à mot de passe du broker")
def test_loopback_listener_needs_a_password(tls_broker: TlsBroker) -> None:
    with pytest.raises(Refused):
        connect(tls_broker, None, port=tls_broker.local_port)


@pytest.mark.parametrize("kind", [UplinkKind.ALERT, UplinkKind.POSITION])
def test_forged_topic_never_delivered(pki: Pki, tls_broker: TlsBroker, kind: UplinkKind) -> None:
    pki.provision("btn-a")
    pki.provision("btn-b")
    with connected(tls_broker, pki.dispatcher) as dispatcher:
        dispatcher.subscribe(shared_uplink_filter())
        a = connect(tls_broker, pki.device("btn-a"))
        refused = threading.Event()
        a.client.on_publish = lambda _c, _u, _mid, rc, _p: rc.is_failure and refused.set()
        try:
            a.client.publish(uplink_topic("btn-b", kind), b"forged", qos=1)
            # Mosquitto 2.0.11 (and EMQX with deny_action = disconnect) closes the connection
            # of a client that publishes outside its ACL; a broker may instead only answer
            # PUBACK "not authorised". Either way the broker has judged it before what follows.
            assert _either(a.disconnected, refused, within=5), "no PUBACK refusal and no disconnection"
        finally:
            a.close()
        with connected(tls_broker, pki.device("btn-a")) as a2:
            a2.publish(uplink_topic("btn-a", kind), b"legit")
        # The broker routes each PUBLISH synchronously as it reads it: had the
        # forged one been accepted, it would be queued to the dispatcher first.
        got = dispatcher.wait_for(lambda m: any(x.payload == b"legit" for x in m))
        assert [m.topic for m in got] == [uplink_topic("btn-a", kind)]


@pytest.mark.parametrize(
    "filters",
    [[downlink_topic("btn-b"), downlink_topic("btn-a")], ["vigie/v1/dev/#"]],
    ids=["b-downlink", "whole-tree"],
)
def test_device_cannot_read_another_downlink(pki: Pki, tls_broker: TlsBroker, filters: list[str]) -> None:
    pki.provision("btn-a")
    pki.provision("btn-b")
    with (
        connected(tls_broker, pki.dispatcher) as dispatcher,
        connected(tls_broker, pki.device("btn-a")) as a,
        connected(tls_broker, pki.device("btn-b")) as b,
    ):
        for topic_filter in filters:  # granted then filtered by the read ACL, or refused: both do
            a.subscribe(topic_filter)
        b.subscribe(downlink_topic("btn-b"))
        b.publish(uplink_topic("btn-b", UplinkKind.ALERT), b"b-alert")  # nor another device's uplinks
        dispatcher.publish(downlink_topic("btn-b"), b"for-b")
        dispatcher.publish(downlink_topic("btn-a"), b"marker-a")
        b.wait_for(lambda m: any(x.payload == b"for-b" for x in m))
        # The dispatcher's messages reach a in order: the marker after B's message.
        a.wait_for(lambda m: any(x.payload == b"marker-a" for x in m))
        assert a.topics() == [downlink_topic("btn-a")]


def test_device_cannot_take_over_the_dispatcher_session(pki: Pki, tls_broker: TlsBroker) -> None:
    pki.provision("btn-a")
    with connected(tls_broker, pki.dispatcher, clean_start=False, session_expiry=3600) as dispatcher:
        dispatcher.subscribe(shared_uplink_filter())
        # Mosquitto and EMQX force the client id to the certificate CN; VerneMQ's hook
        # (deploy/vernemq/vigie_identity.lua) refuses the login. Neither kicks the dispatcher.
        try:
            a = connect(tls_broker, pki.device("btn-a"), client_id="vigie-dispatcher")
        except Refused:
            a = connect(tls_broker, pki.device("btn-a"), client_id="btn-a")
        try:
            a.publish(uplink_topic("btn-a", UplinkKind.ALERT), b"still-delivered")
            dispatcher.wait_for(lambda m: any(x.payload == b"still-delivered" for x in m))
        finally:
            a.close()
        assert not dispatcher.disconnected.is_set()


@pytest.mark.broker_process("recharge la LCR du broker (SIGHUP) et utilise son écouteur local")
def test_revoked_device_refused_others_keep_working(pki: Pki, tls_broker: TlsBroker) -> None:
    pki.provision("btn-a", broker=tls_broker.admin())
    pki.provision("btn-b", broker=tls_broker.admin())
    with (
        connected(tls_broker, pki.dispatcher) as dispatcher,
        connected(tls_broker, pki.device("btn-b")) as b,
    ):
        dispatcher.subscribe(shared_uplink_filter())
        a = connect(tls_broker, pki.device("btn-a"))
        try:
            done = run_with_store(
                pki.db, lambda store: provision.revoke(store, pki.ca_dir, "btn-a", broker=tls_broker.admin())
            )
            assert done.serials and done.in_store
            tls_broker.reload()  # SIGHUP: Mosquitto 2.0.11 re-reads crlfile for new handshakes
            # The admin: the monitor account is bound to its own client id.
            account = BrokerAccount(
                "127.0.0.1", tls_broker.local_port, ADMIN_USER, tls_broker.accounts[ADMIN_USER]
            )
            provision.evict(account, "btn-a")
            assert a.disconnected.wait(5), "the revoked device's live connection was not cut"
        finally:
            a.close()
        with pytest.raises(Refused):
            connect(tls_broker, pki.device("btn-a"))
        b.publish(uplink_topic("btn-b", UplinkKind.ALERT), b"b-works")
        dispatcher.wait_for(lambda m: any(x.payload == b"b-works" for x in m))
        with connected(tls_broker, pki.device("btn-b")) as b2:  # new handshakes of others still pass
            assert b2.client.is_connected()
    device = run_with_store(pki.db, lambda store: store.get_device("btn-a"))
    assert device.state is DeviceState.REVOKED


@pytest.mark.broker_process("envoie SIGHUP au broker")
def test_crl_is_reloaded_on_sighup_without_restart(pki: Pki, tls_broker: TlsBroker) -> None:
    pki.provision("btn-a")
    connect(tls_broker, pki.device("btn-a")).close()
    run_with_store(pki.db, lambda store: provision.revoke(store, pki.ca_dir, "btn-a"))
    tls_broker.reload()
    # SIGHUP is asynchronous: the first handshakes after it may still use the old CRL.
    assert _eventually_refused(tls_broker, pki.device("btn-a"))
    assert tls_broker.proc is not None and tls_broker.proc.poll() is None


def _either(first: threading.Event, second: threading.Event, within: float) -> bool:
    """Whether one of two events is set within ``within`` seconds."""
    deadline = time.monotonic() + within
    while not (first.is_set() or second.is_set()):
        if time.monotonic() > deadline:
            return False
        first.wait(0.02)
    return True


def _eventually_refused(broker: TlsBroker, ident: Identity, attempts: int = 50) -> bool:
    for _ in range(attempts):
        try:
            connect(broker, ident).close()
        except Refused:
            return True
    return False


def _queue_for_offline_dispatcher(pki: Pki, broker: TlsBroker, payload: bytes) -> None:
    with connected(broker, pki.dispatcher, clean_start=False, session_expiry=3600) as dispatcher:
        dispatcher.subscribe(shared_uplink_filter())
    with connected(broker, pki.device("btn-001")) as dev:
        dev.publish(uplink_topic("btn-001", UplinkKind.ALERT), payload)  # PUBACKed by the broker


def _collect_after_restart(pki: Pki, broker: TlsBroker, payload: bytes) -> None:
    with connected(broker, pki.dispatcher, clean_start=False, session_expiry=3600) as dispatcher:
        dispatcher.wait_for(lambda m: any(x.payload == payload for x in m))


@pytest.mark.broker_process("redémarre le broker")
def test_queued_alert_survives_broker_restart(pki: Pki, tls_broker: TlsBroker) -> None:
    pki.provision("btn-001")
    _queue_for_offline_dispatcher(pki, tls_broker, b"queued-sigterm")
    tls_broker.restart(signal.SIGTERM)
    _collect_after_restart(pki, tls_broker, b"queued-sigterm")


@pytest.mark.broker_process("tue le broker (SIGKILL) et lit sa base de persistance")
def test_queued_alert_survives_broker_crash_after_autosave(pki: Pki, tls_broker: TlsBroker) -> None:
    pki.provision("btn-001")
    _queue_for_offline_dispatcher(pki, tls_broker, b"queued-sigkill")
    db = tls_broker.data_dir / "mosquitto.db"
    assert _eventually_contains(db, b"queued-sigkill"), "autosave never wrote the queued alert"
    tls_broker.restart(signal.SIGKILL)
    _collect_after_restart(pki, tls_broker, b"queued-sigkill")


def _eventually_contains(path: Path, needle: bytes, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_bytes():
            return True
        time.sleep(0.01)
    return False
