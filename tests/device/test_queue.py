"""The durable outbox: ordering, sequence counter and confirmations survive reopening."""

from __future__ import annotations

from pathlib import Path

from device.queue import NewItem, Outbox


def add(outbox: Outbox, kind: str, name: str, now_ms: int, ref: str | None = None) -> int:
    item = outbox.enqueue(
        kind, lambda seq: NewItem(name, f"t/{kind}", f"{name}:{seq}".encode(), ref=ref), now_ms=now_ms
    )
    return item.seq


def test_items_and_sequence_survive_reopen_in_order(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path / "state")
    assert add(outbox, "alert", "a-1", 1000) == 0
    assert outbox.next_seq() == 1  # a heartbeat
    assert add(outbox, "alert", "a-2", 2000) == 2
    outbox.close()

    reopened = Outbox.open(tmp_path / "state")
    pending = reopened.pending()
    assert [(p.event_id, p.seq, p.payload) for p in pending] == [("a-1", 0, b"a-1:0"), ("a-2", 2, b"a-2:2")]
    assert reopened.last_seq() == 2
    assert reopened.next_seq(at_least=10) == 10
    assert add(reopened, "test", "t-1", 3000) == 11


def test_delivery_close_and_latest_active_alert(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path)
    add(outbox, "alert", "a-1", 1000)
    add(outbox, "alert", "a-2", 2000)
    assert outbox.mark_delivered("a-2", 2500)
    assert not outbox.mark_delivered("a-2", 2600)
    assert [p.event_id for p in outbox.pending()] == ["a-1"]
    latest = outbox.latest_active_alert()
    assert latest is not None and latest.event_id == "a-2" and latest.delivered
    add(outbox, "cancel", "c-1", 3000, ref="a-2")
    outbox.mark_closed("a-2", 3000)
    latest = outbox.latest_active_alert()
    assert latest is not None and latest.event_id == "a-1"
    assert outbox.latest_active_alert(since_ms=1500) is None
    assert [c.event_id for c in outbox.cancels_for("a-2")] == ["c-1"]


def test_feedback_is_recorded_once_and_purge_keeps_undelivered(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path)
    add(outbox, "alert", "old-delivered", 1000)
    add(outbox, "alert", "old-pending", 1000)
    outbox.mark_delivered("old-delivered", 1100)
    assert outbox.first_feedback("old-delivered", "received", 1100)
    assert not outbox.first_feedback("old-delivered", "received", 1200)
    assert outbox.purge(older_than_ms=5000) == 1
    assert outbox.get("old-delivered") is None
    assert outbox.get("old-pending") is not None


def test_wal_and_full_sync_are_on(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path)
    conn = outbox._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
