"""The benchmark's scenarios; each runs on a fresh cluster and returns its figures."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import promstats
from bench.cluster import Cluster, DeviceSpec, Process, ProcessStats, device_ids, python_module, read_db
from bench.console import ConsoleWatcher, add_operator, push_latency
from bench.load import Fleet, HeartbeatLoad, Publishers, SentAlert, burst_alerts, steady_alerts
from bench.naive import PASSWORD_VARIABLE as NAIVE_PASSWORD_VARIABLE
from bench.report import percentiles_ms
from broker_config.runner import DISPATCHER_USER
from dispatcher.fleet.devicehealth import ARRIVAL_GRACE_S
from sandbox.postgres import PostgresCluster, pg_bin_dir

STAGES = ("persisted", "acked", "first_request")
ALERT_DEVICES = "al"


@dataclass(frozen=True)
class Sizes:
    """How long / how many, per mode (full, --quick, --smoke)."""

    steady_s: float
    slow_s: float
    burst: int
    alert_devices: int
    heartbeat_devices: int
    heartbeat_period_s: float
    heartbeat_measure_s: float
    canaries: int
    naive_s: float
    drain_timeout_s: float
    national_devices: int = 100_000  # heartbeat-100k
    # Heartbeats sent before the measurement window opens: past each device's first heartbeat
    # (written at once, nothing stored yet) the window sees the steady state of a running fleet.
    heartbeat_warmup_s: float = 0.0


FULL = Sizes(60, 60, 1000, 1000, 10_000, 30, 60, 5, 60, 60)
QUICK = Sizes(10, 10, 1000, 1000, 10_000, 30, 30, 5, 10, 45)
SMOKE = Sizes(2, 2, 50, 60, 200, 30, 3, 0, 2, 30, national_devices=400)


def _first_requests(requests: list[dict[str, Any]]) -> dict[str, float]:
    """alert id -> monotonic time the sandbox received its first SMS/call request."""
    first: dict[str, float] = {}
    for r in requests:
        if r["kind"] not in ("message", "call") or not r.get("ref"):
            continue
        alert_id = str(r["ref"]).split("/", 1)[0]
        t = float(r["received_at"])
        if alert_id not in first or t < first[alert_id]:
            first[alert_id] = t
    return first


def _wait(check: Callable[[], bool], timeout: float, period: float = 0.25) -> bool:
    """Poll ``check`` (a cheap query on another process) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(period)


def _stages(metrics: list[str]) -> dict[str, dict[str, float | None]]:
    """Stage quantiles over every instance's /metrics."""
    out: dict[str, dict[str, float | None]] = {}
    for stage in STAGES:
        h = promstats.merged([promstats.histogram(m, "vigie_stage_seconds", stage=stage) for m in metrics])
        ms = [None if v is None else round(v * 1000, 3) for v in (h.quantile(0.5), h.quantile(0.99))]
        top = h.max_bound()
        out[stage] = {
            "count": h.count,
            "p50": ms[0],
            "p99": ms[1],
            "max_bucket": None if top is None else top * 1000,
        }
    return out


def _dispatcher_counters(metrics: str) -> dict[str, Any]:
    errors: dict[str, float] = {}
    for (name, labels), v in promstats.samples(metrics).items():
        if name == "vigie_provider_errors_total":
            d = dict(labels)
            errors[f"{d['channel']}/{d['outcome']}"] = v
    return {
        "rejected": promstats.labelled(metrics, "vigie_rejected_total", "reason"),
        "ingested": promstats.labelled(metrics, "vigie_ingested_total", "type"),
        "provider_errors": errors,
        "alerts_active": promstats.labelled(metrics, "vigie_alerts_active", "state"),
        "store_failures": promstats.value(metrics, "vigie_store_failures_total"),
        "duplicates": promstats.value(metrics, "vigie_duplicates_total"),
    }


def _summary(
    name: str,
    sent: list[SentAlert],
    requests: list[dict[str, Any]],
    *,
    persisted: int | None,
    cpu: dict[str, float] | None,
) -> dict[str, Any]:
    first = _first_requests(requests)
    e2e = [first[a.alert_id] - a.published_at for a in sent if a.alert_id in first]
    lost = sum(1 for a in sent if a.alert_id not in first)
    start = min(a.published_at for a in sent)
    last = max((first[a.alert_id] for a in sent if a.alert_id in first), default=start)
    publish_span = max(a.published_at for a in sent) - start
    return {
        "name": name,
        "alerts_sent": len(sent),
        "alerts_persisted": persisted,
        "alerts_with_first_request": len(sent) - lost,
        "lost": lost,
        "publish_span_s": round(publish_span, 3),
        "all_first_requests_within_s": round(last - start, 3),
        "throughput_per_s": round(len(sent) / (last - start), 1) if last > start else None,
        "provider_requests": sum(1 for r in requests if r["kind"] in ("message", "call")),
        "provider_500": sum(1 for r in requests if r.get("status") == 500),
        "e2e_ms": percentiles_ms(e2e),
        "dispatcher": cpu,
    }


