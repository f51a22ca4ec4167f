"""The reconciliation against the real parts: SQLite store, the sandbox provider, the unmodified library.

The rows are put in the state a crash leaves them in through the store's own
methods (claimed, then marked 'unknown' by recovery, as ``Engine.recover``
does); what the provider got is created at the sandbox through the ``twilio``
library, as the dead dispatcher would have.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker_config.runner import free_port
from dispatcher.alerting.notifier import TwilioNotifier
from dispatcher.alerting.reconciler import RESENT, Reconciler
from dispatcher.events import EventBus
from dispatcher.settings import TwilioSettings
from dispatcher.store.base import NotificationRecord, Store
from dispatcher.store.sqlite import SqliteStore
from sandbox.twilio_resources import NumberBehaviour
from sandbox.twilio_server import TwilioSandbox
from tests.store.test_conformance import first, new_alert, seed, spec, window

FROM = "+33465710199"


@dataclass
class Rig:
    store: Store
    sandbox: TwilioSandbox
    notifier: TwilioNotifier
    reconciler: Reconciler
    failed: list[NotificationRecord]
    kicks: list[int]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = await SqliteStore.open(tmp_path / "vigie.db")
    sandbox = TwilioSandbox(port=free_port())
    await sandbox.start()
    notifier = TwilioNotifier(
        settings=TwilioSettings(
            account_sid=sandbox.account_sid,
            auth_token=sandbox.auth_token,
            from_number=FROM,
            api_base_url=sandbox.base_url,
            public_base_url="http://127.0.0.1:9",
        )
    )
    failed: list[NotificationRecord] = []
    kicks: list[int] = []

    async def on_failed(n: NotificationRecord) -> None:
        failed.append(n)

    reconciler = Reconciler(
        store=store,
        provider=notifier,
        bus=EventBus(),
        on_failed=on_failed,
        kick=lambda: kicks.append(1),
        settle_s=0.0,
        stuck_after_s=0.0,
        interval_s=1.0,
    )
    try:
        yield Rig(store, sandbox, notifier, reconciler, failed, kicks)
    finally:
        await notifier.aclose()
        await sandbox.stop()
        await store.close()


async def crashed_alert(store: Store, *specs_: object) -> list[NotificationRecord]:
    """An alert whose notifications were claimed by a process that died, as recovery marks them."""
    await seed(store)
    await store.insert_alerts([(new_alert("a-1"), window(1), first("a-1", *specs_))])  # type: ignore[arg-type]
    await store.claim_notifications("dead", now=1000.0)
    rows = await store.notifications_for("a-1")
    for n in rows:
        await store.record_notification(n.id, status="unknown", error="dispatcher arrêté pendant l'envoi")
    return rows


async def by_id(store: Store) -> dict[int, NotificationRecord]:
    return {n.id: n for n in await store.notifications_for("a-1")}


async def test_a_request_the_provider_got_is_adopted_and_a_lost_one_is_sent_again(rig: Rig) -> None:
    reached, lost = await crashed_alert(rig.store, spec("chef"), spec("officier", "voice"))
    # The dead dispatcher's first request reached the provider; the second never left.
    account = rig.notifier._account  # the same unmodified client the dispatcher uses
    message = await account.messages.create_async(to=reached.phone, from_=FROM, body="ALERTE VIGIE")
    await rig.sandbox.wait_for(lambda: rig.sandbox.messages[message.sid].status == "delivered")

    assert await rig.reconciler.reconcile_once() == 2
    rows = await by_id(rig.store)
    assert (rows[reached.id].status, rows[reached.id].provider_sid) == ("delivered", message.sid)
    assert (rows[lost.id].status, rows[lost.id].error) == ("pending", RESENT)  # delivery sends it
    assert rig.kicks and not rig.failed
    assert {r.kind for r in rig.sandbox.requests} >= {"list-message", "list-call"}
    assert await rig.reconciler.reconcile_once() == 0  # settled once


async def test_two_lost_requests_to_one_number_are_both_sent_again_and_the_record_nobody_s(
    rig: Rig,
) -> None:
    first_round, second_round = await crashed_alert(rig.store, spec("chef"), spec("chef", round=1))
    account = rig.notifier._account
    # One of the two reached the provider; nothing says which: adopting it could
    # mark the other one as sent although it never left.
    message = await account.messages.create_async(to=first_round.phone, from_=FROM, body="ALERTE")
    assert await rig.reconciler.reconcile_once() == 2
    rows = await by_id(rig.store)
    assert [(rows[n.id].status, rows[n.id].provider_sid) for n in (first_round, second_round)] == [
        ("pending", None),
        ("pending", None),
    ]  # both sent again: the contact gets each at least once
    assert await rig.store.disowned_provider_records([message.sid]) == {message.sid}

    # A later crash leaves a single lost row to the same number: the disowned record is not its own.
    await rig.store.record_notification(first_round.id, status="delivered", provider_sid="SM" + "1" * 32)
    await rig.store.record_notification(second_round.id, status="unknown", error="dispatcher died again")
    assert await rig.reconciler.reconcile_once() == 1
    assert (await by_id(rig.store))[second_round.id].status == "pending"


async def test_a_lost_row_does_not_adopt_the_record_of_a_request_still_in_flight(rig: Rig) -> None:
    lost, in_flight = await crashed_alert(rig.store, spec("chef"), spec("chef", round=1))
    await rig.store.record_notification(in_flight.id, status="sending")  # another instance's send, under way
    message = await rig.notifier._account.messages.create_async(to=lost.phone, from_=FROM, body="ALERTE")
    assert await rig.reconciler.reconcile_once() == 1
    rows = await by_id(rig.store)
    assert rows[lost.id].status == "pending" and rows[lost.id].provider_sid is None
    # The in-flight send stores its own SID as usual.
    await rig.store.record_notification(in_flight.id, status="queued", provider_sid=message.sid)
    assert (await by_id(rig.store))[in_flight.id].provider_sid == message.sid


async def test_a_stuck_status_takes_the_providers_final_one_and_failures_reach_the_escalation(
    rig: Rig,
) -> None:
    cic = spec("cic", "voice")
    rig.sandbox.set_number(cic.phone, NumberBehaviour(call_status="busy"))
    [row] = await crashed_alert(rig.store, cic)
    call = await rig.notifier._account.calls.create_async(
        to=row.phone, from_=FROM, twiml="<Response><Say>x</Say></Response>"
    )
    # The callbacks went to a dead dispatcher: the row kept the status of the send.
    assert await rig.store.settle_notification(
        row.id, expected="unknown", status="queued", provider_sid=call.sid
    )
    await rig.sandbox.wait_for(lambda: rig.sandbox.calls[call.sid].final, within=10)
    assert await rig.reconciler.reconcile_once() == 1
    assert (await by_id(rig.store))[row.id].status == "busy"
    assert [n.id for n in rig.failed] == [row.id]  # a busy contact is an answer: the escalation hears it


async def test_an_unreachable_provider_leaves_rows_for_the_next_pass(rig: Rig) -> None:
    [row] = await crashed_alert(rig.store, spec("chef"))
    await rig.sandbox.stop()
    assert await rig.reconciler.reconcile_once() == 0
    assert (await by_id(rig.store))[row.id].status == "unknown"  # still to reconcile, not given up
    await asyncio.sleep(0)
