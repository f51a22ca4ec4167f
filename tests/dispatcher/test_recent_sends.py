"""The sends a status callback is matched against: the very notification, at no cost to the collector."""

from __future__ import annotations

import gc

from dispatcher.alerting.recent_sends import RecentSends
from dispatcher.store.base import NotificationRecord


def sent(n: int, **changes: object) -> NotificationRecord:
    fields: dict[str, object] = {
        "id": n,
        "alert_id": f"a-{n // 3}",
        "contact_id": "chef-de-poste",
        "contact_name": "Chef de poste (permanence 24/7)",
        "phone": "+33639980101",
        "channel": "sms" if n % 2 else "voice",
        "purpose": "alert",
        "tier": 1,
        "round": 0,
        "status": "sending",
        "provider_sid": None,
        "error": None,
        "attempts": 1,
        "duress": n % 5 == 0,
        "actor": None,
    }
    return NotificationRecord(**(fields | changes))  # type: ignore[arg-type]


def test_a_callback_finds_the_very_notification_sent_under_its_sid_duress_included() -> None:
    recent = RecentSends()
    records = {f"SM{n:032x}": sent(n, actor="Officier de quart" if n == 7 else None) for n in range(50)}
    for sid, n in records.items():
        recent.remember(sid, n)
    assert all(recent.get(sid) == n for sid, n in records.items())
    assert recent.get("SMunknown") is None


def test_the_oldest_sends_are_forgotten_first() -> None:
    recent = RecentSends(size=3)
    for n in range(5):
        recent.remember(f"SM{n}", sent(n))
    assert len(recent) == 3
    assert recent.get("SM0") is None and recent.get("SM1") is None
    assert recent.get("SM4") == sent(4)


def test_remembered_sends_are_not_walked_by_the_garbage_collector() -> None:
    # Each full collection walks every tracked object with the event loop stopped: 10,000
    # NotificationRecords remembered were 10,000 objects in every pass (docs/performance.md).
    recent = RecentSends()
    gc.collect()
    before = len(gc.get_objects())
    for n in range(5_000):
        recent.remember(f"SM{n:032x}", sent(n))
    gc.collect()
    per_send = (len(gc.get_objects()) - before) / 5_000
    assert per_send < 0.1, f"{per_send:.2f} tracked objects per remembered send"
