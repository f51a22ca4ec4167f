"""The console-push figure's pure parts: the watcher's output read back, and publish → push.

The whole measurement on real processes is in test_bench_smoke.py; the goal
(1 s) is judged by ``make bench``, not here.
"""

from __future__ import annotations

from bench.console import READY, FeedLines, push_latency, read_pushes
from bench.load import SentAlert
from bench.run import verdicts
from dispatcher.web.console.frames import frame_of


def test_the_first_push_of_each_alert_counts_and_a_line_being_written_is_skipped() -> None:
    text = f"{READY}\nal-1 10.5\nal-2 11.25\nal-1 12.0\nal-3"
    ready, pushed = read_pushes(text)
    assert ready
    assert pushed == {"al-1": 10.5, "al-2": 11.25}  # al-1's later update ignored; al-3 not yet whole


def test_an_alert_counts_when_pushed_or_when_a_catching_up_snapshot_first_lists_it() -> None:
    feed = FeedLines()
    snapshot = {"type": "snapshot", "alerts": [{"id": "before"}]}
    assert feed.lines_for(snapshot, 1.0) == [READY]
    assert feed.lines_for({"type": "alert", "alert": {"id": "al-1"}}, 2.0) == ["al-1 2.0"]
    assert feed.lines_for({"type": "ping"}, 2.5) == []
    # The feed fell behind: its fresh snapshot is how the page learns of al-2 and al-3.
    listed = ["al-3", "al-2", "al-1", "before"]
    catch_up = {"type": "snapshot", "alerts": [{"id": i} for i in listed]}
    assert feed.lines_for(catch_up, 3.0) == ["al-3 3.0", "al-2 3.0"]
    assert feed.lines_for({"type": "alert", "alert": {"id": "al-2"}}, 4.0) == []
    # A busy feed's batch frame: each alert in it counts, at the frame's time.
    batch = frame_of([{"type": "alert", "alert": {"id": i}} for i in ("al-4", "al-2", "al-5")])
    assert batch is not None
    assert feed.lines_for(batch, 5.0) == ["al-4 5.0", "al-5 5.0"]


def test_no_snapshot_means_not_ready() -> None:
    assert read_pushes("") == (False, {})


def test_publish_to_push_quantiles_never_pushed_and_over_the_goal() -> None:
    sent = [SentAlert(f"al-{i}", "dev", published_at=100.0 + i) for i in range(4)]
    pushed = {"al-0": 100.010, "al-1": 101.030, "al-2": 103.5, "other": 99.0}  # al-3 never came
    figures = push_latency(sent, pushed)
    assert figures["pushed"] == 3 and figures["never_pushed"] == 1
    assert figures["over_goal"] == 1  # al-2: 1.5 s
    assert figures["push_ms"]["p50"] == 30.0 and figures["push_ms"]["max"] == 1500.0


def _steady(never_pushed: int, over_goal: int) -> dict[str, object]:
    e2e = {"p50": 3.0, "p99": 9.0}
    console = {"never_pushed": never_pushed, "over_goal": over_goal}
    return {"e2e_ms": e2e, "lost": 0, "console": console}


def test_the_console_verdict_needs_every_alert_pushed_within_the_goal() -> None:
    assert verdicts({"steady-10": _steady(0, 0), "steady-100": _steady(0, 0)}, {})["console-push"] is True
    assert verdicts({"steady-10": _steady(0, 0), "steady-100": _steady(0, 1)}, {})["console-push"] is False
    assert verdicts({"steady-10": _steady(1, 0)}, {})["console-push"] is False
    assert verdicts({}, {})["console-push"] is None  # not measured in this run
