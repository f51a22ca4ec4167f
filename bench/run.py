"""``make bench``: the alert path measured end to end, against the DESIGN.md targets.

    python -m bench.run                 # everything (< 15 min on the 2-core machine)
    python -m bench.run --quick         # short durations (~4 min)
    python -m bench.run --smoke         # tiny numbers, for the test-suite (< 60 s)
    python -m bench.run --scenario steady-100 --scenario burst-1000

Writes a table to stdout and every figure to ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import scenarios as sc
from bench.report import RESULTS, console_table, machine, table, write_json
from dispatcher.fleet.health import HEALTH_PASS_S

Runner = Callable[[Path, sc.Sizes], dict[str, Any]]

SLOW_PROVIDER = {"latency_ms": 3000, "failure_rate": 0.10}
#: How often the steady-100-console-reopens scenario reloads its console (seconds).
CONSOLE_REOPEN_S = 5.0
#: How often the steady-100-overview scenario reads the overview map (seconds).
OVERVIEW_EVERY_S = 2.0
#: How often the health-table-100k scenario reads the devices' health table (seconds): each
#: console asks at new alerts, at most every 2 s; two consoles open.
HEALTH_TABLE_EVERY_S = 1.0
TARGETS = {
    "steady-100": "p50 ≤ 5 ms, p99 ≤ 15 ms (publish → first provider request, durable commit included)",
    "slow-provider-10": "p99 ≤ 2× the fast provider's p99 at the same rate (steady-10)",
    "slow-provider-100": "p99 ≤ 2× the fast provider's p99 at the same rate (steady-100)",
    "burst-1000": "all persisted and first notifications started within 5 s, none lost",
    "heartbeat-10k": "offline flagged within 2 intervals + the 2 s arrival grace;"
    " dispatcher CPU < 50 % of a core",
    "heartbeat-100k": "≤ 0.4 % of a core per 100 heartbeats/s;"
    " offline within 2 intervals + the 2 s arrival grace, no false flag",
    "directory-edits-100k": "informational: 10 alerts/s while a 100,000-device directory is edited"
    " every 2 s (a practitioner renamed, a device relabelled, in turn)",
    "directory-bulk-100k": "informational: 10 alerts/s while 5,000 of a 100,000-device directory's"
    " devices are relabelled at once every 5 s (an import)",
    "health-table-100k": "informational: 10 alerts/s while an operator's console reads the devices'"
    " health table of a 100,000-device territory every second (consoles ask at new alerts)",
    "console-push": "every alert on the operator console within 1 s of its publish, none missing"
    " (steady-10 and steady-100)",
}
#: Issue 16's heartbeat budget: dispatcher CPU (% of one core) per 100 heartbeats/s.
HEARTBEAT_BUDGET_PCT_PER_100 = 0.4


def _scenarios() -> dict[str, Runner]:
    def at(name: str, duration: Callable[[sc.Sizes], float], **options: Any) -> Callable[[float], Runner]:
        """An alert scenario at a given rate: ``name`` formatted with it, its duration per mode."""
        return lambda rate: (
            lambda w, s: sc.alert_scenario(
                name.format(rate=rate), w, s, rate=rate, duration_s=duration(s), **options
            )
        )

    steady = at(
        "steady-{rate:g}", lambda s: s.steady_s, console=True, notes="one operator console's feed open"
    )
    slow = at(
        "slow-provider-{rate:g}",
        lambda s: s.slow_s,
        sandbox=SLOW_PROVIDER,
        notes="provider answers after 3 s, 10 % HTTP 500",
    )
    isolated = at(
        "steady-{rate:g}-no-callbacks",
        lambda s: s.steady_s,
        callbacks=False,
        notes="no provider status callback posted: the alert path alone",
    )

    return {
        "steady-10": steady(10),
        "steady-100": steady(100),
        "steady-100-no-callbacks": isolated(100),
        "steady-100-console-reopens": at(
            "steady-{rate:g}-console-reopens",
            lambda s: s.steady_s,
            console=True,
            console_reopen_s=CONSOLE_REOPEN_S,
            notes=f"the operator's console reloaded every {CONSOLE_REOPEN_S:g} s: a fresh snapshot"
            " of every open alert (thousands) while alerts keep coming",
        )(100),
        "steady-100-overview": at(
            "steady-{rate:g}-overview",
            lambda s: s.steady_s,
            console=True,
            console_overview_s=OVERVIEW_EVERY_S,
            notes=f"the operator's overview map read every {OVERVIEW_EVERY_S:g} s: its 500 most"
            " recent open alerts, placed, while alerts keep coming",
        )(100),
        "burst-1000": lambda w, s: sc.alert_scenario(
            "burst-1000", w, s, rate=None, duration_s=0, burst=s.burst, notes=f"{s.burst} alerts at once"
        ),
        "slow-provider-10": slow(10),
        "slow-provider-100": slow(100),
        "steady-100-pg-2": lambda w, s: sc.postgres_scenario("steady-100-pg-2", w, s, rate=100, instances=2),
        "steady-100-pg-web": lambda w, s: sc.postgres_scenario(
            "steady-100-pg-web", w, s, rate=100, instances=2, web_instance=True
        ),
        "heartbeat-10k": lambda w, s: sc.heartbeat_scenario("heartbeat-10k", w, s),
        "heartbeat-100k": lambda w, s: sc.heartbeat_scenario(
            "heartbeat-100k", w, s, devices=s.national_devices
        ),
        "health-table-100k": lambda w, s: sc.alert_scenario(
            "health-table-100k",
            w,
            s,
            rate=10,
            duration_s=s.steady_s,
            console=True,
            console_health_s=HEALTH_TABLE_EVERY_S,
            directory_devices=s.national_devices,
            notes=f"{s.national_devices} devices in the operator's territory; its console's health table"
            f" (GET /api/devices/health?limit=200) read every {HEALTH_TABLE_EVERY_S:g} s",
        ),
        "directory-edits-100k": lambda w, s: sc.directory_edits_scenario(
            "directory-edits-100k", w, s, devices=s.national_devices, rate=10
        ),
        "directory-bulk-100k": lambda w, s: sc.directory_edits_scenario(
            "directory-bulk-100k", w, s, devices=s.national_devices, rate=10, edit_every_s=5, bulk_rows=5000
        ),
        "naive-10": lambda w, s: sc.naive_scenario("naive-10", w, s, rate=10, duration_s=s.naive_s),
        "naive-100": lambda w, s: sc.naive_scenario("naive-100", w, s, rate=100, duration_s=s.naive_s),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def comparisons(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Cross-scenario figures: slow vs fast provider, naive vs asyncio."""
    out: dict[str, Any] = {}
    for rate in ("10", "100"):
        slow, fast = results.get(f"slow-provider-{rate}"), results.get(f"steady-{rate}")
        if slow and fast:
            out[f"slow_vs_fast_p99_ratio_{rate}"] = _ratio(slow["e2e_ms"]["p99"], fast["e2e_ms"]["p99"])
    for rate, key in (("100", "naive_vs_dispatcher"), ("10", "naive_vs_dispatcher_10")):
        naive, fast = results.get(f"naive-{rate}"), results.get(f"steady-{rate}")
        if naive and fast:
            out[key] = {q: _ratio(naive["e2e_ms"][q], fast["e2e_ms"][q]) for q in ("p50", "p99", "max")} | {
                "throughput": _ratio(naive["throughput_per_s"], fast["throughput_per_s"])
            }
    return out