def _all(pids: list[int]) -> ProcessStats:
    """CPU and memory of several processes (instances) added up."""
    stats = [ProcessStats.of(pid) for pid in pids]
    return ProcessStats(sum(s.cpu_s for s in stats), sum(s.rss_mb for s in stats))


def _cpu(before: ProcessStats, after: ProcessStats, seconds: float) -> dict[str, float]:
    return {
        "cpu_pct_of_core": round(100 * (after.cpu_s - before.cpu_s) / seconds, 1),
        "rss_mb": round(after.rss_mb, 1),
        "window_s": round(seconds, 1),
    }


def _persisted(db: Path, sent: list[SentAlert], table: str = "alerts") -> int:
    ids = {a.alert_id for a in sent}
    return sum(1 for (alert_id,) in read_db(db, f"SELECT id FROM {table}") if alert_id in ids)


def alert_scenario(
    name: str,
    workdir: Path,
    sizes: Sizes,
    *,
    rate: float | None,
    duration_s: float,
    burst: int | None = None,
    sandbox: dict[str, Any] | None = None,
    callbacks: bool = True,
    database_url: str | None = None,
    instances: int = 1,
    web_instance: bool = False,
    console: bool = False,
    console_reopen_s: float | None = None,
    console_overview_s: float | None = None,
    console_health_s: float | None = None,
    directory_devices: int = 0,
    notes: str = "",
) -> dict[str, Any]:
    """Alerts against the real dispatcher(s); latency measured at the sandbox.

    ``database_url``: a PostgreSQL DSN (default: SQLite); ``instances``:
    dispatchers sharing it (CPU and RSS are their sum); ``web_instance``: the
    second of them is of role web and takes every provider callback. ``console``: one
    operator's console feed is open throughout, and each alert's publish →
    first push to it is measured too (``bench/console.py``); ``console_reopen_s``:
    that console is reloaded that often (a fresh snapshot each time);
    ``console_overview_s``: its overview map is read that often;
    ``console_health_s``: its devices' health table. ``directory_devices``: that
    many more devices in the directory (heartbeating hourly: none is due), in the
    console's territory.
    """
    specs = [DeviceSpec(ALERT_DEVICES, sizes.alert_devices)]
    if directory_devices:
        specs.append(DeviceSpec("dir", directory_devices, 3600))
    reads = {"overview": console_overview_s, "health-table": console_health_s}
    read_every_s = {page: every_s for page, every_s in reads.items() if every_s is not None}
    with Cluster(
        workdir / name,
        specs,
        provider_callbacks=callbacks,
        database_url=database_url,
        instances=instances,
        web_instance=web_instance,
    ) as cluster:
        if sandbox:
            cluster.configure_sandbox(**sandbox)
        assert cluster.dispatcher is not None and cluster.broker is not None
        pubs = Publishers(
            port=cluster.broker.port, username="vigie-bench-fleet", password=cluster.fleet_password
        )
        devices = device_ids(ALERT_DEVICES, sizes.alert_devices)
        watcher: ConsoleWatcher | None = None
        try:
            if console:
                watcher = _open_console(cluster, reopen_every_s=console_reopen_s, read_every_s=read_every_s)
            before, t0 = _all(cluster.dispatcher_pids), time.monotonic()
            if burst is not None:
                sent = burst_alerts(pubs, Fleet(cluster.keys), devices, count=burst)
            else:
                assert rate is not None
                sent = steady_alerts(pubs, Fleet(cluster.keys), devices, rate=rate, duration_s=duration_s)

            def all_started() -> bool:
                h = promstats.histogram(cluster.metrics(), "vigie_stage_seconds", stage="first_request")
                return h.count >= len(sent)

            def all_reached_sandbox() -> bool:
                # With several instances one may send what another received (any instance
                # claims pending rows), and only the receiving one times the first request.
                return {a.alert_id for a in sent} <= set(_first_requests(cluster.sandbox_requests()))

            if instances == 1:
                _wait(all_started, sizes.drain_timeout_s)
            else:
                _wait(all_reached_sandbox, sizes.drain_timeout_s, 1.0)
            after, t1 = _all(cluster.dispatcher_pids), time.monotonic()
            wanted = {a.alert_id for a in sent}
            requests = cluster.sandbox_requests()
            # The metric is observed just before the request leaves: give the sandbox a moment.
            for _ in range(10):
                if wanted <= set(_first_requests(requests)):
                    break
                time.sleep(0.5)
                requests = cluster.sandbox_requests()
            pushes = _console_pushes(watcher, wanted, sizes.drain_timeout_s) if watcher else None
            page_reads = {page: watcher.page_reads(page) for page in read_every_s} if watcher else {}
            metrics = cluster.all_metrics()
            stored = cluster.stored_alert_ids()
        finally:
            pubs.close()
            if watcher is not None:
                watcher.stop()
        persisted = sum(1 for a in sent if a.alert_id in stored)
        result = _summary(name, sent, requests, persisted=persisted, cpu=_cpu(before, after, t1 - t0))
    result.update(
        offered_rate_per_s=rate,
        duration_s=duration_s,
        stages_ms=_stages(metrics),
        counters=_dispatcher_counters(metrics[0])
        if instances == 1
        else [_dispatcher_counters(m) for m in metrics],
        store="postgresql" if database_url else "sqlite",
        instances=instances,
        web_instance=web_instance,
        sandbox_config=sandbox or {},
        provider_callbacks=callbacks,
        notes=notes,
    )
    if pushes is not None:
        result["console"] = push_latency(sent, pushes)
    for page, read in page_reads.items():
        result[page] = read
    if directory_devices:
        result["directory_devices"] = directory_devices
    return result


