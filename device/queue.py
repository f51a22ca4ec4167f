"""Durable on-device outbox and sequence counter (SQLite, WAL, ``synchronous=FULL``).

An alert is committed here, with its sequence number and its signed bytes,
before anything else happens; it is re-sent byte for byte until the
dispatcher's ``received`` downlink names it. A broker PUBACK only proves the
broker has it. Rows stay a while after delivery so that later downlinks about
them (``acknowledged``...) are recognised, and so that a replayed downlink
about an alert we never sent is not.

All methods are thread-safe (one connection behind a lock); each write is
one short transaction, so holding the lock never waits on the network.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    pos          INTEGER PRIMARY KEY AUTOINCREMENT,  -- send order, oldest first
    event_id     TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,                      -- alert | test | cancel
    seq          INTEGER NOT NULL,
    topic        TEXT NOT NULL,
    payload      BLOB NOT NULL,                      -- the signed bytes, re-sent unchanged
    ref          TEXT,                               -- cancel: the alert it cancels
    created_ms   INTEGER NOT NULL,
    delivered_ms INTEGER,                            -- dispatcher said it has it
    closed_ms    INTEGER                             -- resolved / cancelled: no longer active
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (pos) WHERE delivered_ms IS NULL;
CREATE TABLE IF NOT EXISTS feedback_given (
    ref   TEXT NOT NULL,
    type  TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (ref, type)
);
"""

SEQ_COUNTER = "seq"


class OutboxError(Exception):
    """The outbox could not be read or written (full disk, I/O error, ...)."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One signed uplink waiting for (or past) the dispatcher's ``received``."""

    event_id: str
    kind: str
    seq: int
    topic: str
    payload: bytes
    created_ms: int
    ref: str | None = None
    delivered: bool = False
    closed: bool = False


@dataclass(frozen=True, slots=True)
class NewItem:
    """What the caller builds once the sequence number is known."""

    event_id: str
    topic: str
    payload: bytes
    ref: str | None = None


