"""Reading the dispatcher's histograms over a window: what was counted between two scrapes."""

from __future__ import annotations

from bench import promstats

EXPOSITION = """\
vigie_health_pass_seconds_bucket{{le="0.1",stage="pass"}} {a}
vigie_health_pass_seconds_bucket{{le="1.0",stage="pass"}} {b}
vigie_health_pass_seconds_bucket{{le="+Inf",stage="pass"}} {c}
vigie_health_pass_seconds_count{{stage="pass"}} {c}
vigie_health_pass_seconds_sum{{stage="pass"}} {total}
"""


def scrape(a: int, b: int, c: int, total: float) -> promstats.Histogram:
    text = EXPOSITION.format(a=a, b=b, c=c, total=total)
    return promstats.histogram(text, "vigie_health_pass_seconds", stage="pass")


def test_a_window_counts_only_what_came_after_its_first_scrape() -> None:
    # Before: 10 fast passes and one slow start-up pass (beyond 1 s). Within: 4 passes under 1 s.
    window = promstats.since(scrape(10, 10, 11, 4.0), scrape(12, 14, 15, 5.2))
    assert window.count == 4 and abs(window.total - 1.2) < 1e-9
    assert window.max_bound() == 1.0  # the start-up pass is not in the window
    assert promstats.since(promstats.histogram("", "x"), scrape(1, 1, 1, 0.05)).count == 1
