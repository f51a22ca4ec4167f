"""A log line reads the same on the dispatcher and a device: Paris time with its offset, French level."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime

import pytest

from protocol.logformat import ParisFormatter


def _record(level: int, at: datetime, message: str, *args: object) -> logging.LogRecord:
    record = logging.LogRecord("dispatcher.alerting.mqtt", level, __file__, 1, message, args, None)
    record.created = at.timestamp()
    record.msecs = (at.microsecond // 1000) + 0.0
    return record


@pytest.mark.parametrize(
    ("at", "level", "expected"),
    [
        # Winter (UTC+1) on a server whose clock is UTC.
        (
            datetime(2026, 11, 27, 21, 31, 5, 123000, tzinfo=UTC),
            logging.WARNING,
            "2026-11-27 22:31:05,123+01:00 ATTENTION dispatcher.alerting.mqtt : broker btn-1 injoignable",
        ),
        # Summer (UTC+2).
        (
            datetime(2026, 7, 14, 10, 0, 0, 7000, tzinfo=UTC),
            logging.CRITICAL,
            "2026-07-14 12:00:00,007+02:00 CRITIQUE dispatcher.alerting.mqtt : broker btn-1 injoignable",
        ),
        # The hour repeated when clocks go back is told apart by its offset.
        (
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
            logging.ERROR,
            "2026-10-25 02:30:00,000+02:00 ERREUR dispatcher.alerting.mqtt : broker btn-1 injoignable",
        ),
        (
            datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
            logging.INFO,
            "2026-10-25 02:30:00,000+01:00 INFO dispatcher.alerting.mqtt : broker btn-1 injoignable",
        ),
    ],
)
def test_a_line_has_the_paris_time_and_a_french_level(at: datetime, level: int, expected: str) -> None:
    record = _record(level, at, "broker %s injoignable", "btn-1")
    assert ParisFormatter().format(record) == expected
    assert record.levelname == logging.getLevelName(level)  # other handlers (pytest's) see it unchanged


def test_debug_lines_are_marked_in_french_too() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ParisFormatter())
    logger = logging.getLogger("tests.logformat")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("détail %d", 42)
    finally:
        logger.removeHandler(handler)
    assert " DÉBOGAGE tests.logformat : détail 42\n" in stream.getvalue()
