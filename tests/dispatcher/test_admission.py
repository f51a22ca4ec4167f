"""Admission (per-device fair queues) and the sampled rejection log, without a broker."""

from __future__ import annotations

import logging

import pytest

from dispatcher.alerting.admission import COALESCED, Admission, AdmissionPolicy, device_of
from dispatcher.alerting.mqtt import Inbound
from dispatcher.alerting.rejectlog import RejectionLog
from dispatcher.fleet.floodwatch import FloodPolicy, FloodWatch
from protocol.codec import RejectReason


def message(device: str, n: int = 0, size: int = 10) -> Inbound:
    """The ``n``-th distinct message of ``device`` (same ``n``: the same bytes, i.e. a re-send)."""
    return Inbound(f"vigie/v1/dev/{device}/up/alert", str(n).encode().ljust(size, b"x"), n, 1, 0.0)


async def test_batches_take_one_message_per_device_per_turn() -> None:
    admission = Admission(AdmissionPolicy(per_device=100, burst=100))
    for n in range(50):
        assert admission.offer(message("flood", n), "flood") is None
    assert admission.offer(message("calm"), "calm") is None
    first = await admission.take(2)
    assert [device_of(m.topic) for m in first] == ["flood", "calm"]  # not behind 49 flood messages
    assert admission.queued == 49


async def test_a_device_is_bounded_by_its_bucket_and_its_queue() -> None:
    admission = Admission(AdmissionPolicy(per_device=3, burst=5, rate_per_s=0.001))
    verdicts = [admission.offer(message("flood", n), "flood") for n in range(5)]
    # A full queue refuses without spending the device's tokens.
    assert verdicts == [None, None, None, RejectReason.QUEUE_FULL, RejectReason.QUEUE_FULL]
    await admission.take(3)
    verdicts = [admission.offer(message("flood", n), "flood") for n in range(5, 8)]
    assert verdicts == [None, None, RejectReason.RATE_LIMITED]  # 5 tokens: 3 spent, 2 left
    assert admission.offer(message("calm"), "calm") is None  # others keep their own budget
    assert admission.offer(message("big", size=5000), "big") is RejectReason.TOO_LARGE


def test_copies_of_a_waiting_message_are_coalesced_without_using_the_budget() -> None:
    """After an outage the broker delivers every re-send at once: one copy waits, the rest are acked."""
    admission = Admission(AdmissionPolicy(per_device=3, burst=2, rate_per_s=0.001))
    assert admission.offer(message("btn", 1), "btn") is None
    assert [admission.offer(message("btn", 1), "btn") for _ in range(100)] == [COALESCED] * 100
    assert admission.queued == 1
    assert admission.offer(message("btn", 2), "btn") is None  # a new message still has its token


def test_qos0_copies_are_queued_and_charged_like_any_message() -> None:
    """The broker never re-sends a QoS 0 message (heartbeats, positions): copies are not coalesced, so
    the bucket bounds a device repeating one heartbeat, and the ingest refuses the copies as replays."""
    admission = Admission(AdmissionPolicy(per_device=10, burst=3, rate_per_s=0.001))
    beat = Inbound("vigie/v1/dev/btn/up/heartbeat", b"same bytes", 0, 0, 0.0)
    assert [admission.offer(beat, "btn", urgent=False) for _ in range(4)] == [None] * 3 + [
        RejectReason.RATE_LIMITED
    ]
    assert admission.queued == 3


async def test_re_sends_of_a_vouched_alert_are_never_rate_limited() -> None:
    admission = Admission(AdmissionPolicy(per_device=3, burst=1, rate_per_s=0.001))
    alert = message("btn", 1)
    assert admission.offer(alert, "btn") is None
    await admission.take(1)
    admission.vouch("btn", alert.payload)  # the ingest stored it; the 'received' got lost
    for _ in range(20):  # the device keeps re-sending until 'received'
        assert admission.offer(message("btn", 1), "btn") is None
        await admission.take(1)
    assert admission.offer(message("btn", 2), "btn") is RejectReason.RATE_LIMITED  # its budget is spent
    assert admission.offer(message("btn", 1), "btn") is None


def test_all_queues_together_are_bounded() -> None:
    admission = Admission(AdmissionPolicy(per_device=10, max_total=4))
    verdicts = [admission.offer(message(f"d{n}"), f"d{n}") for n in range(6)]
    assert verdicts.count(None) == 4 and admission.queued == 4


def test_device_of_reads_the_topic_without_validating_it() -> None:
    assert device_of("vigie/v1/dev/btn-1/up/alert") == "btn-1"
    assert device_of("other/topic") == ""


def test_rejections_are_logged_and_stored_once_per_device_and_reason_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = RejectionLog(interval_s=10, clock=lambda: now[0])
    caplog.set_level(logging.WARNING)
    firsts = [log.note("flood", "t", "bad_signature", "d") for _ in range(1000)]
    assert firsts.count(True) == 1
    assert log.note("calm", "t", "bad_signature", "d")  # another device: its own first
    assert [r[0] for r in log.drain()] == ["flood", "calm"]
    now[0] = 10.5
    summary = log.drain()
    assert summary == [
        (
            "flood",
            "t",
            "bad_signature",
            "999 de plus ces 10 dernières secondes (journalisé une fois par intervalle)",
        )
    ]
    assert len(caplog.records) == 3


# -- flood detection (dispatcher/fleet/floodwatch.py): when to quarantine a device at the broker


def test_a_device_is_reported_once_past_the_threshold_within_a_window() -> None:
    watch = FloodWatch(FloodPolicy(threshold=100, window_s=1.0))
    reported = [watch.refused("flood", n / 1000) for n in range(300)]  # 1,000 refusals/s
    assert reported.index(True) == 100  # the 101st refusal within the second
    assert reported.count(True) == 1  # once per episode
    watch.lift("flood")
    assert not watch.is_quarantined("flood")
    assert [watch.refused("flood", 1.0 + n / 1000) for n in range(101)][-1]  # a new episode


def test_refusals_spread_over_windows_are_never_reported() -> None:
    watch = FloodWatch(FloodPolicy(threshold=100, window_s=1.0))
    # 100 refusals per second, for an hour: at the threshold, never beyond it.
    assert not any(watch.refused("busy", n / 100) for n in range(360_000))


def test_a_legitimate_device_re_sending_every_10_s_is_never_quarantined() -> None:
    """Even if each of its re-sends were refused (they are not: see the vouching tests), at the defaults."""
    watch = FloodWatch()
    assert not any(watch.refused("calm", n * 10.0) for n in range(8_640))  # a day of re-sends
    assert not watch.is_quarantined("calm")


def test_tracking_is_bounded() -> None:
    watch = FloodWatch(FloodPolicy(threshold=2, window_s=1.0, max_tracked=10))
    for n in range(100):
        watch.refused(f"d{n}", 0.0)
    assert len(watch._windows) <= 10
    # Closed windows make room again.
    assert not watch.refused("late", 5.0)
    assert "late" in watch._windows