def _fsync_directory(path: Path) -> None:
    # A freshly created database file is only durable once its directory entry is.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Outbox:
    """The SQLite-backed store; open with :meth:`open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, state_dir: Path) -> Outbox:
        """Open (creating if needed) ``state_dir/outbox.sqlite3``."""
        path = state_dir / "outbox.sqlite3"
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            _fsync_directory(state_dir)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open outbox in {state_dir}: {exc}") from exc
        return cls(conn, path)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(self._conn)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                raise OutboxError(str(exc)) from exc

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return work(self._conn)
            except sqlite3.Error as exc:
                raise OutboxError(str(exc)) from exc

    @staticmethod
    def _bump_seq(conn: sqlite3.Connection, at_least: int = 0) -> int:
        row = conn.execute("SELECT value FROM counters WHERE name = ?", (SEQ_COUNTER,)).fetchone()
        seq = max(0 if row is None else row[0] + 1, at_least)
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (SEQ_COUNTER, seq),
        )
        return seq

    def next_seq(self, *, at_least: int = 0) -> int:
        """Allocate and persist the next sequence number (never below ``at_least``)."""
        return self._write(lambda conn: self._bump_seq(conn, at_least))

    def last_seq(self) -> int | None:
        """The last allocated sequence number, or None before the first."""
        row = self._read(
            lambda conn: conn.execute("SELECT value FROM counters WHERE name = ?", (SEQ_COUNTER,)).fetchone()
        )
        return None if row is None else int(row[0])

    def enqueue(
        self, kind: str, build: Callable[[int], NewItem], *, now_ms: int, seq_at_least: int = 0
    ) -> OutboxItem:
        """Allocate a sequence number, build the signed message with it and commit both at once."""

        def work(conn: sqlite3.Connection) -> OutboxItem:
            seq = self._bump_seq(conn, seq_at_least)
            item = build(seq)
            conn.execute(
                "INSERT INTO outbox (event_id, kind, seq, topic, payload, ref, created_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (item.event_id, kind, seq, item.topic, item.payload, item.ref, now_ms),
            )
            return OutboxItem(item.event_id, kind, seq, item.topic, item.payload, now_ms, item.ref)

        return self._write(work)

    _COLUMNS = (
        "event_id, kind, seq, topic, payload, created_ms, ref, "
        "delivered_ms IS NOT NULL, closed_ms IS NOT NULL"
    )

    @staticmethod
    def _item(row: Any) -> OutboxItem:
        event_id, kind, seq, topic, payload, created_ms, ref, delivered, closed = row
        return OutboxItem(
            event_id, kind, seq, topic, bytes(payload), created_ms, ref, bool(delivered), bool(closed)
        )

    def pending(self) -> list[OutboxItem]:
        """Messages the dispatcher has not confirmed, oldest first."""
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT {self._COLUMNS} FROM outbox WHERE delivered_ms IS NULL ORDER BY pos"
            ).fetchall()
        )
        return [self._item(row) for row in rows]

    def get(self, event_id: str) -> OutboxItem | None:
        """The row for ``event_id`` (delivered or not), if still kept."""
        row = self._read(
            lambda conn: conn.execute(
                f"SELECT {self._COLUMNS} FROM outbox WHERE event_id = ?", (event_id,)
            ).fetchone()
        )
        return None if row is None else self._item(row)

    def latest_active_alert(self, *, since_ms: int = 0) -> OutboxItem | None:
        """The most recent alert (created since ``since_ms``) not resolved, cancelled or being cancelled."""
        row = self._read(
            lambda conn: conn.execute(
                f"SELECT {self._COLUMNS} FROM outbox WHERE kind = 'alert' AND closed_ms IS NULL "
                "AND created_ms >= ? ORDER BY pos DESC LIMIT 1",
                (since_ms,),
            ).fetchone()
        )
        return None if row is None else self._item(row)

    def active_alerts(self, *, since_ms: int = 0, limit: int = 3) -> list[OutboxItem]:
        """The ``limit`` most recent alerts (created since ``since_ms``) still open, oldest first."""
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT {self._COLUMNS} FROM outbox WHERE kind = 'alert' AND closed_ms IS NULL "
                "AND created_ms >= ? ORDER BY pos DESC LIMIT ?",
                (since_ms, limit),
            ).fetchall()
        )
        return [self._item(row) for row in reversed(rows)]

    def mark_delivered(self, event_id: str, now_ms: int) -> bool:
        """Record the dispatcher's confirmation; True if the row was still pending."""
        return self._write(
            lambda conn: (
                conn.execute(
                    "UPDATE outbox SET delivered_ms = ? WHERE event_id = ? AND delivered_ms IS NULL",
                    (now_ms, event_id),
                ).rowcount
                > 0
            )
        )

    def mark_closed(self, event_id: str, now_ms: int) -> None:
        """The alert is over (resolved, cancelled, or a cancel was sent for it)."""
        self._write(
            lambda conn: conn.execute(
                "UPDATE outbox SET closed_ms = ? WHERE event_id = ? AND closed_ms IS NULL", (now_ms, event_id)
            )
        )

    def mark_open(self, event_id: str) -> None:
        """The alert is active again (the dispatcher refused its cancel)."""
        self._write(
            lambda conn: conn.execute("UPDATE outbox SET closed_ms = NULL WHERE event_id = ?", (event_id,))
        )

    def has_feedback(self, ref: str, kind: str) -> bool:
        """True if feedback ``kind`` was already given for ``ref``."""
        row = self._read(
            lambda conn: conn.execute(
                "SELECT 1 FROM feedback_given WHERE ref = ? AND type = ?", (ref, kind)
            ).fetchone()
        )
        return row is not None

    def cancels_for(self, alert_id: str) -> list[OutboxItem]:
        """Pending cancel messages that target ``alert_id``."""
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT {self._COLUMNS} FROM outbox WHERE kind = 'cancel' AND ref = ? "
                "AND delivered_ms IS NULL ORDER BY pos",
                (alert_id,),
            ).fetchall()
        )
        return [self._item(row) for row in rows]

    def first_feedback(self, ref: str, kind: str, now_ms: int) -> bool:
        """Record that feedback ``kind`` was given for ``ref``; False if it already was."""
        return self._write(
            lambda conn: (
                conn.execute(
                    "INSERT OR IGNORE INTO feedback_given (ref, type, at_ms) VALUES (?, ?, ?)",
                    (ref, kind, now_ms),
                ).rowcount
                > 0
            )
        )

    def purge(self, older_than_ms: int) -> int:
        """Forget delivered rows created before ``older_than_ms``; return how many.

        Undelivered rows are never dropped: an alert is re-sent until confirmed.
        """

        def work(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(
                "DELETE FROM outbox WHERE created_ms < ? AND delivered_ms IS NOT NULL", (older_than_ms,)
            ).rowcount
            conn.execute("DELETE FROM feedback_given WHERE at_ms < ?", (older_than_ms,))
            return deleted

        return self._write(work)
