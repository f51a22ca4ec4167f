"""What the broker must keep for an offline dispatcher, and the limits it enforces.

Broker behaviour only (no dispatcher process): these run unchanged against an
external broker (``VIGIE_TEST_BROKER``), where the defaults of other engines
differ from ours — EMQX and VerneMQ both drop QoS 1 messages for an offline
session past 1,000 queued by default, and neither cuts a large packet unless
told to.
"""

from __future__ import annotations

import pytest

from protocol.topics import UplinkKind, shared_uplink_filter, uplink_topic
from tests.broker_config.helpers import AnyBroker, Pki, connected

# Past the 1,000-message default queue of EMQX (mqueue max_len) and VerneMQ (max_offline_messages).
BURST = 1500
# A signed alert with its location is well under 1 KiB; 600 bytes makes the burst ~1 MB.
ALERT_SIZE = 600
MAX_PACKET = 8192


def _go_offline_subscribed(pki: Pki, broker: AnyBroker, *, mqtt311: bool = False) -> None:
    """The dispatcher joins the share group with a persistent session, then goes away."""
    with connected(
        broker, pki.dispatcher, clean_start=False, session_expiry=3600, mqtt311=mqtt311
    ) as dispatcher:
        dispatcher.subscribe(shared_uplink_filter())


# The dispatcher's session is MQTT 3.1.1 by default (its expiry the broker's), 5 when configured so.
@pytest.mark.parametrize("mqtt311", [True, False], ids=["mqtt-3.1.1", "mqtt-5"])
def test_alert_sent_while_the_dispatcher_is_offline_reaches_it_when_it_reconnects(
    pki: Pki, tls_broker: AnyBroker, mqtt311: bool
) -> None:
    pki.provision("btn-001")
    _go_offline_subscribed(pki, tls_broker, mqtt311=mqtt311)
    with connected(tls_broker, pki.device("btn-001")) as dev:
        dev.publish(uplink_topic("btn-001", UplinkKind.ALERT), b"while-offline")  # PUBACKed by the broker
    with connected(
        tls_broker, pki.dispatcher, clean_start=False, session_expiry=3600, mqtt311=mqtt311
    ) as dispatcher:
        got = dispatcher.wait_for(lambda m: any(x.payload == b"while-offline" for x in m))
        assert [m.topic for m in got] == [uplink_topic("btn-001", UplinkKind.ALERT)]
        assert got[0].qos == 1


@pytest.mark.parametrize("mqtt311", [True, False], ids=["mqtt-3.1.1", "mqtt-5"])
def test_a_burst_for_an_offline_dispatcher_is_kept_whole_and_in_order(
    pki: Pki, tls_broker: AnyBroker, mqtt311: bool
) -> None:
    pki.provision("btn-001")
    _go_offline_subscribed(pki, tls_broker, mqtt311=mqtt311)
    payloads = [f"{n:05d}".encode().ljust(ALERT_SIZE, b".") for n in range(BURST)]
    with connected(tls_broker, pki.device("btn-001")) as dev:
        sent = [dev.client.publish(uplink_topic("btn-001", UplinkKind.ALERT), p, qos=1) for p in payloads]
        for info in sent:
            info.wait_for_publish(30)
            assert info.is_published()  # the broker took responsibility for every one
    with connected(
        tls_broker, pki.dispatcher, clean_start=False, session_expiry=3600, mqtt311=mqtt311
    ) as dispatcher:
        got = dispatcher.wait_for(lambda m: len(m) >= BURST, timeout=60)
    assert [m.payload for m in got] == payloads  # none dropped, none reordered


def test_a_packet_over_8_kib_cuts_the_client_and_one_under_passes(pki: Pki, tls_broker: AnyBroker) -> None:
    pki.provision("btn-big")
    with connected(tls_broker, pki.dispatcher) as dispatcher:
        dispatcher.subscribe(shared_uplink_filter())
        with connected(tls_broker, pki.device("btn-big")) as big:
            big.publish(uplink_topic("btn-big", UplinkKind.ALERT), b"s" * 4096)  # MAX_PAYLOAD_BYTES
            dispatcher.wait_for(lambda m: len(m) == 1)
            big.client.publish(uplink_topic("btn-big", UplinkKind.ALERT), b"x" * (MAX_PACKET + 1), qos=1)
            assert big.disconnected.wait(10), "the broker kept a client sending a packet over 8 KiB"
        with connected(tls_broker, pki.device("btn-big")) as again:
            again.publish(uplink_topic("btn-big", UplinkKind.ALERT), b"after")
            got = dispatcher.wait_for(lambda m: any(x.payload == b"after" for x in m))
        assert [len(m.payload) for m in got] == [4096, len(b"after")]  # the big one never arrived