def _open_console(
    cluster: Cluster, *, reopen_every_s: float | None = None, read_every_s: Mapping[str, float] | None = None
) -> ConsoleWatcher:
    """An operator account, logged in on its console feed (live once this returns)."""
    asyncio.run(add_operator(cluster.store_url))
    watcher = ConsoleWatcher(
        cluster.workdir, cluster.public_url, reopen_every_s=reopen_every_s, read_every_s=read_every_s
    )
    try:
        watcher.start()
    except BaseException:
        watcher.stop()
        raise
    return watcher


def _console_pushes(watcher: ConsoleWatcher, wanted: set[str], timeout: float) -> dict[str, float]:
    """Every alert's first push to the console, waiting for the missing ones up to ``timeout``."""
    _wait(lambda: wanted <= set(watcher.pushes()), timeout)
    return watcher.pushes()


def postgres_scenario(
    name: str, workdir: Path, sizes: Sizes, *, rate: float, instances: int, web_instance: bool = False
) -> dict[str, Any]:
    """The steady load on ``instances`` dispatchers sharing a throw-away PostgreSQL (scale-out).

    ``web_instance``: the second is of role web, taking no alert but every provider callback.
    """
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    server = PostgresCluster(bin_dir)
    server.start()
    try:
        return alert_scenario(
            name,
            workdir,
            sizes,
            rate=rate,
            duration_s=sizes.steady_s,
            database_url=server.url(server.create_database("bench")),
            instances=instances,
            web_instance=web_instance,
            notes=f"{instances} dispatchers, one PostgreSQL (fsync on)"
            + (", the second of role web taking every callback" if web_instance else ""),
        )
    finally:
        server.stop()


