"""The order in which claimed notifications are sent after a burst."""

from __future__ import annotations

from dispatcher.alerting.delivery import _first_of_each_alert_first
from dispatcher.store.base import NotificationRecord


def _row(nid: int, alert_id: str) -> NotificationRecord:
    return NotificationRecord(
        nid, alert_id, "c", "C", "+33639980100", "sms", "alert", 0, 0, "pending", None, None, 0
    )


def test_every_alert_gets_its_first_request_before_any_alert_gets_a_second() -> None:
    claimed = [_row(1, "a"), _row(2, "a"), _row(3, "a"), _row(4, "b"), _row(5, "b"), _row(6, "c")]
    order = [n.id for n in _first_of_each_alert_first(claimed)]
    assert order == [1, 4, 6, 2, 5, 3]  # within an alert, the planner's order is kept
