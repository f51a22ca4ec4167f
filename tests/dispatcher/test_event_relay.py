"""Console events relayed between instances over a real PostgreSQL's LISTEN/NOTIFY.

Two relays, each with its own bus, stand for two dispatcher instances on one
database; the instances themselves, with consoles open on both, are in
tests/scaleout/test_console_instances.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.event_relay import CHANNEL, PostgresEventRelay, decode_events, encode_events
from dispatcher.events import RESYNC_EVENT, Compactor, EventBus
from dispatcher.metrics import Metrics
from dispatcher.web.console.coalesce import coalesce
from tests.support import postgres as _pg

postgres_cluster = _pg.postgres_cluster
postgres_url = _pg.postgres_url

WITHIN_S = 10.0  # a safety net on a loaded machine, not a goal


@asynccontextmanager
async def relayed(
    dsn: str, *, compact: Compactor | None = None
) -> AsyncIterator[tuple[EventBus, PostgresEventRelay, Metrics]]:
    bus, metrics = EventBus(), Metrics()
    relay = PostgresEventRelay(dsn, bus=bus, metrics=metrics, compact=compact, reconnect_s=0.2)
    bus.relay_to(relay.send)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.connected.wait(), WITHIN_S)
        yield bus, relay, metrics
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def next_event(queue: asyncio.Queue[dict[str, Any]], kind: str | None = None) -> dict[str, Any]:
    """The next event of ``kind`` (any kind if None), skipping the resyncs of a (re)connection."""
    while True:
        event = await asyncio.wait_for(queue.get(), WITHIN_S)
        if kind is not None and event["kind"] == kind:
            return event
        if kind is None and event["kind"] != RESYNC_EVENT:
            return event


def only_resyncs_left(queue: asyncio.Queue[dict[str, Any]]) -> bool:
    """Nothing but resyncs waiting: no event arrived twice or unasked."""
    return all(queue.get_nowait()["kind"] == RESYNC_EVENT for _ in range(queue.qsize()))


async def test_an_event_published_on_one_instance_reaches_the_others_once_in_order(postgres_url: str) -> None:
    async with relayed(postgres_url) as (a, _, _), relayed(postgres_url) as (b, _, b_metrics):
        async with a.subscribe() as on_a, b.subscribe() as on_b:
            for n in range(50):
                a.publish("alert", alert_id=f"al-{n}", version=1)
            received = [await next_event(on_b) for _ in range(50)]
            assert [e["alert_id"] for e in received] == [f"al-{n}" for n in range(50)]
            # A's own consoles got each event once, from its bus: not again through the channel.
            b.publish("visit", visit_id="v-1")
            mine = [await next_event(on_a) for _ in range(51)]
            assert [e.get("alert_id") for e in mine[:50]] == [f"al-{n}" for n in range(50)]
            assert mine[50] == {"kind": "visit", "visit_id": "v-1"}
            assert only_resyncs_left(on_a)  # B's start resync may arrive at any time
        # A's own start resync crosses too when B listened within A's first 50-ms gathering.
        assert 50 <= b_metrics.event_relay.labels("received")._value.get() <= 51


async def test_an_alerts_many_events_cross_as_one_saying_as_much(postgres_url: str) -> None:
    """Compacted as a console's queue is: one per alert, its last version, an alarm kept."""
    async with (
        relayed(postgres_url, compact=lambda e: coalesce(e, RESYNC_EVENT)) as (a, _, a_metrics),
        relayed(postgres_url) as (b, _, _),
        b.subscribe() as on_b,
    ):
        for version in range(1, 11):
            a.publish("alert", alert_id="al-1", version=version)
            a.publish("notification", alert_id="al-2", id=f"n-{version}", outcome="accepted")
        a.publish("operator_alarm", alert_id="al-1", reason="contrainte", version=11)
        a.publish("alert", alert_id="al-1", version=12)
        received = [await next_event(on_b), await next_event(on_b)]
        assert received == [
            {"kind": "operator_alarm", "alert_id": "al-1", "reason": "contrainte", "version": 12},
            {"kind": "notification", "alert_id": "al-2", "id": "n-10", "outcome": "accepted"},
        ]
        assert a_metrics.event_relay.labels("sent")._value.get() == 3  # with its start resync


async def test_an_instance_starting_has_the_others_consoles_re_read(postgres_url: str) -> None:
    """What it published before it listened (its start's recovery) never reached them."""
    async with relayed(postgres_url) as (a, _, _), a.subscribe() as on_a, relayed(postgres_url):
        assert (await next_event(on_a, RESYNC_EVENT))["kind"] == RESYNC_EVENT


