"""Figures → a table on stdout and ``bench/results/latest.json``."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from broker_config.runner import mosquitto_binary

RESULTS = Path(__file__).resolve().parent / "results"


def percentiles_ms(values_s: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max/mean in milliseconds (nearest-rank), None when empty."""
    if not values_s:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values_s)

    def rank(q: float) -> float:
        index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
        return round(ordered[index] * 1000, 3)

    return {
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": round(ordered[-1] * 1000, 3),
        "mean": round(sum(ordered) / len(ordered) * 1000, 3),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        out = subprocess.run([mosquitto_binary(), "-h"], capture_output=True, text=True, timeout=5)
        found = re.search(r"mosquitto version (\S+)", out.stdout + out.stderr)
        mosquitto = found.group(1) if found else "unknown"
    except Exception:
        mosquitto = "unknown"
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mosquitto": mosquitto,
        "load_average_at_start": list(os.getloadavg()),
        "clock": "time.monotonic() (CLOCK_MONOTONIC, system-wide) across processes",
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    return str(value)


def table(results: Sequence[dict[str, Any]]) -> str:
    """One line per scenario: end-to-end quantiles (measured outside the dispatcher) and the rest."""
    header = (
        f"{'scenario':<20} {'alerts':>6} {'lost':>4} {'rate/s':>7} "
        f"{'p50':>7} {'p95':>7} {'p99':>7} {'max':>8}  {'cpu%':>5} {'rss MB':>6}  notes"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        e2e = r.get("e2e_ms") or {}
        proc = r.get("dispatcher") or {}
        lines.append(
            f"{r['name']:<20} {_fmt(r.get('alerts_sent')):>6} {_fmt(r.get('lost')):>4}"
            f" {_fmt(r.get('throughput_per_s')):>7} {_fmt(e2e.get('p50')):>7} {_fmt(e2e.get('p95')):>7}"
            f" {_fmt(e2e.get('p99')):>7} {_fmt(e2e.get('max')):>8}  {_fmt(proc.get('cpu_pct_of_core')):>5}"
            f" {_fmt(proc.get('rss_mb')):>6}  {r.get('notes', '')}"
        )
    lines.append("latencies in ms: device publish → first provider request received by the sandbox")
    stage_lines = [
        f"  {r['name']:<20} "
        + "  ".join(
            f"{stage} p50 {_fmt(q.get('p50'))} p99 {_fmt(q.get('p99'))}"
            for stage, q in (r.get("stages_ms") or {}).items()
        )
        for r in results
        if r.get("stages_ms")
    ]
    if stage_lines:
        lines.append("dispatcher stages (vigie_stage_seconds, from MQTT receipt, bucket-interpolated, ms):")
        lines += stage_lines
    return "\n".join(lines)


def console_table(results: Sequence[dict[str, Any]]) -> str:
    """Publish → the operator console's WebSocket push, for the scenarios that had a console open."""
    lines = ["console push (ms, device publish → first WebSocket push received by a logged-in operator):"]
    for r in results:
        c = r.get("console")
        if c:
            q = c["push_ms"]
            lines.append(
                f"  {r['name']:<20} p50 {_fmt(q['p50'])} p95 {_fmt(q['p95'])} p99 {_fmt(q['p99'])}"
                f" max {_fmt(q['max'])}  never pushed {c['never_pushed']}"
                f"  over {c['goal_ms']:g} ms {c['over_goal']}"
            )
        for page, what in (("overview", "overview map"), ("health-table", "devices' health table")):
            if o := r.get(page):
                q = o["read_ms"]
                lines.append(
                    f"  {r['name']:<20} {what}: {o['reads']} reads, each p50 {_fmt(q['p50'])}"
                    f" max {_fmt(q['max'])} ms"
                )
    return "\n".join(lines) if len(lines) > 1 else ""


def write_json(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
