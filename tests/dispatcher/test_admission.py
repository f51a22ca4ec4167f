"""Admission (per-device fair queues) and the sampled rejection log, without a broker."""

from __future__ import annotations

import logging

import pytest

from dispatcher.admission import Admission, AdmissionPolicy, device_of
from dispatcher.mqtt import Inbound
from dispatcher.rejectlog import RejectionLog
from protocol.codec import RejectReason


def message(device: str, n: int = 0, size: int = 10) -> Inbound:
    return Inbound(f"vigie/v1/dev/{device}/up/alert", b"x" * size, n, 1, 0.0)


async def test_batches_take_one_message_per_device_per_turn() -> None:
    admission = Admission(AdmissionPolicy(per_device=100, burst=100))
    for n in range(50):
        assert admission.offer(message("flood", n), "flood") is None
    assert admission.offer(message("calm"), "calm") is None
    first = await admission.take(2)
    assert [device_of(m.topic) for m in first] == ["flood", "calm"]  # not behind 49 flood messages
    assert admission.queued == 49


def test_a_device_is_bounded_by_its_bucket_and_its_queue() -> None:
    admission = Admission(AdmissionPolicy(per_device=3, burst=5, rate_per_s=0.001))
    verdicts = [admission.offer(message("flood", n), "flood") for n in range(6)]
    assert verdicts == [
        None,
        None,
        None,
        RejectReason.QUEUE_FULL,
        RejectReason.QUEUE_FULL,
        RejectReason.RATE_LIMITED,
    ]
    assert admission.offer(message("calm"), "calm") is None  # others keep their own budget
    assert admission.offer(message("big", size=5000), "big") is RejectReason.TOO_LARGE


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
        ("flood", "t", "bad_signature", "999 more in the last 10 s (logged once per interval)")
    ]
    assert len(caplog.records) == 3