async def settled(
    a: EventBus, on_a: asyncio.Queue[dict[str, Any]], b: EventBus, on_b: asyncio.Queue[dict[str, Any]]
) -> None:
    """Each side's start resync delivered and dropped: a marker published after it crossed."""
    a.publish("visit", visit_id="marker-a")
    b.publish("visit", visit_id="marker-b")
    await next_event(on_b, "visit")  # B's own marker, from its bus
    await next_event(on_b, "visit")  # A's, after A's start resync (NOTIFY keeps the order)
    await next_event(on_a, "visit")
    await next_event(on_a, "visit")
    assert only_resyncs_left(on_a) and only_resyncs_left(on_b)


async def test_a_lost_connection_makes_every_console_re_read_and_the_relay_comes_back(
    postgres_url: str,
) -> None:
    db = await asyncpg.connect(postgres_url)
    try:
        async with (
            relayed(postgres_url) as (a, _, _),
            relayed(postgres_url) as (b, b_relay, b_metrics),
            a.subscribe() as on_a,
            b.subscribe() as on_b,
        ):
            await settled(a, on_a, b, on_b)  # the starts' resyncs are behind us
            killed = await db.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'vigie-events' AND pid = $1",
                b_relay._own_pid,
            )
            assert killed
            # B may have missed A's events while it was away: its consoles re-read...
            assert (await next_event(on_b, RESYNC_EVENT))["kind"] == RESYNC_EVENT
            # ...and A's consoles, which missed B's, are told to re-read too.
            assert (await next_event(on_a, RESYNC_EVENT))["kind"] == RESYNC_EVENT
            a.publish("alert", alert_id="after", version=3)
            assert await next_event(on_b) == {"kind": "alert", "alert_id": "after", "version": 3}
            assert b_metrics.event_relay.labels("connection_lost")._value.get() == 1
    finally:
        await db.close()


async def test_a_foreign_payload_on_the_channel_is_refused_and_the_relay_goes_on(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = await asyncpg.connect(postgres_url)
    try:
        async with (
            relayed(postgres_url) as (a, _, _),
            relayed(postgres_url) as (b, _, b_metrics),
            b.subscribe() as on_b,
        ):
            for hostile in ("not json", '{"kind": "alert"}', '[{"alert_id": "x"}]', "[1]"):
                await db.execute("SELECT pg_notify($1, $2)", CHANNEL, hostile)
            a.publish("alert", alert_id="real", version=1)
            assert await next_event(on_b) == {"kind": "alert", "alert_id": "real", "version": 1}
            assert only_resyncs_left(on_b)
        assert b_metrics.event_relay.labels("refused")._value.get() == 4
        assert "message refusé sur le canal vigie_events" in caplog.text
    finally:
        await db.close()


EVENTS = st.lists(
    st.fixed_dictionaries(
        {"kind": st.sampled_from(["alert", "visit", "notification"])},
        optional={"alert_id": st.text(max_size=40), "version": st.integers(0, 10**6)},
    ),
    max_size=300,
)


@given(EVENTS)
def test_every_payload_fits_a_notify_and_they_give_back_the_events_in_order(
    events: list[dict[str, Any]],
) -> None:
    payloads = list(encode_events(events, limit=500))
    assert all(len(p.encode()) <= 500 for p in payloads)
    assert [e for p in payloads for e in decode_events(p)] == events


def test_an_event_too_long_for_a_notify_becomes_a_resync() -> None:
    payloads = list(encode_events([{"kind": "alert", "alert_id": "x" * 600}, {"kind": "visit"}], limit=500))
    assert [e for p in payloads for e in decode_events(p)] == [{"kind": RESYNC_EVENT}, {"kind": "visit"}]
    assert json.loads(payloads[0])[0]["kind"] == RESYNC_EVENT


class _Retries(logging.Handler):
    """The relay's retry warnings; ``enough`` is set once ``wanted`` of them were logged."""

    def __init__(self, wanted: int) -> None:
        super().__init__(logging.WARNING)
        self.waits: list[str] = []
        self.wanted = wanted
        self.enough = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:  # on the loop's thread: the relay logs there
        message = record.getMessage()
        if "nouvel essai dans " in message:
            self.waits.append(message.rsplit("dans ", 1)[1])
            if len(self.waits) >= self.wanted:
                self.enough.set()


async def test_while_postgresql_is_out_of_reach_the_retries_back_off() -> None:
    """One warning per attempt, each wait twice the last: no log flood during a long outage."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = Metrics()
    relay = PostgresEventRelay(
        f"postgresql://vigie@127.0.0.1:{port}/none", bus=EventBus(), metrics=metrics, reconnect_s=0.01
    )
    retries = _Retries(4)
    logger = logging.getLogger("dispatcher.event_relay")
    logger.addHandler(retries)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(retries.enough.wait(), WITHIN_S)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        logger.removeHandler(retries)
    assert retries.waits[:4] == ["0.01 s", "0.02 s", "0.04 s", "0.08 s"]
    assert metrics.event_relay.labels("connection_lost")._value.get() >= 4