def directory_edits_scenario(
    name: str,
    workdir: Path,
    sizes: Sizes,
    *,
    devices: int,
    rate: float,
    edit_every_s: float = 2.0,
    bulk_rows: int = 0,
) -> dict[str, Any]:
    """Alerts at ``rate`` while an administrator edits a directory of ``devices`` devices.

    Each edit (every ``edit_every_s``, by another process as the admin CLI
    writes: a practitioner renamed, then a device relabelled, in turn; or, with
    ``bulk_rows``, that many devices relabelled in one transaction, as an
    import does) moves the directory version, so the dispatcher catches up with
    the directory and the health leader takes in the new snapshot: what a
    national directory's edits cost the alerts arriving meanwhile. The
    directory's devices heartbeat every hour (none is due during the run); the
    alerts come from the usual alert devices.
    """
    specs = [DeviceSpec(ALERT_DEVICES, sizes.alert_devices), DeviceSpec("dir", devices, 3600)]
    with Cluster(workdir / name, specs) as cluster:
        assert cluster.dispatcher is not None and cluster.broker is not None
        pubs = Publishers(
            port=cluster.broker.port, username="vigie-bench-fleet", password=cluster.fleet_password
        )
        stop, edits = threading.Event(), [0]
        editor = threading.Thread(
            target=_edit_directory, args=(cluster.db, stop, edit_every_s, edits, bulk_rows, devices)
        )
        try:
            editor.start()
            stop.wait(edit_every_s * 1.5)  # the first reloads under way before the first alert
            before, t0 = ProcessStats.of(cluster.dispatcher.pid), time.monotonic()
            alerting = device_ids(ALERT_DEVICES, sizes.alert_devices)
            sent = steady_alerts(pubs, Fleet(cluster.keys), alerting, rate=rate, duration_s=sizes.steady_s)
            _wait(
                lambda: {a.alert_id for a in sent} <= set(_first_requests(cluster.sandbox_requests())),
                sizes.drain_timeout_s,
                0.5,
            )
            after, t1 = ProcessStats.of(cluster.dispatcher.pid), time.monotonic()
        finally:
            stop.set()
            editor.join()
            pubs.close()
        requests = cluster.sandbox_requests()
        persisted = _persisted(cluster.db, sent)
        metrics = cluster.metrics()
    result = _summary(name, sent, requests, persisted=persisted, cpu=_cpu(before, after, t1 - t0))
    result.update(
        offered_rate_per_s=rate,
        duration_s=sizes.steady_s,
        directory_devices=devices,
        directory_edits=edits[0],
        stages_ms=_stages([metrics]),
        counters=_dispatcher_counters(metrics),
        health_pass_s=_health_pass("", metrics),
        load_average=list(os.getloadavg()),
        notes=f"{devices} devices in the directory, edited every {edit_every_s:g} s by another process"
        + (f" ({bulk_rows} devices relabelled at once)" if bulk_rows else ""),
    )
    return result


_RENAME_PRACTITIONER = (
    "UPDATE practitioners SET doc = json_set(doc, '$.last_name', ?)"
    " WHERE id = (SELECT MIN(id) FROM practitioners)"
)
_RELABEL_DEVICE = "UPDATE devices SET doc = json_set(doc, '$.label', ?) WHERE id = ?"


_RELABEL_DEVICES = "UPDATE devices SET doc = json_set(doc, '$.label', ?) WHERE id >= ? AND id < ?"


def _edit_directory(
    db: Path, stop: threading.Event, every_s: float, edits: list[int], bulk_rows: int, devices: int
) -> None:
    """Every ``every_s`` until ``stop``, rename a practitioner or relabel a directory device, in
    turn, or relabel ``bulk_rows`` devices at once (counted in ``edits``): each a real change of
    content, as an administrator or an import makes."""
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        while not stop.wait(every_s):
            n = edits[0]
            if bulk_rows:
                first = (n * bulk_rows) % max(1, devices - bulk_rows)
                conn.execute(
                    _RELABEL_DEVICES, (f"import {n}", f"dir-{first:05d}", f"dir-{first + bulk_rows:05d}")
                )
            elif n % 2:
                conn.execute(_RELABEL_DEVICE, (f"bureau {n}", f"dir-{n:05d}"))
            else:
                conn.execute(_RENAME_PRACTITIONER, (f"Nom {n}",))
            conn.commit()
            edits[0] += 1


def naive_scenario(
    name: str, workdir: Path, sizes: Sizes, *, rate: float, duration_s: float
) -> dict[str, Any]:
    """The same load, consumed by the blocking baseline (``bench/naive.py``) instead."""
    # Its requests name a status callback, but the sandbox posts none (neither does the
    # no-callbacks Vigie scenario): the baseline is not slowed by callbacks it does not handle.
    cluster = Cluster(
        workdir / name, [DeviceSpec(ALERT_DEVICES, sizes.alert_devices)], provider_callbacks=False
    )
    try:
        cluster.start(with_dispatcher=False)
        return _run_naive(name, cluster, sizes, rate=rate, duration_s=duration_s)
    finally:
        cluster.stop()