def verdicts(results: dict[str, dict[str, Any]], comp: dict[str, Any]) -> dict[str, bool | None]:
    """Each DESIGN.md target: met, missed, or not measured in this run."""
    steady = results.get("steady-100")
    burst = results.get("burst-1000")
    out: dict[str, bool | None] = {}
    out["steady-100"] = (
        steady["e2e_ms"]["p50"] <= 5 and steady["e2e_ms"]["p99"] <= 15 and steady["lost"] == 0
        if steady and steady["e2e_ms"]["p99"] is not None
        else None
    )
    for rate in ("10", "100"):
        ratio = comp.get(f"slow_vs_fast_p99_ratio_{rate}")
        out[f"slow-provider-{rate}"] = None if ratio is None else ratio <= 2
    out["burst-1000"] = burst["lost"] == 0 and burst["all_first_requests_within_s"] <= 5 if burst else None
    pushes = [r["console"] for r in results.values() if r.get("console")]
    out["console-push"] = (
        all(p["never_pushed"] == 0 and p["over_goal"] == 0 for p in pushes) if pushes else None
    )
    for name in ("heartbeat-10k", "heartbeat-100k"):
        hb = results.get(name)
        if not hb:
            continue
        if name == "heartbeat-10k":
            cpu_ok = hb["dispatcher"]["cpu_pct_of_core"] < 50
        else:
            per_100 = hb["cpu_pct_per_100_hb_s"]
            cpu_ok = per_100 is not None and per_100 <= HEARTBEAT_BUDGET_PCT_PER_100
        out[name] = cpu_ok and _flagged_in_time(hb) and hb["false_offline_flags"] == 0
    return out


