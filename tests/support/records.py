"""Stored alert records for tests of pure code (no store involved)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from dispatcher.store.base import AlertRecord

_PLAIN = AlertRecord(
    id="a-1",
    device_id="btn-1",
    kind="alert",
    seq=1,
    received_at=datetime(2026, 1, 1, tzinfo=UTC),
    gesture="hold",
    fix=None,
    state="notifying",
    escalation={"duress": False},
    context={},
    version=1,
)


def alert_record(**changes: Any) -> AlertRecord:
    """A desk button's plain alert (``a-1`` from ``btn-1``), with ``changes`` applied."""
    return replace(_PLAIN, **changes)