def _run_naive(
    name: str, cluster: Cluster, sizes: Sizes, *, rate: float, duration_s: float
) -> dict[str, Any]:
    assert cluster.broker is not None
    done = cluster.workdir / "naive-done.log"
    done.touch()
    naive = Process(
        "naive",
        python_module(
            "bench.naive",
            "--port",
            str(cluster.broker.port),
            "--directory-db",
            str(cluster.db),
            "--db",
            str(cluster.workdir / "naive.db"),
            "--sandbox",
            cluster.sandbox_url,
            "--done",
            str(done),
        ),
        cluster.workdir / "naive.log",
        env={NAIVE_PASSWORD_VARIABLE: cluster.broker.accounts[DISPATCHER_USER]},
    )
    naive.start()
    pubs = None
    try:
        _wait_subscribed(naive, timeout=60)
        pubs = Publishers(
            port=cluster.broker.port, username="vigie-bench-fleet", password=cluster.fleet_password
        )
        devices = device_ids(ALERT_DEVICES, cluster.devices[0].count)
        before, t0 = ProcessStats.of(naive.pid), time.monotonic()
        sent = steady_alerts(pubs, Fleet(cluster.keys), devices, rate=rate, duration_s=duration_s)
        backlog_timeout = sizes.drain_timeout_s + duration_s * 3
        _wait(lambda: len(done.read_text().splitlines()) >= len(sent), backlog_timeout)
        after, t1 = ProcessStats.of(naive.pid), time.monotonic()
        requests = cluster.sandbox_requests()
        result = _summary(
            name,
            sent,
            requests,
            persisted=_persisted(cluster.workdir / "naive.db", sent),
            cpu=_cpu(before, after, t1 - t0),
        )
    finally:
        if pubs is not None:
            pubs.close()
        naive.stop()
    result.update(offered_rate_per_s=rate, duration_s=duration_s, notes="blocking baseline (bench/naive.py)")
    return result


def _wait_subscribed(naive: Process, *, timeout: float) -> None:
    """Until the baseline's subscription is granted; its log in the error otherwise."""

    def subscribed() -> bool:
        if naive.proc is not None and naive.proc.poll() is not None:
            return True  # exited: stop waiting, reported below
        return "subscribed: ['Granted QoS 1']" in naive.log_path.read_text()

    _wait(subscribed, timeout, 0.05)
    log = naive.log_path.read_text()
    if "subscribed: ['Granted QoS 1']" not in log:
        tail = "\n".join(log.splitlines()[-20:])
        raise RuntimeError(f"naive baseline did not subscribe within {timeout} s; its log ends:\n{tail}")