def _flagged_in_time(hb: dict[str, Any]) -> bool:
    """Every silenced canary flagged in time (true when none was silenced).

    The dispatcher flags a device once it has been silent for 2 intervals plus
    the arrival grace (``ARRIVAL_GRACE_S``: one lost heartbeat, or one still in
    transit or unmerged while the leader changes, never flags a device), on a
    health pass every HEALTH_PASS_S: the limit is met up to that pass.
    """
    detection = hb.get("offline_detection") or {}
    worst = (detection.get("after_last_heartbeat_s") or {}).get("max")
    return worst is None or (
        detection["flagged"] == detection["silenced"] and worst <= detection["limit_s"] + HEALTH_PASS_S
    )


def main(argv: list[str] | None = None) -> int:
    registry = _scenarios()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short durations (development)")
    mode.add_argument("--smoke", action="store_true", help="tiny numbers (test-suite)")
    parser.add_argument("--scenario", action="append", choices=sorted(registry), help="run only these")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs/databases here")
    parser.add_argument(
        "--heartbeat-warmup",
        type=float,
        default=None,
        metavar="S",
        help="heartbeat scenarios: send heartbeats for S seconds before measuring (steady state)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    sizes = sc.SMOKE if args.smoke else sc.QUICK if args.quick else sc.FULL
    if args.heartbeat_warmup is not None:
        sizes = dataclasses.replace(sizes, heartbeat_warmup_s=args.heartbeat_warmup)
    names = args.scenario or list(registry)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vigie-bench-"))
    started = time.monotonic()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    host = machine()  # its load average is the one before the first scenario
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"… {name}", flush=True)
        t = time.monotonic()
        load_before = list(os.getloadavg())
        results[name] = registry[name](workdir, sizes)
        results[name]["wall_s"] = round(time.monotonic() - t, 1)
        # The machine is shared: each figure is read with the load it ran under.
        results[name]["load_average_before"] = load_before
        results[name]["load_average_after"] = list(os.getloadavg())
    comp = comparisons(results)
    payload = {
        "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
        "sizes": vars(sizes),
        "machine": host,
        "started_at": started_at,
        "wall_s": round(time.monotonic() - started, 1),
        "load_average_at_end": list(os.getloadavg()),
        "targets": TARGETS,
        "scenarios": results,
        "comparisons": comp,
        "verdicts": verdicts(results, comp),
    }
    write_json(payload, args.output)
    alert_rows = [r for r in results.values() if "e2e_ms" in r]
    print(table(alert_rows))
    print(console_table(alert_rows))
    for r in results.values():
        if "heartbeats_sent" in r:
            d = r.get("offline_detection") or {}
            print(
                f"{r['name']}: {r['devices']} devices, {r['heartbeat_rate_per_s']} heartbeats/s sent,"
                f" {r['ingested_rate_per_s']} ingested,"
                f" dispatcher CPU {r['dispatcher']['cpu_pct_of_core']} % of a core"
                f" ({r['cpu_pct_per_100_hb_s']} % per 100 heartbeats/s), broker CPU"
                f" {r['broker']['cpu_pct_of_core']} %,"
                f" RSS {r['dispatcher']['rss_mb']} MB; offline flagged {d.get('after_last_heartbeat_s')} s"
                f" after the last heartbeat (interval {d.get('interval_s')} s);"
                f" false flags {r['false_offline_flags']}"
            )
    print(f"comparisons: {comp}")
    print(f"verdicts: {payload['verdicts']}")
    print(f"written to {args.output} in {payload['wall_s']} s")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
