"""The dispatcher's bridge over mutual TLS (production broker config): a burst read at once.

Over TLS a read of the socket gives one TLS record (≤ 16 KiB): what paho has
not parsed yet waits in our buffer, where the loop's poll does not see it. The
burst of tests/support/burst.py must reach the bridge whole with no traffic
after it, as over plain TCP.
"""

from __future__ import annotations

import asyncio

from tests.broker_config.helpers import AnyBroker, Pki, connected, dispatcher_mqtt_settings
from tests.support.burst import burst, burst_reaches_the_bridge, publish_all
from tests.support.external_broker import ExternalBroker

DEVICE = "btn-tls-burst"


async def test_a_burst_over_tls_is_handed_over_whole_with_no_traffic_after(
    pki: Pki, tls_broker: AnyBroker
) -> None:
    await asyncio.to_thread(pki.provision, DEVICE)  # runs its own event loop
    ident = pki.dispatcher
    settings = dispatcher_mqtt_settings(tls_broker, ident)
    if isinstance(tls_broker, ExternalBroker):  # the bridge's session is persistent: end it after
        assert ident.cert is not None and ident.key is not None
        tls_broker.remember_session(ident.cert, ident.key, settings.client_id)

    def send() -> None:
        with connected(tls_broker, pki.device(DEVICE)) as device:
            publish_all(device.client, burst(DEVICE))

    # Mosquitto writes each packet as a TLS record of its own and a read of a TLS socket gives
    # one record: one read per packet remains (the buffer saves paho's two other reads of the
    # SSL object, not system calls).
    await burst_reaches_the_bridge(settings, DEVICE, send, packets_per_read=1)