def heartbeat_scenario(
    name: str, workdir: Path, sizes: Sizes, *, devices: int | None = None
) -> dict[str, Any]:
    """``devices`` (default: 10,000) heartbeating every 30 s; a few canaries (5 s interval) go silent.

    Reports the dispatcher's CPU per 100 heartbeats/s (the issue's unit), its
    RSS, and the broker's CPU over the same window.
    """
    count = devices or sizes.heartbeat_devices
    specs = [DeviceSpec("hb", count, heartbeat_interval_s=int(sizes.heartbeat_period_s))]
    if sizes.canaries:
        specs.append(DeviceSpec("canary", sizes.canaries * 2, heartbeat_interval_s=5))
    with Cluster(workdir / name, specs) as cluster:
        assert cluster.dispatcher is not None and cluster.broker is not None
        assert cluster.broker.proc is not None
        broker_pid = cluster.broker.proc.pid
        periods = {d: sizes.heartbeat_period_s for d in device_ids("hb", count)}
        canaries = device_ids("canary", sizes.canaries * 2) if sizes.canaries else []
        periods.update({d: 5.0 for d in canaries})
        pubs = Publishers(
            port=cluster.broker.port, username="vigie-bench-fleet", password=cluster.fleet_password
        )
        load = HeartbeatLoad(pubs, Fleet(cluster.keys), periods)
        try:
            load.start()
            time.sleep(sizes.heartbeat_warmup_s)  # the fleet heartbeating before the window opens
            before, t0 = ProcessStats.of(cluster.dispatcher.pid), time.monotonic()
            broker_before = ProcessStats.of(broker_pid)
            sent_before = load.sent
            metrics_before = cluster.metrics() if sizes.heartbeat_warmup_s else ""
            ingested_before = _heartbeats_ingested(metrics_before)
            detection = _silence_canaries(cluster, load, canaries[: sizes.canaries]) if canaries else None
            remaining = sizes.heartbeat_measure_s - (time.monotonic() - t0)
            if remaining > 0:
                time.sleep(remaining)  # the measurement window itself: load keeps running meanwhile
            after, t1 = ProcessStats.of(cluster.dispatcher.pid), time.monotonic()
            broker_after = ProcessStats.of(broker_pid)
            sent = load.sent - sent_before
            metrics = cluster.metrics()  # heartbeats ingested within the window (a few in flight aside)
            load.stop()
            false_offline = read_db(
                cluster.db,
                "SELECT COUNT(*) FROM operator_events WHERE kind='offline' AND device_id LIKE 'hb-%'",
            )[0][0]
        finally:
            pubs.close()
    ingested = _heartbeats_ingested(metrics) - ingested_before
    # Per heartbeat the dispatcher took in: QoS 0 heartbeats it cannot take in time are dropped by
    # the broker (its queue for the dispatcher's session is bounded), and cost the dispatcher nothing.
    rate = ingested / (t1 - t0)
    dispatcher = _cpu(before, after, t1 - t0)
    return {
        "name": name,
        "devices": count,
        "period_s": sizes.heartbeat_period_s,
        "heartbeats_sent": sent,
        "heartbeat_rate_per_s": round(sent / (t1 - t0), 1),
        "offered_rate_per_s": round(count / sizes.heartbeat_period_s, 1),
        "heartbeats_ingested": ingested,
        "ingested_rate_per_s": round(rate, 1),
        "not_ingested": sent - ingested,
        "dispatcher": dispatcher,
        "cpu_pct_per_100_hb_s": round(100 * dispatcher["cpu_pct_of_core"] / rate, 3) if rate else None,
        "broker": _cpu(broker_before, broker_after, t1 - t0),
        "load_average": list(os.getloadavg()),
        "warmup_s": sizes.heartbeat_warmup_s,
        "offline_detection": detection,
        "false_offline_flags": false_offline,
        "devices_offline_gauge": promstats.value(metrics, "vigie_devices_offline"),
        "health_pass_s": _health_pass(metrics_before, metrics),
        "counters": _dispatcher_counters(metrics),
        "notes": (
            f"{count} devices every {sizes.heartbeat_period_s:g} s over a gateway account;"
            f" {sizes.canaries} canaries registered with heartbeat_interval_s=5 go silent"
        ),
    }


def _health_pass(before: str, after: str) -> dict[str, dict[str, float | None]]:
    """The leader's health passes within the window, per stage: count, mean, p50, max (s)."""
    stages: dict[str, dict[str, float | None]] = {}
    for stage in ("flush", "pull", "check", "pass"):
        h = promstats.since(
            promstats.histogram(before, "vigie_health_pass_seconds", stage=stage),
            promstats.histogram(after, "vigie_health_pass_seconds", stage=stage),
        )
        q50 = h.quantile(0.5)
        stages[stage] = {
            "count": h.count,
            "mean": round(h.total / h.count, 4) if h.count else None,
            "p50": round(q50, 4) if q50 is not None else None,
            "max_bucket": h.max_bound(),
        }
    return stages


def _heartbeats_ingested(metrics: str) -> float:
    return promstats.labelled(metrics, "vigie_ingested_total", "type").get("heartbeat", 0)


def _silence_canaries(cluster: Cluster, load: HeartbeatLoad, silenced: list[str]) -> dict[str, Any]:
    """Silence canaries once each has been heard; time until the dispatcher flags each offline."""
    _wait(lambda: all(d in load.last_sent for d in silenced), 15)
    time.sleep(1.0)  # let the last heartbeats reach the dispatcher before going quiet
    load.silence(silenced)
    last = {d: load.last_sent[d] for d in silenced}
    marks = ",".join("?" * len(silenced))
    sql = (
        "SELECT device_id, MIN(at) FROM operator_events"
        f" WHERE kind='offline' AND device_id IN ({marks}) GROUP BY device_id"
    )

    def flagged() -> list[tuple[Any, ...]]:
        return read_db(cluster.db, sql, silenced)

    # The limit (2 intervals + the arrival grace) + the health pass + a generous margin.
    _wait(lambda: len(flagged()) == len(silenced), 40, 0.5)
    delays = [datetime.fromisoformat(at).timestamp() - last[d] for d, at in flagged()]
    return {
        "interval_s": 5,
        "silenced": len(silenced),
        "flagged": len(delays),
        "after_last_heartbeat_s": {
            "min": round(min(delays), 2) if delays else None,
            "max": round(max(delays), 2) if delays else None,
        },
        "limit_s": 2 * 5 + ARRIVAL_GRACE_S,
    }
